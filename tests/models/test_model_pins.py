"""Every registered model's parameter count against the one pin table (built on the meta device: no memory)."""

from __future__ import annotations

import pytest
import torch
from model_pins import PINS, VARIANT_PINS

import ferlab
from ferlab.models import list_models


def _count(name: str, **switches) -> int:
    with torch.device("meta"):
        m = ferlab.create_model(name, num_classes=7, **switches)
    return sum(p.numel() for p in m.parameters())


def test_every_registered_model_is_pinned():
    assert sorted(PINS) == list_models(), "add the new model's parameter count to tests/models/model_pins.py"


@pytest.mark.parametrize("name", sorted(PINS))
def test_parameter_count(name):
    assert _count(name) == PINS[name]


@pytest.mark.parametrize(
    "key", list(VARIANT_PINS), ids=lambda k: f"{k[0]}-" + "-".join(f"{a}={b}" for a, b in k[1])
)
def test_variant_parameter_count(key):
    name, switches = key
    assert _count(name, **dict(switches)) == VARIANT_PINS[key]
