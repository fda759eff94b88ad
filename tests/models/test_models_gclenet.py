"""GCLENet / LSDC-FER (paper 003): parameter counts against the paper, switches, LFA quadrants, ACB folding,
ACmix. Inputs are reduced (64-112 px) except where a count needs no forward pass."""

from __future__ import annotations

import copy
import functools

import pytest
import torch
import torchvision
from torch import nn

import ferlab
from ferlab.models.gclenet import (
    ACmix,
    AsymConvBlock,
    GCLENet,
    LocalFeatureEnhancement,
    MultiScaleConv,
    MultiScaleGlobalAssociation,
)

RESNET34_7 = 21_288_263  # ARCHITECTURES.md: torchvision ResNet34 with a 7-class fc = the paper's 21.29 M
LFA_TRAIN = 8 * (36_864 + 2 * 12_288 + 3 * 128)  # 4 quadrants x 2 ACBs, 3x3+1x3+3x1 branches with BN each
LFA_FUSED = 8 * (36_864 + 64)  # the same after folding: 8 plain 3x3 convs with bias
MGC = 69_246  # 3x3 conv-BN 36,992 + multi-scale 14,304 + ACmix 17,822 + BN 128


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@functools.cache
def _cached(items: tuple) -> GCLENet:
    torch.manual_seed(0)
    return ferlab.create_model("gclenet", **dict(items))


def build(**kw) -> GCLENet:
    """A fresh copy of a seeded model (building ResNet34 repeatedly is the slow part of this file)."""
    kw = {"lfa": True, "mgc": True, **kw}
    return copy.deepcopy(_cached(tuple(sorted(kw.items()))))


def randomize_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so folding is really tested."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)


def thop_ops(module: nn.Module, x: torch.Tensor) -> int:
    """Operation count in thop's convention (the paper's FLOPs tool): Conv2d multiply-adds (output elements
    x in/groups x kernel area, bias ignored), BatchNorm 4 x elements, Softmax 3 x elements, nothing else."""
    total = 0

    def hook(m, i, o):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            total += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        elif isinstance(m, nn.BatchNorm2d):
            total += 4 * i[0].numel()
        else:
            total += 3 * i[0].numel()

    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Softmax)
    hs = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        module.eval()(x)
    for h in hs:
        h.remove()
    return total


# ---------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize(
    "lfa,mgc,train_count,fused_count",
    [
        (False, False, RESNET34_7, RESNET34_7),
        (True, False, RESNET34_7 + LFA_TRAIN, RESNET34_7 + LFA_FUSED),
        (False, True, RESNET34_7 + MGC, RESNET34_7 + MGC),
        (True, True, RESNET34_7 + LFA_TRAIN + MGC, RESNET34_7 + LFA_FUSED + MGC),
    ],
)
def test_pinned_param_counts(lfa, mgc, train_count, fused_count):
    model = build(lfa=lfa, mgc=mgc)
    assert n_params(model) == train_count
    assert n_params(model.fuse()) == fused_count


def test_numbers_match_the_paper():
    base = n_params(build(lfa=False, mgc=False))
    assert base == RESNET34_7 == n_params(torchvision.models.resnet34(weights=None, num_classes=7))
    assert round(base / 1e6, 2) == 21.29
    # Reading: fig. 14 counts the test-time model, so the LFA's 0.29 M is its fused form (8 3x3 convs).
    lfa_fused = n_params(build(lfa=True, mgc=False).fuse())
    assert round(lfa_fused / 1e6, 2) == 21.58  # "when adding LFA, its size becomes 21.58 M"
    assert (
        abs((lfa_fused - base) - 0.29e6) <= 0.01e6
    )  # "the parameter amount of the LFA module reaches 0.29 M"
    # Reading: the MGC sits at 64 channels on the stem map, with an MA-Net-style leading 3x3 conv.
    mgc_delta = n_params(build(lfa=False, mgc=True)) - base
    assert round(mgc_delta / 1e6, 2) == 0.07  # "the MGC module introduces only 0.07 M"


def test_module_param_breakdown():
    assert n_params(AsymConvBlock(64, 64)) == LFA_TRAIN // 8
    assert n_params(LocalFeatureEnhancement(64)) == LFA_TRAIN
    assert n_params(ACmix(64, 64)) == 17_822  # ARCHITECTURES.md section 5 formula
    assert n_params(MultiScaleConv(64)) == 14_304
    assert n_params(MultiScaleGlobalAssociation(64)) == MGC
    assert n_params(MultiScaleGlobalAssociation(64, pre_conv=False)) == MGC - 36_992


