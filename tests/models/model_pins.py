"""Parameter pins: one table over the registry (7 classes, the registered input, default switches).

Each figure was counted with PyTorch from ferlab's implementation and checked against the paper or the
official code where those give one; the model test files explain the per-module arithmetic (e.g. GCLENet's
LFA/MGC blocks, EmoNeXt's STN and SE). A model added to the registry must get a line here
(``test_model_pins.py`` fails otherwise); a changed count means the architecture changed.
"""

PINS: dict[str, int] = {
    "aemt": 42_178_311,  # Wang 2024 (AEMT), all three components (table 5 row e)
    "cbam_resnet18": 11_269_983,
    "cbam_resnet34": 21_451_059,
    "cbam_resnet50": 26_054_967,  # CBAM paper: 28.09 M with the 1000-class head
    "emonext_base": 90_715_659,
    "emonext_large": 202_221_643,
    "emonext_small": 51_608_299,
    "emonext_tiny": 29_973_739,
    "emonext_xlarge": 358_115_979,
    "fernet_s": 4_361_815,
    "fernet_xs": 467_703,
    "gclenet": 21_852_101,  # training form; 21,652,933 after folding the asymmetric convolutions
    "mobilenet_v1": 3_214_151,
    "pattlite": 1_093_000,
    "resemotenet": 80_238_599,
    "resmasking": 137_796_423,
    "resnet18": 11_180_103,
    "resnet34": 21_288_263,
    "smallcnn": 1_174_439,
    "smallcnn_tiny": 74_159,
    "vgg16": 134_289_223,
    "vgg16_cara": 16_223_592,
    "vgg19": 139_598_919,
}

#: pinned switch settings (model, switches) -> parameters: the ablation rows whose size the papers discuss
VARIANT_PINS: dict[tuple[str, tuple], int] = {
    ("aemt", (("lbp", False), ("asf", False), ("mte", False))): 11_180_103,  # table 5 row a: RGB ResNet18
    ("aemt", (("lbp", False), ("asf", True), ("mte", True))): 30_383_175,
    ("aemt", (("lbp", True), ("asf", False), ("mte", True))): 41_815_559,
    ("aemt", (("lbp", True), ("asf", True), ("mte", False))): 22_975_239,
}
