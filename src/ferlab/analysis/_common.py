"""Plumbing shared by the analyses: checkpoint loading and labels, seeded dataset samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import expand_globs


def expand_checkpoints(specs) -> list[str]:
    """Checkpoint arguments with globs expanded (an unmatched glob is an error)."""
    return expand_globs(specs, "checkpoint")


def checkpoint_label(path: str | Path) -> str:
    """A short name for a checkpoint: the run folder's name, ``run/best`` for a file in a run folder, or
    the file's stem."""
    p = Path(path)
    if p.is_dir():
        return p.resolve().name
    if p.stem in ("best", "last", "model") and p.parent.name:
        return f"{p.parent.name}/{p.stem}"
    return p.stem


def load_checkpoints(specs) -> list[tuple[str, object]]:
    """``[(label, model)]`` for checkpoint paths/globs (models in eval mode with ``.classes``); repeated
    labels get ``#2``, ``#3``."""
    from ..infer.recognizer import resolve_model

    out, seen = [], {}
    for p in expand_checkpoints(specs):
        model = resolve_model(p)  # the one model reference: shipped names, runs, .pt, .safetensors, .onnx
        label = checkpoint_label(p)
        seen[label] = seen.get(label, 0) + 1
        out.append((label if seen[label] == 1 else f"{label}#{seen[label]}", model))
    return out


def sample_indices(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """All ``n`` indices, or ``limit`` of them drawn without replacement under ``seed`` (sorted), so two
    commands with the same seed and limit see the same images."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def load_split_sample(dataset: str, split: str, data_dir=None, limit=None, seed: int = 0, models=()):
    """A seeded sample of a dataset split as an in-memory :class:`~ferlab.data.base.Split` (path-based
    splits are read at the largest input side of ``models``, in colour unless every model is gray)."""
    from ..data import load_dataset

    sp = load_dataset(dataset, data_dir).split(split)
    idx = sample_indices(len(sp), limit, seed)
    sp = sp.subset(idx)
    if not sp.in_memory:
        cfgs = [m.data_config for m in models]
        size = max((c.input_size[1] for c in cfgs), default=48)
        gray = bool(cfgs) and all(c.color == "gray" for c in cfgs)
        sp = sp.load(size=size, grayscale=gray)
    if len(sp) == 0:
        raise ConfigError(f"{dataset}/{split}: no readable image")
    sp.sample_index = idx[: len(sp)]  # type: ignore[attr-defined]  (positions in the full split)
    return sp
