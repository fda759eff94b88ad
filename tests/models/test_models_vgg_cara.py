"""Model-specific tests for ``vgg16_cara`` (paper 002: VGG16 + GCCA + partial decoder + reverse attention)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ferlab
from ferlab.models.vgg_cara import GCCA, VGG16CARA, ReverseAttention, stochastic_pool2d

SWITCHES = ("fusion", "gcca", "pd", "ra")
ALL_COMBOS = [dict(zip(SWITCHES, c)) for c in itertools.product((False, True), repeat=4)]


def _n(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


# ---- parameter counts, derived by hand from the layer list (7 classes, 3 input channels) -------------------
VGG16_CONVS = 14_714_688  # the 13 3x3 convs of VGG16 "D" (weights + biases), as torchvision's vgg16.features


def _gcca(c: int) -> int:  # grouped 1x1 (3 weights + bias per channel), C -> C/16 -> C with biases
    r = c // 16
    return 3 * c + c + c * r + r + r * c + c


def _cna(cin: int, cout: int, k: int) -> int:  # conv (no bias) + BN (weight, bias)
    return cin * cout * k * k + 2 * cout


GCCA_ALL = sum(_gcca(c) for c in (64, 128, 256, 512, 512))
LATERAL_345 = _cna(256, 64, 1) + _cna(512, 64, 1) + _cna(512, 64, 1)
LATERAL_2_EDGE = _cna(128, 64, 1) + (128 * 9 + 1)
PD = 4 * _cna(64, 64, 3) + 2 * _cna(128, 128, 3) + 2 * _cna(192, 192, 3) + (192 + 1)
RA = 3 * (2 * _cna(64, 64, 3) + 64 * 9 + 1)
TOP = 64 + 1


def _expected(fusion: bool, gcca: bool, pd: bool, ra: bool, num_classes: int = 7) -> int:
    n = VGG16_CONVS + (GCCA_ALL if gcca else 0)
    if fusion or pd or ra:
        n += LATERAL_345
    n += LATERAL_2_EDGE if fusion else 0
    n += PD if pd else (TOP if ra else 0)
    n += RA if ra else 0
    width = 256 if fusion else 512
    return n + width * num_classes + num_classes


# Table 1 of paper 002 (row 6 = row 5 + island loss, which is the engine's, not the model's).
TABLE1 = {
    1: (dict(fusion=False, gcca=False, pd=False, ra=False), 14_718_279),
    2: (dict(fusion=True, gcca=False, pd=False, ra=False), 14_808_264),
    3: (dict(fusion=True, gcca=True, pd=False, ra=False), 14_892_004),
    4: (dict(fusion=True, gcca=True, pd=True, ra=False), 15_999_909),
    5: (dict(fusion=True, gcca=True, pd=True, ra=True), 16_223_592),
}


def test_component_counts_by_hand():
    assert GCCA_ALL == 83_740
    assert LATERAL_345 + LATERAL_2_EDGE == 91_777
    assert PD == 1_107_905
    assert RA == 223_683


@pytest.mark.parametrize("row", sorted(TABLE1))
def test_param_count_table1_rows(row):
    kw, expected = TABLE1[row]
    model = ferlab.create_model("vgg16_cara", num_classes=7, img_size=32, **kw)
    assert _n(model) == expected == _expected(**kw)


def test_param_count_every_combination_and_defaults():
    # construction only, on the meta device (no memory, no init cost): all 16 combinations match the hand count
    with torch.device("meta"):
        for kw in ALL_COMBOS:
            assert _n(VGG16CARA(7, 3, **kw)) == _expected(**kw), kw
    assert _n(ferlab.create_model("vgg16_cara")) == TABLE1[5][1]  # defaults = the full framework
    assert (
        _n(ferlab.create_model("vgg16_cara", num_classes=8)) == TABLE1[5][1] + 257
    )  # one more row of 256 weights + 1 bias
    assert _n(ferlab.create_model("vgg16_cara", in_chans=1)) == TABLE1[5][1] - 2 * 64 * 9


def test_registry_data_config():
    info = ferlab.models.model_info("vgg16_cara")
    assert info.data.input_size == (3, 224, 224)  # paper: 224x224 crops; VGG16 takes 3 channels
    assert info.data.color == "rgb"
    assert set(info.switches) == {"fusion", "gcca", "pd", "ra", "drop_rate"}


# ---- GCCA ------------------------------------------------------------------------------------------------
def test_stochastic_pool_eval_known_answer():
    x = torch.tensor([[1.0, 3.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    x = torch.cat((x, torch.zeros_like(x), -x), 1)  # all-zero and all-negative channels pool to 0
    out = stochastic_pool2d(x, training=False)
    assert out.shape == (1, 3, 1, 1)
    torch.testing.assert_close(out.flatten(), torch.tensor([(1 + 9) / 4, 0.0, 0.0]))


def test_stochastic_pool_training_samples_by_probability():
    torch.manual_seed(0)
    x = torch.tensor([1.0, 3.0, 0.0, 0.0]).view(1, 1, 2, 2).expand(4000, 1, 2, 2)
    out = stochastic_pool2d(x, training=True).flatten()
    assert set(out.unique().tolist()) <= {1.0, 3.0}  # never a zero-probability position
    assert abs((out == 3.0).float().mean().item() - 0.75) < 0.03  # p = a / sum(a)
    one_hot = torch.zeros(2, 5, 3, 3)
    one_hot[:, :, 1, 2] = 2.5
    assert torch.equal(stochastic_pool2d(one_hot, training=True).flatten(), torch.full((10,), 2.5))


def test_gcca_zero_attention_is_identity():
    torch.manual_seed(0)
    m = GCCA(32).eval()
    x = torch.rand(2, 32, 5, 5)
    with torch.no_grad():
        m.fc2.weight.zero_()
        m.fc2.bias.fill_(-1e4)  # sigmoid -> exactly 0: F' = 0 * F + F
    assert torch.equal(m(x), x)
    with torch.no_grad():
        m.fc2.bias.zero_()  # sigmoid(0) = 0.5: F' = 1.5 F
    torch.testing.assert_close(m(x), 1.5 * x)


def test_gcca_equations_1_2_known_answer():
    torch.manual_seed(0)
    c = 32
    m = GCCA(c).eval()
    assert m.fc1.out_channels == c // 16 and m.fuse.groups == c
    x = torch.rand(2, c, 4, 6)
    a = x.flatten(2)
    avg, mx, rdm = a.mean(-1), a.amax(-1), (a * a).sum(-1) / a.sum(-1)  # eval: probability-weighted
    wg = m.fuse.weight.view(c, 3)  # per channel: (avg, max, rdm) weights
    g = F.relu(avg * wg[:, 0] + mx * wg[:, 1] + rdm * wg[:, 2] + m.fuse.bias)
    h = F.relu(g @ m.fc1.weight.view(c // 16, c).T + m.fc1.bias)
    att = torch.sigmoid(h @ m.fc2.weight.view(c, c // 16).T + m.fc2.bias)
    with torch.no_grad():
        expected = att[..., None, None] * x + x
        torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-6)


def test_gcca_train_is_random_eval_is_batch_independent():
    torch.manual_seed(0)
    m = GCCA(32)
    x = torch.rand(3, 32, 6, 6)
    with torch.no_grad():
        m.fuse.weight.copy_(
            torch.tensor([0.0, 0.0, 1.0]).repeat(32).view(32, 3, 1, 1)
        )  # only the rdm descriptor
        m.fc1.weight.fill_(0.1)
        torch.manual_seed(1)
        a = m.attention(x)
        torch.manual_seed(2)
        b = m.attention(x)
        assert not torch.equal(a, b)  # random pooling differs between draws in training
        m.eval()
        full = m(x)
        torch.testing.assert_close(m(x[1:2]), full[1:2])
        assert torch.equal(m(x), full)


# ---- reverse attention -------------------------------------------------------------------------------------
def test_reverse_attention_weight_known_answer():
    s = torch.tensor([[0.0, 2.0], [-1.0, 4.0]]).view(1, 1, 2, 2)
    f = torch.zeros(1, 8, 2, 2)
    torch.testing.assert_close(ReverseAttention.weight(s, f), 1 - torch.sigmoid(s))  # same size: no resize
    f4 = torch.zeros(1, 8, 4, 4)
    up = F.interpolate(s, size=(4, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(ReverseAttention.weight(s, f4), 1 - torch.sigmoid(up))


def test_reverse_attention_erases_and_adds_residual():
    torch.manual_seed(0)
    ra = ReverseAttention(8, 8).eval()
    feat = torch.randn(2, 8, 4, 4)
    coarse = torch.randn(2, 1, 2, 2)
    seen = {}
    ra.convs.register_forward_hook(lambda mod, inp, out: seen.__setitem__("r", inp[0]))
    with torch.no_grad():
        out = ra(feat, coarse)
        up = F.interpolate(coarse, size=(4, 4), mode="bilinear", align_corners=False)
        torch.testing.assert_close(seen["r"], feat * (1 - torch.sigmoid(up)))  # R_i = C_i * A_i
        ra.proj.weight.zero_()
        ra.proj.bias.zero_()
        torch.testing.assert_close(ra(feat, coarse), up)  # S_i = conv(R_i) + U(S_{i+1})
        ra(feat, torch.full_like(coarse, 1e4))  # a confident coarse map erases everything
        assert torch.equal(seen["r"], torch.zeros_like(feat))
    assert out.shape == (2, 1, 4, 4)


# ---- the model ---------------------------------------------------------------------------------------------
def test_block_lateral_and_side_map_shapes():
    torch.manual_seed(0)
    model = ferlab.create_model("vgg16_cara", img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        blocks = model.forward_blocks(x)
        assert [tuple(b.shape[1:]) for b in blocks] == [
            (64, 64, 64),
            (128, 32, 32),
            (256, 16, 16),
            (512, 8, 8),
            (512, 4, 4),  # last pool removed: block 5 at 1/16
        ]
        assert tuple(model.lateral3(blocks[2]).shape) == (2, 64, 16, 16)
        assert tuple(model.lateral5(blocks[4]).shape) == (2, 64, 4, 4)
        out = model.forward_outputs(x)
    maps = {k: tuple(v.shape) for k, v in out["maps"].items()}
    assert maps == {
        "edge": (2, 1, 32, 32),
        "global": (2, 1, 16, 16),
        "side5": (2, 1, 4, 4),
        "side4": (2, 1, 8, 8),
        "side3": (2, 1, 16, 16),
    }
    assert out["embedding"].shape == (2, 256) and out["logits"].shape == (2, 7)
    assert "aux_logits" not in out
    torch.testing.assert_close(out["logits"], model(x))
    grad_layer = model.get_submodule(model.gradcam_layer)
    assert grad_layer is model.gcca[4]


def test_native_size_once():
    model = ferlab.create_model("vgg16_cara").eval()
    with torch.no_grad():
        out = model.forward_outputs(torch.randn(1, 3, 224, 224))
    assert out["logits"].shape == (1, 7)
    assert out["maps"]["side5"].shape[-2:] == (14, 14) and out["maps"]["side3"].shape[-2:] == (56, 56)


@pytest.mark.parametrize("kw", ALL_COMBOS, ids=lambda d: "-".join(k for k, v in d.items() if v) or "plain")
def test_every_switch_combination_runs_with_gradients(kw):
    torch.manual_seed(0)
    model = ferlab.create_model("vgg16_cara", num_classes=5, img_size=32, **kw).train()
    out = model.forward_outputs(torch.randn(2, 3, 32, 32))
    assert out["logits"].shape == (2, 5) and torch.isfinite(out["logits"]).all()
    assert out["embedding"].shape == (2, 256 if kw["fusion"] else 512)
    expected_maps = set()
    if kw["fusion"]:
        expected_maps.add("edge")
    if kw["pd"]:
        expected_maps.add("global")
    if kw["ra"]:
        expected_maps |= {"side5", "side4", "side3"} | (set() if kw["pd"] else {"top"})
    assert set(out["maps"]) == expected_maps
    assert all(isinstance(g, GCCA) for g in model.gcca) == kw["gcca"]
    out["logits"].logsumexp(1).mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad[:5]


def test_pretrained_vgg16_backbone_loads(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(3)
    src = nn.Module()
    src.features = make_layers(cfgs["D"])  # torchvision/timm VGG16 key layout: features.<idx>.weight
    src.classifier = nn.Linear(4, 1000)
    path = tmp_path / "vgg16.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    model = ferlab.create_model("vgg16_cara", img_size=32, pretrained=path)
    for i in (0, 2, 10, 28):
        assert torch.equal(model.features[i].weight, src.features[i].weight)
    gray = ferlab.create_model("vgg16_cara", in_chans=1, img_size=32, pretrained=path)
    assert gray.features[0].weight.shape == (64, 1, 3, 3)  # mismatched first conv is skipped
    assert torch.equal(gray.features[2].weight, src.features[2].weight)
