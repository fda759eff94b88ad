"""FER+ (Barsoum et al., ICMI 2016): FER2013 images with ten crowd votes each, from ``fer2013new.csv``.

Label modes (following the FER+ paper and Microsoft's reference data pipeline):

* ``majority`` - votes of a single annotator for an emotion are treated as outliers and removed; an image
  is kept only if one emotion then has more than half of the remaining votes (a strict majority).
* ``plurality`` - the emotion with the most raw votes (ties go to the first column in FER+ order).
* ``probability`` - the soft label is the vote distribution over the emotions (single-vote outliers
  removed, renormalised); the hard label is its argmax. Soft labels are in ``Split.soft_labels``.

In every mode an image is dropped when ``unknown`` or ``NF`` (not a face) wins, or when it has no votes.
The 7-class variant also drops images whose label is contempt and removes contempt from soft labels.
Splits follow FER2013: ``train`` (Training), ``val`` (PublicTest), ``test`` (PrivateTest).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .. import labels as L
from ..errors import DataError
from .base import FERDataset, Split

MODES = ("majority", "plurality", "probability")


def read_votes(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vote counts ``[N, 10]``, usage index ``[N]`` and csv row ``[N]`` from a FER+ csv.

    Accepts Microsoft's ``fer2013new.csv`` (``Usage,Image name,neutral,...,NF``) and the shared copy
    ``ferplus_votes.csv`` (``row,usage,neutral,...,NF``).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: FER+ vote file not found")
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        cols = [h.lower() for h in header]
        want = [c.lower() for c in L.FERPLUS_COLUMNS]
        if not set(want) <= set(cols):
            raise DataError(f"{path}: header {header} lacks the FER+ vote columns {list(L.FERPLUS_COLUMNS)}")
        vote_idx = [cols.index(c) for c in want]
        usage_idx = cols.index("usage")
        row_idx = cols.index("row") if "row" in cols else None
        votes, usage, rows = [], [], []
        for i, rec in enumerate(reader):
            if not rec:
                continue
            try:
                v = [int(float(rec[j] or 0)) for j in vote_idx]
            except (ValueError, IndexError):
                raise DataError(f"{path}: line {i + 2} has unreadable vote counts") from None
            if min(v) < 0:
                raise DataError(f"{path}: line {i + 2} has a negative vote count")
            u = rec[usage_idx].strip()
            if u not in ("Training", "PublicTest", "PrivateTest"):
                raise DataError(f"{path}: line {i + 2} has usage {u!r}")
            votes.append(v)
            usage.append(("Training", "PublicTest", "PrivateTest").index(u))
            rows.append(int(rec[row_idx]) if row_idx is not None else i)
    return np.array(votes, dtype=np.int64), np.array(usage), np.array(rows)


def votes_to_targets(votes: np.ndarray, mode: str = "majority", num_classes: int = 8):
    """Votes ``[N, 10]`` -> (keep mask ``[N]``, hard labels into the canonical class tuple, soft ``[N, C]``).

    Labels and soft labels are in canonical order (``labels.class_names(num_classes)``).
    """
    if mode not in MODES:
        raise DataError(f"unknown FER+ label mode {mode!r}; valid: {', '.join(MODES)}")
    classes = L.class_names(num_classes)
    votes = np.asarray(votes, dtype=np.float64)
    if mode == "plurality":
        v = votes
    else:
        v = np.where(votes <= 1, 0.0, votes)  # single votes are outliers
    total = v.sum(1)
    win = v.argmax(1)  # FER+ column index
    keep = (total > 0) & (win < 8)
    if mode == "majority":
        keep &= v.max(1) > 0.5 * total
    # FER+ emotion columns 0..7 -> canonical positions
    perm = np.array([classes.index(L.FERPLUS[k]) if L.FERPLUS[k] in classes else -1 for k in range(8)])
    hard = np.where(win < 8, perm[np.minimum(win, 7)], -1)
    keep &= hard >= 0  # 7-class: contempt winners dropped
    soft = np.zeros((len(v), len(classes)))
    for k in range(8):
        if perm[k] >= 0:
            soft[:, perm[k]] = v[:, k]
    s = soft.sum(1, keepdims=True)
    keep &= s[:, 0] > 0
    soft = np.divide(soft, s, out=np.zeros_like(soft), where=s > 0)
    return keep, np.where(keep, hard, 0), soft.astype(np.float32)


def read_ferplus(votes_path: str | Path, fer2013, mode: str = "majority", num_classes: int = 8) -> FERDataset:
    """FER+ images (from a FER2013 :class:`FERDataset`) with labels derived from the vote file."""
    votes, usage, rows = read_votes(votes_path)
    all_rows = np.concatenate([fer2013.splits[s].meta["row"] for s in ("train", "val", "test")])
    all_imgs = np.concatenate([fer2013.splits[s].images for s in ("train", "val", "test")])
    order = np.argsort(all_rows)
    all_rows, all_imgs = all_rows[order], all_imgs[order]
    pos = np.searchsorted(all_rows, rows)
    ok = (pos < len(all_rows)) & (all_rows[np.minimum(pos, len(all_rows) - 1)] == rows)
    if not ok.all():
        raise DataError(
            f"{votes_path}: {int((~ok).sum())} vote rows have no FER2013 image (first: row {rows[~ok][0]})"
        )
    keep, hard, soft = votes_to_targets(votes, mode, num_classes)
    classes = L.class_names(num_classes)
    splits = {}
    for u, name in enumerate(("train", "val", "test")):
        m = keep & (usage == u)
        splits[name] = Split(
            name,
            all_imgs[pos[m]],
            hard[m],
            classes,
            soft_labels=soft[m] if mode == "probability" else None,
            meta={"row": rows[m], "votes": votes[m]},
        )
    from .fer2013 import add_dedup_splits

    add_dedup_splits(splits)
    info = {"mode": mode, "dropped": int((~keep).sum())}
    return FERDataset(
        f"ferplus{num_classes}" if num_classes == 7 else "ferplus", classes, splits, str(votes_path), info
    )
