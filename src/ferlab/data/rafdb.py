"""RAF-DB basic (Li et al., CVPR 2017): ``EmoLabel/list_patition_label.txt`` + aligned 100x100 faces.

Layout under the dataset folder (as distributed)::

    EmoLabel/list_patition_label.txt     # "train_00001.jpg 5" per line; labels 1..7
    Image/aligned/train_00001_aligned.jpg

Labels: 1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness, 6 Anger, 7 Neutral
(:data:`ferlab.labels.RAFDB`). Splits: ``train`` and ``test`` (from the file name prefix).
Images are returned as paths; ``Split.load(size)`` reads them into memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import labels as L
from ..errors import DataError
from .base import FERDataset, Split


def _find(root: Path, *candidates: str) -> Path | None:
    for c in candidates:
        if (root / c).exists():
            return root / c
    return None


def read_rafdb(root: str | Path, aligned: bool = True) -> FERDataset:
    root = Path(root)
    lst = _find(
        root,
        "EmoLabel/list_patition_label.txt",
        "basic/EmoLabel/list_patition_label.txt",
        "list_patition_label.txt",
    )
    if lst is None:
        raise DataError(f"{root}: RAF-DB label list EmoLabel/list_patition_label.txt not found")
    base = lst.parent.parent if lst.parent.name == "EmoLabel" else lst.parent
    img_dir = (
        _find(base, "Image/aligned", "aligned") if aligned else _find(base, "Image/original", "original")
    )
    if img_dir is None:
        raise DataError(f"{base}: RAF-DB image folder Image/{'aligned' if aligned else 'original'} not found")
    names, native = {"train": [], "test": []}, {"train": [], "test": []}
    for i, line in enumerate(lst.read_text().splitlines()):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{lst}:{i + 1}: expected 'file label', got {line!r}")
        fname, lab = parts
        split = "train" if fname.startswith("train") else "test" if fname.startswith("test") else None
        if split is None:
            raise DataError(f"{lst}:{i + 1}: file {fname!r} is neither train_* nor test_*")
        try:
            native[split].append(int(lab))
        except ValueError:
            raise DataError(f"{lst}:{i + 1}: label {lab!r} is not an integer") from None
        stem = Path(fname).stem
        names[split].append(str(img_dir / (f"{stem}_aligned.jpg" if aligned else fname)))
    splits = {}
    for s in ("train", "test"):
        if names[s]:
            labels = L.map_native(np.array(native[s]), L.RAFDB, L.SEVEN, str(lst))
            splits[s] = Split(s, names[s], labels, L.SEVEN, meta={"path": np.array(names[s])})
    return FERDataset("rafdb", L.SEVEN, splits, source=str(root))
