"""ResEmoteNet: a CNN stem, one Squeeze-and-Excitation block and three residual blocks.

Paper: A. K. Roy, H. K. Kathania, A. Sharma, A. Dey, Md. S. A. Ansari, "ResEmoteNet: Bridging Accuracy and
Loss Reduction in Facial Emotion Recognition", IEEE Signal Processing Letters 2024, arXiv:2409.10545.
Reviewed in Berindeie 2024 (FER ensembles) of ferlab's specification (A. Berindeie, "Ensemble Models For Facial Emotion
Recognition", 2024, section 5.3). Official code: github.com/ArnabKumarRoy02/ResEmoteNet (MIT). The layer
list below describes that code, read, not copied.

Architecture (input 3x64x64, a grayscale face replicated to 3 channels, ImageNet mean/std):

* stem: three stages of 3x3 conv (bias) -> BN -> ReLU -> 2x2 max-pool, widths 64-128-256
  (64 -> 32 -> 16 -> 8); Dropout(0.2) after the pools of the first two stages only;
* one SE block on the 256x8x8 stem output (reduction 16, bias-free excitation);
* three residual blocks with stride 2, widths 512-1024-2048 (8 -> 4 -> 2 -> 1): 3x3 conv (bias) -> BN ->
  ReLU -> 3x3 conv (bias) -> BN, plus a 1x1-conv (bias) + BN projection shortcut, add, ReLU;
* adaptive average pooling -> FC 1024 -> ReLU -> Dropout(0.5) -> FC 512 -> ReLU -> Dropout(0.5) -> FC 256 ->
  ReLU -> Dropout(0.5) -> FC ``num_classes``.

Parameter count (PyTorch count, trainable parameters): ``80,236,800 + 257 * num_classes``, i.e.
**80,238,599** for 7 classes, the total derived from the reference code (stem 371,712;
SE 8,192; residual blocks 3,674,624 / 14,689,280 / 58,738,688; FC head 2,756,103). About 0.67 GFLOPs per
64x64 face (one multiply-add counted as two FLOPs).

The 256-d output of the last hidden FC layer (after its dropout) is the embedding (``num_features=256``);
``head`` is the final FC layer alone, so ``reset_classifier`` keeps the hidden MLP.

Reference quirks, kept or fixed:

* **Kept: bias before BatchNorm.** Every conv that feeds a BN has a bias, which the BN's shift makes
  redundant (2x the conv's output channels of useless parameters). Kept so the count matches the reference.
* **Kept: most of residual block 3 never sees data at 64x64.** Block 3 turns a 2x2 map into 1x1, so its
  first 3x3 conv (stride 2, padding 1) only ever multiplies 4 of its 9 taps with real pixels, and its second
  3x3 conv runs on a 1x1 map whose 8 outer taps only see zero padding. About 44 M of the 80 M parameters
  therefore get an exactly-zero gradient at the native input size (``tests/test_models_resemotenet.py``
  checks this). Kept because the layer list *is* the published model; larger inputs (the pooling is
  adaptive) use those taps.
* **Fixed: the hard-coded 7-way classifier.** The reference's last FC has 7 outputs; here it is
  ``num_classes``. The released checkpoints also use the label order happy, surprise, sad, anger, disgust,
  fear, neutral, not FER2013's; ferlab maps labels through ``ferlab.labels`` and never assumes an order.
* Not applicable to the model: the reference's data-pipeline bugs (augmentation before the train/val/test
  split, CSVs written without a header but read with one, a checkpoint key mismatch between training and
  evaluation) live in its scripts; ferlab's data layer and engine replace them.

Deviations from the paper:

* The paper does not state the input size, the stem's dropout or the head's depth ("the Linear layer"); all
  three follow the official code (64x64, Dropout 0.2 after stem stages 1-2, four FC layers).
* The SE block is timm's ``SEModule`` (1x1 convs instead of ``nn.Linear``; the same 2 x 256 x 16 bias-free
  weights), so checkpoints of the reference need a key/shape conversion to load.
* Initialisation is PyTorch's default, as in the reference; the paper does not specify one.
* ``use_se=False`` (ablation switch, not in the reference) drops the SE block.
* The reference feeds every image as grayscale replicated to 3 channels; the registered data config is
  ``color='gray'`` with 3-channel ImageNet mean/std, which ferlab's transform turns into the same 3-channel
  input (the gray plane normalised per channel).
* Grad-CAM target: ``stages.2`` is the last spatial map, but it is 1x1 at 64x64 input; use ``se`` (8x8)
  for informative maps at the native size.
* Training recipe (not part of the model): the code uses SGD lr 1e-3, momentum 0.9, weight decay 1e-4,
  batch 16, 80 epochs, no scheduler; the paper says "reduce by 0.1 on plateau". The 79.79 % FER2013
  accuracy is not reproducible from the public data (Berindeie 2024 (FER ensembles) reaches ~64 % from scratch).
"""

