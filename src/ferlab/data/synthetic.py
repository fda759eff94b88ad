"""Synthetic-image bookkeeping: which items of a split are generated faces, and the real part of a split.

A dataset version written by ``ferlab generate merge`` (:mod:`ferlab.generate.merge`) carries a meta column
``synthetic`` (bool) on its training split and a ``synthetic.jsonl`` sidecar in its folder. Training draws
synthetic items ``synthetic_weight`` times as often as real ones (:func:`ferlab.data.balance.draw_weights`),
and every evaluation uses :func:`real_only` (``Split.real_only()``), so scores are on real faces only.
This module lives in the data layer so that training and evaluation never depend on the generation feature.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIDECAR = "synthetic.jsonl"


def synthetic_mask(split) -> np.ndarray | None:
    """Bool mask of the synthetic items of ``split``, or None when it has none."""
    if "synthetic" not in split.meta:
        return None
    m = np.asarray(split.meta["synthetic"]).astype(bool)
    return m if m.any() else None


def split_synthetic(split):
    """``(real part, synthetic part or None)``."""
    m = synthetic_mask(split)
    if m is None:
        return split, None
    return split.subset(~m), split.subset(m)


def real_only(split):
    """``split`` without synthetic items (evaluation splits must hold real faces only)."""
    return split_synthetic(split)[0]


def mark_synthetic(ds):
    """Set ``meta['synthetic']`` on a folder dataset written by :func:`write_dataset` (from its
    ``synthetic.jsonl``); other datasets are returned unchanged."""
    root = Path(ds.source) if ds.source else None
    if root is None or not root.is_dir() or not (root / SIDECAR).is_file():
        return ds
    syn = {json.loads(line)["path"] for line in (root / SIDECAR).read_text().splitlines() if line.strip()}
    for sp in ds.splits.values():
        if "path" in sp.meta and "synthetic" not in sp.meta:
            rel = [Path(p).resolve().relative_to(root.resolve()).as_posix() for p in sp.meta["path"]]
            sp.meta["synthetic"] = np.array([r in syn for r in rel])
    return ds
