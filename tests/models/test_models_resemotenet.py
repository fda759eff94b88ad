"""ResEmoteNet specifics: the reference layer list's exact parameter count, map shapes, switches, quirks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ferlab
from ferlab.models.resemotenet import ResEmoteNet
from ferlab.transforms import create_transform


def _n(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def model() -> ResEmoteNet:
    torch.manual_seed(0)
    return ferlab.create_model("resemotenet", num_classes=7)


def test_param_count_matches_reference(model):
    assert _n(model) == 80_238_599
    assert _n(model.stem) == 371_712
    assert _n(model.se) == 8_192
    assert [_n(s) for s in model.stages] == [3_674_624, 14_689_280, 58_738_688]
    assert _n(model.pre_logits) + _n(model.head) == 2_756_103


@pytest.mark.parametrize("num_classes", [5, 8])
def test_param_count_formula(num_classes):
    m = ferlab.create_model("resemotenet", num_classes=num_classes)
    assert _n(m) == 80_236_800 + 257 * num_classes
    assert m.head.out_features == num_classes


def test_se_switch_removes_exactly_the_se_weights():
    m = ferlab.create_model("resemotenet", use_se=False)
    assert isinstance(m.se, nn.Identity)
    assert _n(m) == 80_238_599 - 2 * 256 * 16


def test_dropout_switches():
    m = ferlab.create_model("resemotenet", drop_rate=0.3, stem_drop_rate=0.0)
    assert [d.p for d in m.pre_logits if isinstance(d, nn.Dropout)] == [0.3] * 3
    assert not any(isinstance(d, nn.Dropout) for d in m.stem.modules())
    ref = ferlab.create_model("resemotenet")
    # Reference: Dropout(0.2) after the first two stem stages only.
    assert [any(isinstance(d, nn.Dropout) and d.p == 0.2 for d in s) for s in ref.stem] == [True, True, False]


def test_intermediate_shapes_at_native_size(model):
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        s = model.stem(x)
        assert s.shape == (2, 256, 8, 8)
        assert model.se(s).shape == s.shape
        shapes = []
        for stage in model.stages:
            s = stage(s)
            shapes.append(tuple(s.shape[1:]))
        assert shapes == [(512, 4, 4), (1024, 2, 2), (2048, 1, 1)]
        out = model.forward_outputs(x)
    assert out["embedding"].shape == (2, 256) and model.num_features == 256
    assert out["logits"].shape == (2, 7)


def test_block3_dead_taps_at_64(model):
    """The kept reference quirk: block 3's second conv runs on a 1x1 map, so only its centre tap learns; its
    first conv (stride 2 on a 2x2 map, padding 1) only uses the 2x2 lower-right taps."""
    model.train()
    model.zero_grad()
    model(torch.randn(2, 3, 64, 64)).logsumexp(1).sum().backward()
    g2 = model.stages[2].conv2.weight.grad.abs().sum((0, 1))
    g1 = model.stages[2].conv1.weight.grad.abs().sum((0, 1))
    live2 = torch.zeros(3, 3, dtype=torch.bool)
    live2[1, 1] = True
    live1 = torch.zeros(3, 3, dtype=torch.bool)
    live1[1:, 1:] = True
    assert torch.equal(g2 != 0, live2)
    assert torch.equal(g1 != 0, live1)
    model.zero_grad(set_to_none=True)


def test_adaptive_pool_accepts_other_sizes(model):
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 7)
        assert model.forward_features(torch.randn(1, 3, 32, 32)).shape == (1, 2048, 1, 1)


def test_data_config_gray_replicated_with_imagenet_stats(model):
    cfg = model.data_config
    assert cfg.input_size == (3, 64, 64) and cfg.color == "gray"
    assert cfg.mean == pytest.approx((0.485, 0.456, 0.406)) and cfg.std == pytest.approx(
        (0.229, 0.224, 0.225)
    )
    faces = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    x = create_transform(cfg)(faces)
    assert x.shape == (2, 3, 64, 64)
    # One gray plane, normalised per channel: channel c = (g - mean_c) / std_c.
    g0 = x[:, 0] * 0.229 + 0.485
    torch.testing.assert_close(x[:, 1], (g0 - 0.456) / 0.224, rtol=1e-4, atol=1e-4)