def test_flops_at_paper_resolution_match_the_paper():
    """thop-convention cost of the modules alone on the 64x56x56 stem map (224 px input)."""
    f = torch.randn(1, 64, 56, 56)
    lfa = LocalFeatureEnhancement(64)
    for m in lfa.modules():
        if isinstance(m, AsymConvBlock):
            m.fuse()
    # paper: 3678.23 -> 3911.05 M (+232.82 M) = these 8 convs at 28x28 + 8 BatchNorms (thop: 4 x elements)
    assert thop_ops(lfa, f) == 8 * 64 * 28 * 28 * 64 * 9 == 231_211_008
    assert round((231_211_008 + 8 * 4 * 64 * 28 * 28) / 1e6, 2) == 232.82
    # paper (MGC only, as far as the text can be read): 3905.07 M, i.e. +226.84 M
    mgc_ops = thop_ops(MultiScaleGlobalAssociation(64), f)
    assert mgc_ops == 224_926_464
    assert abs(mgc_ops - 226.84e6) / 226.84e6 < 0.02


# -------------------------------------------------------------------------------------------- switches


def test_switches_change_the_graph():
    full, base = build(), build(lfa=False, mgc=False)
    assert isinstance(full.lfa, LocalFeatureEnhancement) and isinstance(full.mgc, MultiScaleGlobalAssociation)
    assert base.lfa is None and base.mgc is None
    assert build(lfa=False).lfa is None and build(mgc=False).mgc is None
    assert not any(isinstance(m, (AsymConvBlock, ACmix)) for m in base.modules())
    assert sum(isinstance(m, AsymConvBlock) for m in full.modules()) == 8
    assert sum(isinstance(m, ACmix) for m in full.modules()) == 1


def test_baseline_is_plain_resnet34():
    model = build(lfa=False, mgc=False).eval()
    ref = torchvision.models.resnet34(weights=None, num_classes=7).eval()
    sd = {("fc." + k[5:] if k.startswith("head.") else k): v for k, v in model.state_dict().items()}
    ref.load_state_dict(sd)  # strict: same keys and shapes as torchvision, so ImageNet weights load too
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x))


# ------------------------------------------------------------------------------------------------ shapes


def test_intermediate_shapes():
    model = build().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        f = model.forward_stem(x)
        assert f.shape == (2, 64, 16, 16)  # 64x56x56 at 224 px
        assert model.lfa(f).shape == f.shape
        assert model.mgc(f).shape == f.shape
        assert model.forward_modules(f).shape == f.shape
        assert model.forward_features(x).shape == (2, 512, 2, 2)
        out = model.forward_outputs(x)
    assert out["embedding"].shape == (2, 512) and out["logits"].shape == (2, 7)
    assert LocalFeatureEnhancement.split_sizes(56, 56) == (28, 28)


@pytest.mark.parametrize("h,w", [(7, 9), (8, 8), (25, 25), (2, 3)])
def test_lfa_quadrant_split_any_size(h, w):
    lfa = LocalFeatureEnhancement(8).eval()
    x = torch.randn(1, 8, h, w)
    with torch.no_grad():
        y = lfa(x)
    assert y.shape == x.shape
    h0, w0 = LocalFeatureEnhancement.split_sizes(h, w)
    assert (h0, w0) == ((h + 1) // 2, (w + 1) // 2)


def test_model_runs_on_odd_stem_map():
    model = build().eval()
    x = torch.randn(1, 3, 36, 36)  # stem map 9x9: quadrants 5/4
    with torch.no_grad():
        assert model.forward_stem(x).shape[-2:] == (9, 9)
        assert model(x).shape == (1, 7)


def test_lfa_quadrants_are_separate():
    """Each quadrant has its own weights, and its output depends only on its own input quadrant."""
    torch.manual_seed(0)
    lfa = LocalFeatureEnhancement(8).eval()
    ids = {id(m.square.weight) for m in lfa.modules() if isinstance(m, AsymConvBlock)}
    assert len(ids) == 8
    x = torch.randn(1, 8, 9, 9)  # cut at row/column 5
    x2 = x.clone()
    x2[..., 5:, 5:] += torch.randn(1, 8, 4, 4)  # bottom-right quadrant only
    with torch.no_grad():
        a, b = lfa(x), lfa(x2)
    torch.testing.assert_close(a[..., :5, :], b[..., :5, :])
    torch.testing.assert_close(a[..., 5:, :5], b[..., 5:, :5])
    assert not torch.allclose(a[..., 5:, 5:], b[..., 5:, 5:])


# ----------------------------------------------------------------------------------------------- fusion


def test_acb_branches_and_fuse():
    torch.manual_seed(0)
    acb = AsymConvBlock(8, 16)
    assert (acb.square.kernel_size, acb.hor.kernel_size, acb.ver.kernel_size) == ((3, 3), (1, 3), (3, 1))
    assert all(isinstance(getattr(acb, n), nn.BatchNorm2d) for n in ("square_bn", "hor_bn", "ver_bn"))
    randomize_bn(acb)
    acb.eval()
    x = torch.randn(2, 8, 11, 10)
    with torch.no_grad():
        ref = acb(x)
        acb.fuse()
        out = acb(x)
    assert acb.is_fused and isinstance(acb.fused, nn.Conv2d) and acb.fused.kernel_size == (3, 3)
    assert acb.fused.bias is not None and not hasattr(acb, "square")
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_model_fuse_keeps_eval_outputs():
    # in float64, so the check measures the folding itself and not float32 summation order over 34 layers
    # (in float32 the fused model agrees to ~2e-5 relative, depending on the thread count)
    model = build().double()
    randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ref = model(x)
        assert model.fuse() is model
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    blocks = [m for m in model.modules() if isinstance(m, AsymConvBlock)]
    assert len(blocks) == 8 and all(b.is_fused for b in blocks)
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size in ((1, 3), (3, 1)) for m in model.modules())
    assert n_params(model) == RESNET34_7 + LFA_FUSED + MGC
    model.reparameterize()  # alias, idempotent
    with torch.no_grad():
        torch.testing.assert_close(model(x), out)


