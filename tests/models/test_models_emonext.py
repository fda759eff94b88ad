"""EmoNeXt specifics: parameter counts of the five sizes, switches, STN, SE placement, per-sample attn_reg."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import SEModule

import ferlab
from ferlab.errors import ConfigError
from ferlab.models.emonext import SelfAttentionRegularizer, affine_grid

SIZES = ["tiny", "small", "base", "large", "xlarge"]
# Reference totals (ARCHITECTURES.md §4, 7 classes, 224 px) and final widths D. Our build leaves out the
# reference's value projection (D*D + D parameters), which never influences logits or loss.
REFERENCE = {
    "tiny": 30_564_331,
    "small": 52_198_891,
    "base": 91_765_259,
    "large": 204_582_475,
    "xlarge": 362_312_331,
}
WIDTH = {"tiny": 768, "small": 768, "base": 1024, "large": 1536, "xlarge": 2048}
TINY = 29_973_739
STN = 868_740  # at 224 px (regressor FC 27,040 -> 32)
SE_TINY = 96_768  # 192^2/8 + 384^2/8 + 768^2/8
ATTN_TINY = 2 * 768 + 2 * (768 * 768 + 768)  # LayerNorm + query + key


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta(name: str = "emonext_tiny", **kw) -> torch.nn.Module:
    with torch.device("meta"):  # counts without allocating or initialising the weights
        return ferlab.create_model(name, **kw)


@pytest.fixture(scope="module")
def tiny64():
    torch.manual_seed(0)
    return ferlab.create_model("emonext_tiny", img_size=64).eval()


def test_parameter_counts_all_sizes():
    counts = {s: _count(_meta(f"emonext_{s}")) for s in SIZES}
    assert counts["tiny"] == TINY
    for s in SIZES:
        assert counts[s] == REFERENCE[s] - (WIDTH[s] ** 2 + WIDTH[s]), s
    assert counts["tiny"] < counts["small"] < counts["base"] < counts["large"] < counts["xlarge"]


def test_switches_change_parameter_count():
    assert _count(_meta(stn=False)) == TINY - STN
    assert _count(_meta(se=False)) == TINY - SE_TINY
    assert _count(_meta(attn_reg=False)) == TINY - ATTN_TINY
    assert _count(_meta(stn=False, se=False, attn_reg=False)) == 27_825_511  # plain ConvNeXt-T, 7-class head
    assert isinstance(_meta(drop_path_rate=0.0).backbone.stages[3].blocks[2].drop_path, torch.nn.Identity)
    assert not isinstance(_meta().backbone.stages[3].blocks[2].drop_path, torch.nn.Identity)
    assert (
        _meta(img_size=224).stn.regressor[0].in_features == 10 * 52 * 52
    )  # the reference's hard-wired 27,040
    with pytest.raises(ConfigError, match="too small"):
        _meta(img_size=16)


def test_se_after_each_downsampling_only():
    m = _meta()
    assert not isinstance(m.backbone.stages[0].downsample, torch.nn.Sequential)  # stem side: no SE
    for i, width in zip((1, 2, 3), (192, 384, 768)):
        se = m.backbone.stages[i].downsample[-1]
        assert isinstance(se, SEModule)
        assert se.fc1.weight.shape == (width // 16, width, 1, 1) and se.fc1.bias is None
    assert sum(isinstance(mod, SEModule) for mod in m.modules()) == 3


def test_affine_grid_matches_torch():
    theta = torch.randn(3, 2, 3)
    for h, w in [(224, 224), (64, 48), (2, 5)]:
        torch.testing.assert_close(
            affine_grid(theta, h, w), F.affine_grid(theta, [3, 1, h, w], align_corners=True)
        )


def test_stn_starts_at_identity(tiny64):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        warped = tiny64.forward_outputs(x)["maps"]["stn"]
    torch.testing.assert_close(warped, x, rtol=1e-5, atol=1e-5)


def test_attn_reg_is_per_sample(tiny64):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out = tiny64.forward_outputs(x)
        alone = tiny64.forward_outputs(x[:1])
        x2 = x.clone()
        x2[1:] = torch.rand(2, 3, 64, 64)
        mixed = tiny64.forward_outputs(x2)
    assert out["attn_reg"].shape == (3,)
    assert out["maps"]["attn"].shape == (3, 4, 4)  # 2x2 spatial tokens at 64 px
    assert torch.all(out["attn_reg"] > 0)  # non-zero at batch size 1, unlike the reference's B x B version
    torch.testing.assert_close(alone["attn_reg"][0], out["attn_reg"][0])
    torch.testing.assert_close(mixed["attn_reg"][0], out["attn_reg"][0])
    torch.testing.assert_close(out["logits"], tiny64(x))
    assert "attn_reg" not in _meta(attn_reg=False).forward_outputs(torch.rand(1, 3, 224, 224, device="meta"))


def test_attn_reg_formula_and_gradient():
    torch.manual_seed(0)
    reg = SelfAttentionRegularizer(16)
    tokens = torch.randn(2, 5, 16, requires_grad=True)
    value, attn = reg(tokens)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 5))
    expected = torch.stack([((a - a.mean()) ** 2).mean() for a in attn])
    torch.testing.assert_close(value, expected)
    value.sum().backward()
    assert tokens.grad.abs().sum() > 0  # the regulariser shapes the trunk's features
    with torch.no_grad():
        reg.query.weight.zero_()
        reg.query.bias.zero_()
        value, attn = reg(tokens)  # equal scores -> uniform attention -> zero penalty
    torch.testing.assert_close(value, torch.zeros(2))
    torch.testing.assert_close(attn, torch.full_like(attn, 0.2))


def test_shapes_at_native_size():
    torch.manual_seed(0)
    m = ferlab.create_model("emonext_tiny").eval()  # the one 224 px run of this file
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        feats = m.forward_features(x)
        out = m.forward_outputs(x)
    assert feats.shape == (1, 768, 7, 7)
    assert out["maps"]["attn"].shape == (1, 49, 49)
    assert out["embedding"].shape == (1, 768) and out["logits"].shape == (1, 7)
    assert out["attn_reg"].shape == (1,)


def test_timm_convnext_weights_load_into_backbone(tmp_path, tiny64):
    import timm
    from safetensors.torch import save_file

    from ferlab.models import load_pretrained

    src = timm.create_model("convnext_tiny", pretrained=False)
    path = tmp_path / "convnext_tiny.safetensors"
    save_file(src.state_dict(), str(path))
    res = load_pretrained(tiny64, path, prefix="backbone")
    assert res["loaded"] == len(src.state_dict()) - 2  # everything but head.fc.weight / head.fc.bias
    torch.testing.assert_close(
        tiny64.backbone.stages[2].blocks[8].mlp.fc2.weight, src.stages[2].blocks[8].mlp.fc2.weight
    )
