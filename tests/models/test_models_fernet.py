"""FERNet's depthwise-separable option (the narrower-`fast` candidates for CPUs without VNNI)."""

from __future__ import annotations

import torch
from torch import nn

import ferlab
from ferlab.models.profile import count_flops


def test_separable_fernet_is_depthwise_after_the_stem_and_cheaper():
    kw = {"num_classes": 7, "widths": (8, 32, 128, 256)}
    full = ferlab.create_model("fernet_xs", **kw)
    sep = ferlab.create_model("fernet_xs", separable=True, **kw)
    convs = [m for m in sep.modules() if isinstance(m, nn.Conv2d)]
    # stage 1 keeps one full 3x3 conv on the 1-channel input; every later 3x3 is depthwise
    assert convs[0].groups == 1 and convs[0].kernel_size == (3, 3)
    assert all(c.groups == c.in_channels == c.out_channels for c in convs[1:] if c.kernel_size == (3, 3))
    assert sum(c.kernel_size == (1, 1) for c in convs) == sum(c.kernel_size == (3, 3) for c in convs[1:])
    f_full, f_sep = count_flops(full, (1, 48, 48)), count_flops(sep, (1, 48, 48))
    assert f_sep < f_full / 4, (f_sep, f_full)
    x = torch.randn(3, 1, 48, 48)
    out = sep(x)
    assert out.shape == (3, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in sep.parameters())


def test_separable_residual_branch_starts_at_zero():
    """zero_init_last holds for the separable pair too: at init each residual pair is the identity (+ReLU)."""
    from ferlab.models.fernet import ResidualPair

    pair = ResidualPair(16, separable=True).eval()
    x = torch.rand(2, 16, 6, 6)  # non-negative, as after a ReLU
    torch.testing.assert_close(pair(x), x)
