"""AEMT (paper 000): pinned parameter counts of table 5's settings a-e, branch/token shapes, the ASF
equations, the switches, and the LBP channel's influence."""

from __future__ import annotations

import functools
import re

import pytest
import timm
import torch
from model_pins import PINS, VARIANT_PINS
from torch import nn

from ferlab.errors import ConfigError
from ferlab.models._registry import _MODELS, load_pretrained
from ferlab.models.aemt import AEMT, AttentionalSelectiveFusion, ConcatFusion, RGBOnly, aemt

# table 5: (lbp, asf, mte); "x" (removed) = False
SETTINGS = {
    "a": (False, False, False),
    "b": (False, True, True),
    "c": (True, False, True),
    "d": (True, True, False),
    "e": (True, True, True),
}

# Exact counts at 224, 7 classes, from the layer arithmetic:
# ResNet-18 trunk: 11,176,512 (3-ch stem) / 11,170,240 (1-ch stem); ASF: 2 x 262,656 (W_RGB, W_LBP)
# + 65,600 (global 512-64-512, bias on the first conv only) + 32,960 (local 512-64-1 with one BN)
# + 1,024 (BN of eq. 3) = 624,896;
# tokens: 1x1 proj C->512 (262,656 for C=512, 524,800 for C=1024) + cls 512 + pos 50 x 512;
# encoder: 6 x 3,152,384 = 18,914,304; head 512*7+7 = 3,591.
_ROWS = {
    "a": (False, False, False),
    "b": (False, True, True),
    "c": (True, False, True),
    "d": (True, True, False),
}
PARAMS = {r: VARIANT_PINS[("aemt", (("lbp", lb), ("asf", a), ("mte", m)))] for r, (lb, a, m) in _ROWS.items()}
PARAMS["e"] = PINS["aemt"]  # the pins live in one table: model_pins.py

SIZE = 64  # test size: 2x2 branch maps, 4 visual tokens + class token


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small tensors: one intra-op thread is as fast and does not thrash when cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _build(setting: str, img_size: int = SIZE, num_classes: int = 7, in_chans: int = 4) -> AEMT:
    lbp, asf, mte = SETTINGS[setting]
    torch.manual_seed(0)
    return aemt(num_classes=num_classes, in_chans=in_chans, img_size=img_size, lbp=lbp, asf=asf, mte=mte)


@functools.cache
def _shared(setting: str, img_size: int = SIZE) -> AEMT:
    """One model per (setting, size) for tests that do not change weights (they set train/eval mode)."""
    return _build(setting, img_size)


def test_registry_entry():
    info = _MODELS["aemt"]  # not model_info(): that imports every zoo module, which this test does not need
    assert info.data.input_size == (4, 224, 224)
    assert info.data.lbp and info.data.color == "rgb"
    assert info.data.mean[:3] == (0.485, 0.456, 0.406) and len(info.data.mean) == 4
    # table 5's three modules, and (issue 18) the encoder's depth and heads and the dropouts the paper tunes
    assert set(info.switches) == {
        "lbp",
        "asf",
        "mte",
        "depth",
        "num_heads",
        "drop_rate",
        "encoder_drop_rate",
        "branch_weights",
    }
    assert info.test_size == SIZE


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_param_count_pinned(setting):
    assert _count(_shared(setting, 224)) == PARAMS[setting]


def test_param_count_differences_match_components():
    e = _shared("e", 224)
    asf = _count(e.fusion)
    tokens_encoder = _count(e.tokens) + _count(e.encoder)
    assert asf == 624_896
    assert _count(e.encoder) == 6 * 3_152_384
    assert PARAMS["e"] - PARAMS["d"] == tokens_encoder  # mte removes tokens + encoder only
    assert PARAMS["d"] - PARAMS["a"] == _count(e.lbp_branch) + asf  # a = d without LBP branch and ASF
    # c = e with concatenation instead of ASF: no ASF params, token projection reads 1024 channels
    assert PARAMS["e"] - PARAMS["c"] == asf - 512 * 512
    # b = e without the LBP branch and (idle) ASF
    assert PARAMS["e"] - PARAMS["b"] == _count(e.lbp_branch) + asf


