"""The size variants that the costly tests leave to their family's smallest member really are that member
with more or wider layers: the same module types (built on the meta device, no memory)."""

from __future__ import annotations

import pytest
import torch

import ferlab
from families import SIZE_VARIANTS, representatives


def _types(name: str) -> set:
    with torch.device("meta"):
        model = ferlab.create_model(name, num_classes=7)
    return {type(m) for m in model.modules()}, sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("variant", "rep"), sorted(SIZE_VARIANTS.items()))
def test_variant_is_its_representative_scaled(variant, rep):
    assert rep in representatives() and variant in ferlab.list_models()
    (tv, nv), (tr, nr) = _types(variant), _types(rep)
    assert tv == tr, f"{variant} builds other module types than {rep}: {sorted(t.__name__ for t in tv ^ tr)}"
    assert nv > nr  # a larger member of the family


def test_every_family_is_covered():
    names = set(ferlab.list_models())
    assert set(SIZE_VARIANTS) < names and set(representatives()) | set(SIZE_VARIANTS) == names