# ------------------------------------------------------------------------------------------------- ACmix


def test_acmix_init_and_mix():
    torch.manual_seed(0)
    m = ACmix(16, 16, num_heads=4, kernel_att=7, kernel_conv=3).eval()
    assert m.alpha.item() == 0.5 and m.beta.item() == 0.5
    assert m.alpha.requires_grad and m.beta.requires_grad
    w = m.dep_conv.weight  # shift kernels: input map i of each group is a one-hot at kernel position i
    assert w.shape == (16, 9, 3, 3) and m.dep_conv.groups == 4
    assert torch.equal(w[5].flatten(1), torch.eye(9))
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad():
        mixed = m(x)
        m.alpha.fill_(1.0), m.beta.fill_(0.0)
        att = m(x)
        m.alpha.fill_(0.0), m.beta.fill_(1.0)
        conv = m(x)
    torch.testing.assert_close(mixed, 0.5 * att + 0.5 * conv, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(att, conv)


def test_acmix_is_local():
    """ResNet-variant ACmix attends over a 7x7 window: a pixel far away cannot change the output."""
    torch.manual_seed(0)
    m = ACmix(8, 8, num_heads=2).eval()
    x = torch.randn(1, 8, 20, 20)
    x2 = x.clone()
    x2[..., 0, 0] += 5.0
    with torch.no_grad():
        a, b = m(x), m(x2)
    torch.testing.assert_close(a[..., 10:, 10:], b[..., 10:, 10:])
    assert not torch.allclose(a[..., :2, :2], b[..., :2, :2])


def test_multiscale_branches():
    ms = MultiScaleConv(64, 4)
    convs = [[c.conv.kernel_size for c in (b if isinstance(b, nn.Sequential) else [b])] for b in ms.branches]
    assert convs == [[(1, 1)], [(3, 3)], [(3, 3)] * 2, [(3, 3)] * 3]  # receptive fields 1, 3, 5, 7
    assert all(c.conv.in_channels == 16 for c in ms.modules() if hasattr(c, "conv"))


def test_in_chans_and_small_input_guard():
    model = build(in_chans=1, img_size=32)
    assert model.conv1.in_channels == 1
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 7)
    with pytest.raises(ValueError, match="img_size"):
        build(img_size=8)


@pytest.mark.parametrize(
    ("kw", "check"),
    [
        ({"lfa_split": False, "lfa_conv": "3x3"}, "one_plain"),  # table 6 row 1: 3x3 convs on the whole map
        ({"lfa_conv": "3x3"}, "four_plain"),  # row 2: quadrants, 3x3 convs
        ({"lfa_split": False}, "one_acb"),  # row 3: asymmetric convs, no split
        ({"mgc_multiscale": False}, "no_multiscale"),  # table 7 row 2
        ({"mgc_multiscale": False, "mgc_acmix": False}, "no_multiscale_no_acmix"),  # row 3
    ],
)
def test_table6_and_table7_switches_change_the_network(kw, check):
    import torch

    from ferlab.models.gclenet import ACmix, AsymConvBlock, MultiScaleConv

    full = ferlab.create_model("gclenet", img_size=64)
    m = ferlab.create_model("gclenet", img_size=64, **kw)
    lfa = m.lfa
    n_acb = sum(isinstance(x, AsymConvBlock) for x in lfa.modules())
    if check == "one_plain":
        assert len(lfa.quadrants) == 1 and n_acb == 0
    elif check == "four_plain":
        assert len(lfa.quadrants) == 4 and n_acb == 0
    elif check == "one_acb":
        assert len(lfa.quadrants) == 1 and n_acb == 2
    else:
        assert len(lfa.quadrants) == 4 and n_acb == 8
        assert not isinstance(m.mgc.multi_scale, MultiScaleConv)
        assert isinstance(m.mgc.acmix, ACmix) == (check == "no_multiscale")
    assert sum(p.numel() for p in m.parameters()) != sum(p.numel() for p in full.parameters())
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    with pytest.raises(ferlab.ConfigError, match="lfa_conv='5x5'"):
        ferlab.create_model("gclenet", img_size=64, lfa_conv="5x5")
