"""Model-specific tests for the ImageNet-style baselines (VGG, ResNet, CBAM-ResNet, MobileNet V1)."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers.cbam import CbamModule

import ferlab
from ferlab.errors import ConfigError
from ferlab.models import load_pretrained

# (7 classes, 1000 classes). The 1000-class totals are the published ones: torchvision/timm vgg16
# 138,357,544, vgg19 143,667,240, resnet18 11,689,512, resnet34 21,797,672; pytorchcv cbam_resnet18/34/50
# 11,779,392 / 21,960,468 / 28,089,624 (CBAM paper Table 4: 11.78 / 21.96 / 28.09 M); timm mobilenetv1_100
# 4,231,976 (MobileNets paper: 4.2 M). resnet34-7 = 21,288,263 is ARCHITECTURES.md's check value.
PARAMS = {
    "vgg16": (134_289_223, 138_357_544),
    "vgg19": (139_598_919, 143_667_240),
    "resnet18": (11_180_103, 11_689_512),
    "resnet34": (21_288_263, 21_797_672),
    "cbam_resnet18": (11_269_983, 11_779_392),
    "cbam_resnet34": (21_451_059, 21_960_468),
    "cbam_resnet50": (26_054_967, 28_089_624),
    "mobilenet_v1": (3_214_151, 4_231_976),
}


def _count(name: str, **kw) -> int:
    with torch.device("meta"):  # shapes only: instant even for VGG
        model = ferlab.create_model(name, **kw)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    n7, n1000 = PARAMS[name]
    assert _count(name, num_classes=7) == n7
    assert _count(name, num_classes=1000) == n1000


def test_switches_change_parameter_counts():
    # BatchNorm after each of the 13 / 16 convs: 2 * sum(widths).
    assert _count("vgg16", batch_norm=True) - _count("vgg16") == 2 * (2 * 64 + 2 * 128 + 3 * 256 + 6 * 512)
    assert _count("vgg19", batch_norm=True) - _count("vgg19") == 2 * (2 * 64 + 2 * 128 + 4 * 256 + 8 * 512)
    # CBAM per block of width C: MLP C->C/16->C with biases + 7x7 2->1 conv (98) + BN (2).
    cbam18 = sum(2 * (c * c // 16) + c // 16 + c + 100 for c in [64] * 2 + [128] * 2 + [256] * 2 + [512] * 2)
    assert _count("cbam_resnet18") - _count("resnet18") == cbam18 == 89_880
    assert _count("cbam_resnet34") - _count("resnet34") == 162_796
    # mlp_bias=False is timm's default CbamModule.
    assert _count("cbam_resnet18") - _count("cbam_resnet18", mlp_bias=False) == 2_040
    assert _count("cbam_resnet34") - _count("cbam_resnet34", mlp_bias=False) == 4_012
    assert _count("cbam_resnet50") - _count("cbam_resnet50", mlp_bias=False) == 16_048
    # Grayscale input: only the first conv shrinks (3 -> 1 input channels).
    assert _count("resnet18") - _count("resnet18", in_chans=1, img_size=48) == 2 * 64 * 7 * 7
    assert _count("vgg16") - _count("vgg16", in_chans=1, img_size=48) == 2 * 64 * 3 * 3
    assert _count("mobilenet_v1") - _count("mobilenet_v1", in_chans=1, img_size=48) == 2 * 32 * 3 * 3
    with torch.device("meta"):
        m = ferlab.create_model("resnet34", drop_rate=0.3)
    assert m.head_drop.p == 0.3


@pytest.mark.parametrize(
    ("name", "n_cbam"), [("cbam_resnet18", 8), ("cbam_resnet34", 16), ("cbam_resnet50", 16)]
)
def test_cbam_in_every_residual_block(name, n_cbam):
    with torch.device("meta"):
        m = ferlab.create_model(name)
    cbams = [mod for mod in m.modules() if isinstance(mod, CbamModule)]
    assert len(cbams) == n_cbam
    assert all(mod.channel.fc1.bias is not None for mod in cbams)
    width = 2048 if name.endswith("50") else 512
    assert m.layer4[-1].se.channel.fc2.out_channels == width  # on the block output, before the addition


def test_cbam_modules_run_in_forward():
    torch.manual_seed(0)
    m = ferlab.create_model("cbam_resnet18", img_size=32).eval()
    calls = []
    for mod in m.modules():
        if isinstance(mod, CbamModule):
            mod.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
    assert len(calls) == 8


@pytest.mark.parametrize(
    ("name", "shape", "emb"),
    [
        ("vgg16", (512, 1, 1), 4096),
        ("resnet18", (512, 2, 2), 512),
        ("cbam_resnet50", (2048, 2, 2), 2048),
        ("mobilenet_v1", (1024, 2, 2), 1024),
    ],
)
def test_small_grayscale_input(name, shape, emb):
    """The documented 1x48x48 mode: stem built for 1 channel, maps shrink to 1x1 / 2x2, head still works."""
    torch.manual_seed(0)
    m = ferlab.create_model(name, num_classes=8, in_chans=1, img_size=48).eval()
    assert m.data_config.input_size == (1, 48, 48) and m.data_config.color == "gray"
    with torch.no_grad():
        feats = m.forward_features(torch.randn(2, 1, 48, 48))
        out = m.forward_outputs(torch.randn(2, 1, 48, 48))
    assert feats.shape == (2, *shape)
    assert out["logits"].shape == (2, 8) and out["embedding"].shape == (2, emb) == (2, m.num_features)
    assert m.get_submodule(m.gradcam_layer) is not None


@pytest.mark.parametrize(("name", "shape"), [("resnet18", (512, 7, 7)), ("mobilenet_v1", (1024, 7, 7))])
def test_native_224_feature_map(name, shape):
    torch.manual_seed(0)
    m = ferlab.create_model(name).eval()
    with torch.no_grad():
        assert m.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, *shape)


def test_too_small_input_is_a_config_error():
    with pytest.raises(ConfigError, match="too small"):
        ferlab.create_model("resnet18", img_size=16)


def test_data_configs():
    with torch.device("meta"):
        r = ferlab.create_model("cbam_resnet34")
        v = ferlab.create_model("vgg19")
        mb = ferlab.create_model("mobilenet_v1")
    for m in (r, v):
        assert m.data_config.input_size == (3, 224, 224) and m.data_config.color == "rgb"
        assert m.data_config.mean == (0.485, 0.456, 0.406) and m.data_config.std == (0.229, 0.224, 0.225)
    assert mb.data_config.mean == mb.data_config.std == (0.5, 0.5, 0.5)  # Keras / timm MobileNet: [-1, 1]
    assert (r.gradcam_layer, v.gradcam_layer, mb.gradcam_layer) == ("layer4", "features", "blocks")


@pytest.mark.parametrize(
    ("name", "arch", "size"),
    [
        ("resnet18", "resnet18", 64),
        ("cbam_resnet18", "resnet18", 64),  # ImageNet ResNet18 into CBAM-ResNet18: CBAM stays fresh
        ("mobilenet_v1", "mobilenetv1_100", 64),
        ("vgg16", "vgg16", 32),
    ],
)
def test_pretrained_imagenet_timm_state_dict(tmp_path, name, arch, size):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    src = timm.create_model(arch, pretrained=False, num_classes=1000).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a missed buffer would show
        for mod in src.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    sd = src.state_dict()
    path = tmp_path / "imagenet.safetensors"
    save_file(sd, str(path))
    classifier = src.pretrained_cfg["classifier"]

    torch.manual_seed(1)
    dst = ferlab.create_model(name, num_classes=7, pretrained=path).eval()
    own = dst.state_dict()
    assert dst.head.weight.shape == (7, dst.num_features)
    shared = [k for k in sd if not k.startswith(classifier + ".")]
    for k in shared:
        torch.testing.assert_close(own[k], sd[k], rtol=0, atol=0, msg=k)
    extra = sorted(set(own) - set(shared))
    if name.startswith("cbam"):
        assert extra[:2] == ["head.bias", "head.weight"] and all(".se." in k for k in extra[2:])
        assert len(extra) == 2 + 8 * 10  # 8 CBAMs: fc1 w+b, fc2 w+b, conv w, BN w+b+mean+var+count
    else:
        assert extra == ["head.bias", "head.weight"]
    report = load_pretrained(dst, path)
    assert report["loaded"] == len(shared) and report["mismatched"] == []

    if not name.startswith("cbam"):  # same trunk and embedding as the timm network
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            f_src, f_dst = src.forward_features(x), dst.forward_features(x)
            torch.testing.assert_close(f_dst, f_src)
            torch.testing.assert_close(
                dst.forward_head(f_dst, pre_logits=True), src.forward_head(f_src, pre_logits=True)
            )