from __future__ import annotations

import torch
from timm.layers import SEModule
from torch import nn

from ._base import FERModel
from ._registry import IMAGENET_MEAN, IMAGENET_STD, register_model

__all__ = ["ResEmoteNet", "ResidualBlock"]


def _stem_stage(in_chs: int, out_chs: int, drop_rate: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_chs, out_chs, 3, padding=1),
        nn.BatchNorm2d(out_chs),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    ]
    if drop_rate > 0:
        layers.append(nn.Dropout(drop_rate))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Two 3x3 conv-BN layers (with conv bias, as the reference) and a 1x1 conv-BN projection shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 2):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.shortcut = nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride=stride), nn.BatchNorm2d(out_chs))
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(y + self.shortcut(x))


class ResEmoteNet(FERModel):
    """ResEmoteNet (Roy et al., IEEE SPL 2024): conv stem, SE block, three residual blocks, 4-layer MLP head.

    Args:
        num_classes: number of expression classes.
        in_chans: input channels (3 in the reference: gray replicated).
        stem_widths: output widths of the three stem stages.
        stage_widths: output widths of the three stride-2 residual blocks.
        hidden_dims: widths of the hidden FC layers; the last one is the embedding width.
        stem_drop_rate: dropout after the first two stem stages (0.2 in the reference).
        drop_rate: dropout after each hidden FC layer (0.5 in the reference).
        use_se: apply the SE block to the stem output (the reference does).
    """

    gradcam_layer = "stages.2"

    def __init__(
        self,
        num_classes: int = 7,
        in_chans: int = 3,
        stem_widths: tuple[int, int, int] = (64, 128, 256),
        stage_widths: tuple[int, int, int] = (512, 1024, 2048),
        hidden_dims: tuple[int, ...] = (1024, 512, 256),
        stem_drop_rate: float = 0.2,
        drop_rate: float = 0.5,
        use_se: bool = True,
    ):
        super().__init__()
        c = in_chans
        stem = []
        for i, w in enumerate(stem_widths):
            stem.append(_stem_stage(c, w, stem_drop_rate if i < len(stem_widths) - 1 else 0.0))
            c = w
        self.stem = nn.Sequential(*stem)
        # Reduction 16 on 256 channels gives 16 hidden units; bias-free like the reference's Linear layers.
        self.se = SEModule(c, rd_ratio=1 / 16, rd_divisor=1, bias=False) if use_se else nn.Identity()
        stages = []
        for w in stage_widths:
            stages.append(ResidualBlock(c, w, stride=2))
            c = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        mlp: list[nn.Module] = []
        for h in hidden_dims:
            mlp += [nn.Linear(c, h), nn.ReLU(inplace=True), nn.Dropout(drop_rate)]
            c = h
        self.pre_logits = nn.Sequential(*mlp)
        self.num_classes, self.num_features = num_classes, c
        self.head = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 2048-channel map after residual block 3 (1x1 for a 64x64 input)."""
        return self.stages(self.se(self.stem(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(self.pool(x).flatten(1))
        return x if pre_logits else self.head(x)


@register_model(
    paper="004: ResEmoteNet (Roy et al., IEEE SPL 2024)",
    input_size=(3, 64, 64),
    color="gray",
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    test_size=32,
)
def resemotenet(
    num_classes: int = 7,
    in_chans: int = 3,
    img_size: int = 64,
    drop_rate: float = 0.5,
    stem_drop_rate: float = 0.2,
    use_se: bool = True,
    **kwargs,
) -> ResEmoteNet:
    """ResEmoteNet, the reference layer list: 80,238,599 params (7 classes), 3x64x64 gray-as-RGB input."""
    return ResEmoteNet(
        num_classes, in_chans, stem_drop_rate=stem_drop_rate, drop_rate=drop_rate, use_se=use_se
    )
