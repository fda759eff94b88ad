"""Class balance: count tables and charts, deficits, over/under-sampling, samplers, class weights.

Papers 000 and 004 both correct FER2013's imbalance (disgust: 436 training images, happy: 7,215).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..tables import markdown_table
from .base import FERDataset


def count_table(ds: FERDataset, splits=None) -> tuple[list[str], list[list]]:
    """Header and rows (split, total, one count per class) for a dataset."""
    header = ["split", "total", *ds.classes]
    rows = []
    for name in splits or ds.splits:
        sp = ds.split(name)
        rows.append([name, len(sp), *sp.class_counts().tolist()])
    return header, rows


def format_table(header, rows) -> str:
    """The class-count table for a terminal (cells padded to their column)."""
    return markdown_table(header, rows, pad=True)


def plot_class_counts(ds: FERDataset, path: str | Path, splits=None) -> Path:
    """Grouped bar chart of class counts per split (PNG)."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    names = list(splits or [s for s in ds.splits if not s.endswith("_dedup")])
    x = np.arange(len(ds.classes))
    wbar = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(ds.classes) + 2, 4))
    for i, n in enumerate(names):
        c = ds.split(n).class_counts()
        bars = ax.bar(x + i * wbar - 0.4 + wbar / 2, c, wbar, label=f"{n} ({c.sum()})")
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, ds.classes)
    ax.set_ylabel("images")
    ax.set_title(f"{ds.name}: images per class")
    ax.legend()
    return save_figure(fig, path)


def deficit(counts, target: str | int | float = "max") -> np.ndarray:
    """Images each class needs to reach the target: ``'max'`` (the largest class), a count, or a ratio
    (float in (0, 1]: each class up to ``ratio * max``). Never negative."""
    counts = np.asarray(counts, dtype=np.int64)
    if target == "max":
        goal = counts.max()
    elif isinstance(target, float) and 0 < target <= 1:
        goal = int(np.ceil(target * counts.max()))
    elif isinstance(target, (int, np.integer)) and target > 0:
        goal = int(target)
    else:
        raise ConfigError(f"balance target {target!r}: use 'max', a positive count, or a ratio in (0, 1]")
    return np.maximum(goal - counts, 0)


def oversample_indices(labels, target="max", seed: int = 0) -> np.ndarray:
    """Indices that repeat minority-class items (drawn at random without bias) up to the target."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels)
    need = deficit(counts, target)
    extra = [
        rng.choice(np.flatnonzero(labels == c), size=n, replace=True)
        for c, n in enumerate(need)
        if n > 0 and counts[c] > 0
    ]
    return np.sort(np.concatenate([np.arange(len(labels)), *extra]))


def undersample_indices(labels, target: str | int = "min", seed: int = 0) -> np.ndarray:
    """Indices keeping at most ``target`` items per class (``'min'``: the smallest class size)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels)
    cap = counts[counts > 0].min() if target == "min" else int(target)
    keep = [
        rng.choice(np.flatnonzero(labels == c), size=min(cap, n), replace=False)
        for c, n in enumerate(counts)
        if n
    ]
    return np.sort(np.concatenate(keep))


def class_weights(
    labels, num_classes: int | None = None, method: str = "inverse", beta: float = 0.9999
) -> np.ndarray:
    """Per-class loss weights, normalised to mean 1 over the present classes.

    ``inverse``: n / (C * n_c) (scikit-learn's 'balanced'); ``effective``: (1 - beta) / (1 - beta^n_c)
    (Cui et al., CVPR 2019, "class-balanced loss based on effective number of samples").
    """
    counts = np.bincount(np.asarray(labels), minlength=num_classes or 0).astype(np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    if method == "inverse":
        w[present] = counts.sum() / (present.sum() * counts[present])
    elif method == "effective":
        w[present] = (1 - beta) / (1 - np.power(beta, counts[present]))
    else:
        raise ConfigError(f"unknown class-weight method {method!r}; valid: inverse, effective")
    w[present] *= present.sum() / w[present].sum()
    return w.astype(np.float32)


def draw_weights(
    labels, num_classes: int | None = None, balance: bool = True, item_weight=None
) -> np.ndarray:
    """Per-item draw weights of the one training sampler.

    ``item_weight`` scales single items (1 for real faces, ``synthetic_weight`` for generated ones); with
    ``balance`` every class is drawn equally often (each item divided by its class's total weight; without
    item weights these are the ``inverse`` class weights, scikit-learn's 'balanced').
    """
    labels = np.asarray(labels)
    if item_weight is None:
        return (
            class_weights(labels, num_classes)[labels].astype(np.float64) if balance else np.ones(len(labels))
        )
    a = np.asarray(item_weight, dtype=np.float64)
    if not balance:
        return a
    mass = np.bincount(labels, weights=a, minlength=num_classes or 0)
    return np.where(mass[labels] > 0, a / np.maximum(mass[labels], 1e-12), 0.0)


def draw_indices(
    labels, n: int, generator, balance: bool = True, item_weight=None, num_classes=None
) -> np.ndarray:
    """``n`` training indices drawn with replacement by :func:`draw_weights` (``generator``: a seeded
    ``torch.Generator``, so an epoch's draw is reproducible)."""
    import torch

    w = torch.as_tensor(draw_weights(labels, num_classes, balance, item_weight), dtype=torch.double)
    return torch.multinomial(w, n, replacement=True, generator=generator).numpy()


def weighted_sampler(labels, num_samples: int | None = None, seed: int = 0):
    """A ``torch.utils.data.WeightedRandomSampler`` over :func:`draw_weights` (every class equally often)."""
    import torch
    from torch.utils.data import WeightedRandomSampler

    labels = np.asarray(labels)
    g = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(
        torch.as_tensor(draw_weights(labels), dtype=torch.double),
        num_samples or len(labels),
        replacement=True,
        generator=g,
    )
