"""Train/val/test splitting and cross-validation folds (stratified, subject-aware), via scikit-learn."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split

from ..errors import DataError
from .base import Split


def stratified_split(
    split: Split, fraction: float = 0.2, seed: int = 0, names=("train", "val")
) -> tuple[Split, Split]:
    """Split one split into two with class proportions kept (``fraction`` goes to the second).

    ``fraction=0.2`` is the 80/20 protocol of Wang 2024 (AEMT) and Chen et al. 2024 (GCLENet).
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction {fraction} must be in (0, 1)")
    idx = np.arange(len(split))
    a, b = train_test_split(idx, test_size=fraction, random_state=seed, stratify=split.labels)
    return split.subset(np.sort(a), names[0]), split.subset(np.sort(b), names[1])


def inner_split(split: Split, fraction: float = 0.2, seed: int = 0, group_key: str | None = None,
                names=("train", "val")) -> tuple[Split, Split]:  # fmt: skip
    """A validation part carved from ``split`` for model selection: stratified, and with ``group_key`` (e.g.
    ``'subject'``) no group in both parts (one fold of a stratified group k-fold, k = round(1/fraction))."""
    if group_key is None:
        return stratified_split(split, fraction, seed, names)
    if group_key not in split.meta:
        raise DataError(f"split {split.name!r} has no {group_key!r} metadata to group by")
    k = max(2, round(1 / fraction))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    a, b = next(cv.split(np.zeros(len(split)), split.labels, np.asarray(split.meta[group_key])))
    return split.subset(np.sort(a), names[0]), split.subset(np.sort(b), names[1])


def kfold(
    split: Split, k: int = 5, seed: int = 0, group_key: str | None = None
) -> Iterator[tuple[Split, Split]]:
    """Stratified k-fold (Wang 2024 (AEMT): k=5). With ``group_key`` (e.g. ``'subject'``) no group spans folds."""
    if k < 2:
        raise DataError(f"k={k}: k-fold needs k >= 2")
    idx = np.arange(len(split))
    if group_key:
        if group_key not in split.meta:
            raise DataError(f"split {split.name!r} has no metadata {group_key!r}; have {sorted(split.meta)}")
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
            idx, split.labels, split.meta[group_key]
        )
    else:
        folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, split.labels)
    for i, (tr, te) in enumerate(folds):
        yield split.subset(tr, f"fold{i}_train"), split.subset(te, f"fold{i}_test")
