"""Residual Masking Network specifics: parameter counts, mask shapes and semantics, switches, weights."""

from __future__ import annotations

import pytest
import torch

import ferlab
from ferlab.errors import ConfigError
from ferlab.models import load_pretrained
from ferlab.models.resmasking import MaskingBlock, ResidualMask

# PyTorch counts, 7 classes (ARCHITECTURES.md §3, from the official code); the paper's Table III says 142.9 M.
TOTAL = 137_796_423
TRUNK_AND_HEAD = 21_288_263
MASKS = {(64, 4): 32_366_080, (128, 3): 31_885_312, (256, 2): 29_965_312, (512, 1): 22_291_456}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta(**kw) -> torch.nn.Module:
    with torch.device("meta"):  # counts without allocating or initialising 550 MB of weights
        return ferlab.create_model("resmasking", **kw)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ferlab.create_model("resmasking", img_size=64).eval()


def test_parameter_counts():
    assert _count(_meta()) == TOTAL
    assert _count(_meta(masking=False)) == TRUNK_AND_HEAD
    assert _count(_meta(num_classes=8)) == TOTAL + 513  # one more 512-wide output unit
    for (c, d), n in MASKS.items():
        with torch.device("meta"):
            assert _count(MaskingBlock(c, d)) == n
    assert TRUNK_AND_HEAD + sum(MASKS.values()) == TOTAL
    assert abs(TOTAL - 142.9e6) / 142.9e6 < 0.04  # the paper's figure, ~3.6 % off (unexplained gap)


def test_switches():
    # mask_act changes the graph, not the parameters; masking=False removes the four U-Nets.
    assert _count(_meta(mask_act="sigmoid")) == TOTAL
    plain = _meta(masking=False)
    assert plain.masks is None and plain.gradcam_layer == "backbone.layer4"
    assert _meta().drop.p == 0.4 and _meta(drop_rate=0.0).drop.p == 0.0
    with pytest.raises(ConfigError, match="mask_act"):
        _meta(mask_act="relu")
    with pytest.raises(ConfigError, match="multiple of 32"):
        _meta(img_size=200)  # stage-1 map 50x50 cannot go through three 2x2 pools


def test_mask_shapes_and_softmax_at_native_size():
    torch.manual_seed(0)
    m = ferlab.create_model("resmasking").eval()  # the one 224 px run of this file
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        out = m.forward_outputs(x)
        logits = m(x)
    shapes = {k: tuple(v.shape) for k, v in out["maps"].items()}
    assert shapes == {
        "mask1": (1, 64, 56, 56),
        "mask2": (1, 128, 28, 28),
        "mask3": (1, 256, 14, 14),
        "mask4": (1, 512, 7, 7),
    }
    for v in out["maps"].values():  # softmax over channels: each pixel's C values sum to 1
        torch.testing.assert_close(v.sum(1), torch.ones_like(v.sum(1)))
        assert v.min() >= 0
    torch.testing.assert_close(out["logits"], logits)
    assert out["embedding"].shape == (1, 512)


def test_small_input_shapes(model):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        maps = model.forward_outputs(x)["maps"]
    assert feats.shape == (2, 512, 2, 2)
    assert [tuple(v.shape[1:]) for v in maps.values()] == [
        (64, 16, 16),
        (128, 8, 8),
        (256, 4, 4),
        (512, 2, 2),
    ]


def test_attention_residual_form():
    torch.manual_seed(0)
    block = ResidualMask(8, 2).eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        out, m = block(x, return_mask=True)
        torch.testing.assert_close(out, x * (1 + m))  # F + F * M, paper Eq. 1
        torch.testing.assert_close(block(x), out)
    sig = MaskingBlock(8, 2, act="sigmoid").eval()
    with torch.no_grad():
        s = sig(x)
    assert s.shape == x.shape and s.min() > 0 and s.max() < 1
    assert not torch.allclose(s.sum(1), torch.ones_like(s.sum(1)))


def test_mask_unet_structure_and_init():
    unet = MaskingBlock(16, 3)
    assert [b.conv1.out_channels for b in unet.encoder] == [32, 64, 128]
    assert [u[0].out_channels for u in unet.up] == [64, 32]
    assert [b.conv2.out_channels for b in unet.decoder] == [64, 32]
    assert unet.final.conv2.out_channels == 16
    for block in [*unet.encoder, *unet.decoder, unet.final]:
        assert torch.all(block.bn2.weight == 0)  # last BN gamma of every mask BasicBlock starts at 0
        assert block.downsample is not None  # 1x1 conv + BN projection shortcut
    depth1 = MaskingBlock(16, 1)
    assert len(depth1.up) == 0 and len(depth1.decoder) == 0


def test_torchvision_resnet34_weights_load_into_backbone(tmp_path, model):
    from safetensors.torch import save_file
    from torchvision.models import resnet34

    src = resnet34(weights=None)
    path = tmp_path / "resnet34.safetensors"
    save_file(src.state_dict(), str(path))
    res = load_pretrained(model, path, prefix="backbone")
    assert res["loaded"] == len(src.state_dict()) - 2  # everything but fc.weight / fc.bias
    torch.testing.assert_close(model.backbone.layer3[5].conv2.weight, src.layer3[5].conv2.weight)