def test_asf_is_idle_without_lbp():
    """lbp=False leaves nothing to fuse: asf=True/False build the same network."""
    on = aemt(img_size=SIZE, lbp=False, asf=True, mte=True)
    off = aemt(img_size=SIZE, lbp=False, asf=False, mte=True)
    assert isinstance(on.fusion, RGBOnly) and isinstance(off.fusion, RGBOnly)
    assert _count(on) == _count(off)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_setting_builds_runs_shapes_and_gradients(setting):
    lbp, asf, mte = SETTINGS[setting]
    m = _shared(setting)
    m.train()
    m.zero_grad(set_to_none=True)
    x = torch.randn(2, 4, SIZE, SIZE)
    out = m.forward_outputs(x)
    maps = out["maps"]
    assert out["logits"].shape == (2, 7)
    assert torch.isfinite(out["logits"]).all()
    assert maps["rgb"].shape == (2, 512, 2, 2)
    assert ("lbp" in maps) == lbp
    if lbp:
        assert maps["lbp"].shape == (2, 512, 2, 2)
    fused_c = 1024 if (lbp and not asf) else 512
    assert maps["fused"].shape == (2, fused_c, 2, 2)
    assert ("alpha_rgb" in maps) == (lbp and asf)
    assert isinstance(
        m.fusion, AttentionalSelectiveFusion if lbp and asf else ConcatFusion if lbp else RGBOnly
    )
    assert (m.lbp_branch is None) != lbp
    assert (m.encoder is None) != mte
    feats = m.forward_features(x)
    if mte:
        assert feats.shape == (2, 1 + 4, 512)  # class token + 2x2 visual tokens
        assert m.num_features == 512
    else:
        assert feats.shape == (2, fused_c, 2, 2)
        assert m.num_features == fused_c
    assert out["embedding"].shape == (2, m.num_features)
    out["logits"].logsumexp(1).mean().backward()
    no_grad = [n for n, p in m.named_parameters() if p.grad is None]
    assert not no_grad, no_grad[:10]
    # beyond the ResNet stages (whose residual paths start at zero, timm's zero_init_last), every
    # gradient is non-zero: no dead switch path, ASF weights and positional encodings are used
    zero = [
        n
        for n, p in m.named_parameters()
        if not re.search(r"branch\.layer\d", n) and not p.grad.abs().sum() > 0
    ]
    assert not zero, zero[:10]


def test_native_size_shapes():
    """At the paper's 224x224: 512x7x7 branch maps, 49 visual tokens + class token of width 512."""
    m = _shared("e", 224).eval()
    x = torch.randn(1, 4, 224, 224)
    with torch.no_grad():
        f_rgb, f_lbp = m.branch_maps(x)
        tokens = m.tokens(m.fuse(f_rgb, f_lbp))
        logits = m(x)
    assert f_rgb.shape == f_lbp.shape == (1, 512, 7, 7)
    assert tokens.shape == (1, 50, 512)
    assert m.tokens.pos_embed.shape == (1, 50, 512)
    assert logits.shape == (1, 7)


def test_asf_equations():
    """Eq. 1: softmax weights in (0,1), input-dependent, per element; eq. 2-3: BN of the weighted sum."""
    torch.manual_seed(0)
    asf = AttentionalSelectiveFusion(32, reduction=8).eval()
    f_rgb, f_lbp = torch.randn(2, 32, 3, 3), torch.randn(2, 32, 3, 3)
    with torch.no_grad():
        alpha = asf.weights(f_rgb, f_lbp)
        assert alpha.shape == (2, 32, 3, 3)
        assert ((alpha > 0) & (alpha < 1)).all()
        z_rgb = asf.score(asf.proj_rgb(f_rgb))
        z_lbp = asf.score(asf.proj_lbp(f_lbp))
        torch.testing.assert_close(alpha, torch.exp(z_rgb) / (torch.exp(z_rgb) + torch.exp(z_lbp)))
        torch.testing.assert_close(asf(f_rgb, f_lbp), asf.norm(alpha * f_rgb + (1 - alpha) * f_lbp))
        # global context is C x 1 x 1, local context 1 x H x W
        assert asf.global_att(f_rgb).shape == (2, 32, 1, 1)
        assert asf.local_att(f_rgb).shape == (2, 1, 3, 3)
        # weights depend on the input and vary over space and channels
        assert not torch.allclose(alpha[0], alpha[1])
        assert alpha[0].std() > 0
    assert isinstance(asf.norm, nn.BatchNorm2d)


def test_encoder_follows_equations_5_to_8():
    m = _shared("e")
    layers = m.encoder.layers
    assert len(layers) == 6
    layer = layers[0]
    assert layer.self_attn.num_heads == 8 and layer.self_attn.embed_dim == 512
    assert layer.linear1.out_features == 2048
    assert layer.activation is torch.nn.functional.relu or isinstance(layer.activation, nn.ReLU)  # eq. 7
    assert layer.norm_first is False  # eq. 8: LayerNorm(x + SubLayer(x))
    assert not torch.equal(layers[0].linear1.weight, layers[1].linear1.weight)  # independent init
    assert m.head_drop.p == 0.5


