"""Offline dataset expansion from the papers — applied to a training split only, after splitting.

* ``paper002``: every training image in 15 variants: rotations of -10, -5, 0, +5, +10 degrees, each
  unflipped, flipped horizontally and flipped vertically (5 x 3 = 15, the paper's "15 times"; the paper
  says only "flipping and rotation ... +-10 degrees at 5 degree intervals", so the vertical flip is our
  reading of how the count reaches 15). ``paper002_hflip`` keeps only horizontal flips (5 x 2 = 10).
* ``paper004``: per-class multipliers (about 1.35x for every class, 2.16x for disgust) of randomly
  augmented copies (rotation, contrast, jitter, random-size crop) as in Berindeie's (2024) improved FER2013.

Every added item records ``meta['origin']`` (its index in the source split) and ``meta['augmented']``.
Expanding anything but a training split raises: augmenting before the split is the leak that inflated
one Berindeie 2024 (FER ensembles) model's FER2013 score (ResEmoteNet issues #42/#47), so ferlab makes it impossible here.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.base import Split
from ..errors import DataError
from .factory import AugmentConfig, augment_batch, to_tensor_batch

PAPER004_MULTIPLIERS = {"disgust": 2.16, "*": 1.35}
PAPER004_AUGMENT = AugmentConfig(
    hflip=0.5, rotate=15, scale=(0.85, 1.15), translate=0.08, brightness=0.15, contrast=0.3, erasing=0.0
)


def _check_training(split: Split) -> None:
    if not split.name.startswith("train") or split.name.endswith("_test"):
        raise DataError(
            f"refusing to expand split {split.name!r}: offline augmentation is for training splits only "
            "(split first, then expand the training part)"
        )


def _rotate_flip(images: np.ndarray, angle: float, flip: str) -> np.ndarray:
    x = to_tensor_batch(images).float()
    if flip == "h":
        x = x.flip(-1)
    elif flip == "v":
        x = x.flip(-2)
    if angle:
        a = np.deg2rad(angle)
        theta = torch.tensor([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]], dtype=torch.float32)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    out = x.round().clamp(0, 255).to(torch.uint8)
    out = out.permute(0, 2, 3, 1).numpy()
    return out[..., 0] if images.ndim == 3 else out


def _with_origin(split: Split, images, origin, augmented) -> Split:
    meta = {k: np.asarray(v)[origin] for k, v in split.meta.items()}
    meta["origin"] = np.asarray(origin)
    meta["augmented"] = np.asarray(augmented, dtype=bool)
    soft = split.soft_labels[origin] if split.soft_labels is not None else None
    return Split(split.name, images, split.labels[origin], split.classes, soft, meta)


def expand_paper002(split: Split, flips=("none", "h", "v"), angles=(-10, -5, 0, 5, 10)) -> Split:
    """Every image x len(angles) x len(flips) variants (15 by default); the originals are the (0, none) ones."""
    _check_training(split)
    if not split.in_memory:
        raise DataError(f"split {split.name!r} holds paths; load() it before expanding")
    imgs, origin, aug = [], [], []
    idx = np.arange(len(split))
    for flip in flips:
        for ang in angles:
            imgs.append(
                split.images if (ang == 0 and flip == "none") else _rotate_flip(split.images, ang, flip)
            )
            origin.append(idx)
            aug.append(np.full(len(split), not (ang == 0 and flip == "none")))
    return _with_origin(split, np.concatenate(imgs), np.concatenate(origin), np.concatenate(aug))


def expand_per_class(
    split: Split, multipliers: dict | None = None, augment: AugmentConfig | None = None, seed: int = 0
) -> Split:
    """Add randomly augmented copies so class c has about ``multipliers[c] x`` its images (Berindeie 2024)."""
    _check_training(split)
    if not split.in_memory:
        raise DataError(f"split {split.name!r} holds paths; load() it before expanding")
    multipliers = multipliers or PAPER004_MULTIPLIERS
    augment = augment or PAPER004_AUGMENT
    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    counts = split.class_counts()
    extra = []
    for c, name in enumerate(split.classes):
        m = float(multipliers.get(name, multipliers.get("*", 1.0)))
        n_extra = round((m - 1.0) * counts[c])
        if n_extra > 0:
            pool = np.flatnonzero(split.labels == c)
            extra.append(rng.choice(pool, size=n_extra, replace=n_extra > len(pool)))
    if not extra:
        return _with_origin(split, split.images, np.arange(len(split)), np.zeros(len(split), bool))
    extra = np.concatenate(extra)
    new = []
    for i in range(0, len(extra), 1024):
        x = to_tensor_batch(split.images[extra[i : i + 1024]]).float()
        y = augment_batch(x, augment, g).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        new.append(y[..., 0] if split.images.ndim == 3 else y)
    images = np.concatenate([split.images, *new])
    origin = np.concatenate([np.arange(len(split)), extra])
    aug = np.concatenate([np.zeros(len(split), bool), np.ones(len(extra), bool)])
    return _with_origin(split, images, origin, aug)


def expand(split: Split, policy: str, seed: int = 0) -> Split:
    """Apply a named expansion policy: ``paper002``, ``paper002_hflip``, ``paper004`` or ``none``."""
    if policy == "none":
        return split
    if policy == "paper002":
        return expand_paper002(split)
    if policy == "paper002_hflip":
        return expand_paper002(split, flips=("none", "h"))
    if policy == "paper004":
        return expand_per_class(split, seed=seed)
    from ..errors import unknown_name

    raise unknown_name("expansion policy", policy, ["none", "paper002", "paper002_hflip", "paper004"])