@torch.no_grad()
def test_lbp_channel_influences_output_only_with_lbp():
    x = torch.randn(1, 4, SIZE, SIZE)
    x2 = x.clone()
    x2[:, 3] = torch.randn(1, SIZE, SIZE)
    with_lbp = _shared("e").eval()
    assert not torch.allclose(with_lbp(x), with_lbp(x2), atol=1e-4)
    without = _shared("b").eval()
    torch.testing.assert_close(without(x), without(x2), rtol=0, atol=0)
    # the RGB channels still matter
    x3 = x.clone()
    x3[:, 0] += 1
    assert not torch.allclose(without(x), without(x3), atol=1e-4)


@torch.no_grad()
def test_rgb_only_accepts_three_channels():
    """lbp=False: the default 4-channel input ignores channel 3; in_chans=3 gives the same network."""
    four = _shared("b").eval()
    three = _build("b", in_chans=3).eval()
    assert _count(four) == _count(three)
    three.load_state_dict(four.state_dict())
    x = torch.randn(2, 4, SIZE, SIZE)
    torch.testing.assert_close(three(x[:, :3]), four(x))


def test_in_chans_validation():
    with pytest.raises(ConfigError, match="LBP channel"):
        aemt(in_chans=3, img_size=SIZE, lbp=True)
    with pytest.raises(ConfigError, match="in_chans=5"):
        aemt(in_chans=5, img_size=SIZE)
    gray = aemt(in_chans=2, img_size=SIZE, mte=False).eval()  # gray image + LBP
    assert gray.rgb_branch.conv1.in_channels == 1 and gray.lbp_branch.conv1.in_channels == 1
    with torch.no_grad():
        assert gray(torch.randn(1, 2, SIZE, SIZE)).shape == (1, 7)


@torch.no_grad()
def test_other_input_size_resamples_positional_encoding():
    m = _shared("e").eval()
    assert m(torch.randn(1, 4, 96, 96)).shape == (1, 7)  # 3x3 tokens from a 2x2 table


def test_load_branch_weights_from_resnet18_file(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    src = timm.create_model("resnet18", pretrained=False)  # stands in for an ImageNet ResNet-18 file
    path = tmp_path / "resnet18.safetensors"
    save_file(src.state_dict(), str(path))
    m = _build("d")
    counts = m.load_branch_weights(str(path))
    n = len([k for k in src.state_dict() if not k.startswith("fc.")])
    assert counts == {"rgb_branch": n, "lbp_branch": n}
    torch.testing.assert_close(m.rgb_branch.layer4[1].conv2.weight, src.layer4[1].conv2.weight)
    torch.testing.assert_close(m.lbp_branch.layer1[0].bn1.running_mean, src.layer1[0].bn1.running_mean)
    torch.testing.assert_close(m.rgb_branch.conv1.weight, src.conv1.weight)
    torch.testing.assert_close(m.lbp_branch.conv1.weight, src.conv1.weight.sum(1, keepdim=True))


def test_transfer_from_8_to_7_classes(tmp_path):
    """The paper's AffectNet -> RAF-DB transfer (different class counts): everything but the head loads."""
    from safetensors.torch import save_file

    src = _shared("e")  # stands in for the 8-class AffectNet model; the RAF-DB one has 7 classes
    path = tmp_path / "aemt_affectnet.safetensors"
    save_file({k: v for k, v in src.state_dict().items()}, str(path))
    dst = _build("e", num_classes=8)
    res = load_pretrained(dst, path)
    assert sorted(res["mismatched"]) == ["head.bias", "head.weight"]
    torch.testing.assert_close(dst.encoder.layers[5].linear2.weight, src.encoder.layers[5].linear2.weight)
    torch.testing.assert_close(dst.fusion.proj_lbp.weight, src.fusion.proj_lbp.weight)


def test_encoder_depth_heads_and_dropout_are_switches():
    import ferlab

    m = ferlab.create_model("aemt", img_size=64, depth=2, num_heads=4, drop_rate=0.3)
    full = ferlab.create_model("aemt", img_size=64)
    assert len(m.encoder.layers) == 2 and len(full.encoder.layers) == 6
    attn = m.encoder.layers[0].self_attn
    assert attn.num_heads == 4 and full.encoder.layers[0].self_attn.num_heads == 8
    assert m.head_drop.p == 0.3 and full.head_drop.p == 0.5


def test_branch_weights_load_from_a_local_resnet18_file(tmp_path):
    import torchvision

    import ferlab

    rn = torchvision.models.resnet18(weights=None)
    torch.save(rn.state_dict(), tmp_path / "resnet18.pth")
    m = ferlab.create_model("aemt", img_size=64, branch_weights=str(tmp_path / "resnet18.pth"))
    torch.testing.assert_close(m.rgb_branch.layer1[0].conv1.weight, rn.layer1[0].conv1.weight)
    torch.testing.assert_close(m.lbp_branch.layer4[1].conv2.weight, rn.layer4[1].conv2.weight)
    with pytest.raises(ConfigError, match="not found"):
        ferlab.create_model("aemt", img_size=64, branch_weights=str(tmp_path / "missing.pth"))
