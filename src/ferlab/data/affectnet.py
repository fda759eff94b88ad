"""AffectNet (Mollahosseini et al., 2017) from its ``training.csv`` / ``validation.csv``.

Columns used: ``subDirectory_filePath``, ``face_x, face_y, face_width, face_height``, ``expression``
(0 Neutral .. 7 Contempt; 8 None, 9 Uncertain, 10 No-Face are dropped and counted). The official
validation set is the usual test set, so splits are ``train`` and ``test``. Images are paths under
``Manually_Annotated_Images/``; face boxes are in ``meta['box']`` as ``x1, y1, x2, y2``.
``num_classes=7`` drops contempt as in the 7-class protocol.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .. import labels as L
from ..errors import DataError
from .base import FERDataset, Split


def read_affectnet(root: str | Path, num_classes: int = 8) -> FERDataset:
    root = Path(root)
    classes = L.class_names(num_classes)
    img_root = root / "Manually_Annotated_Images"
    if not img_root.is_dir():
        img_root = root
    splits, dropped = {}, {}
    for fname, split in (("training.csv", "train"), ("validation.csv", "test")):
        path = root / fname
        if not path.is_file():
            continue
        paths, labels, boxes, drop = [], [], [], 0
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            need = {"subDirectory_filePath", "expression"}
            if not need <= set(reader.fieldnames or []):
                raise DataError(f"{path}: columns {reader.fieldnames} lack {sorted(need)}")
            for i, rec in enumerate(reader):
                try:
                    e = int(rec["expression"])
                except ValueError:
                    raise DataError(
                        f"{path}: line {i + 2}: expression {rec['expression']!r} is not an integer"
                    ) from None
                if e in L.AFFECTNET_DROPPED or (e in L.AFFECTNET and L.AFFECTNET[e] not in classes):
                    drop += 1
                    continue
                if e not in L.AFFECTNET:
                    raise DataError(f"{path}: line {i + 2}: expression {e} out of range 0..10")
                try:
                    x, y = float(rec.get("face_x") or 0), float(rec.get("face_y") or 0)
                    w, h = float(rec.get("face_width") or 0), float(rec.get("face_height") or 0)
                except ValueError:
                    raise DataError(f"{path}: line {i + 2}: face box is not numeric") from None
                paths.append(str(img_root / rec["subDirectory_filePath"]))
                labels.append(classes.index(L.AFFECTNET[e]))
                boxes.append((x, y, x + w, y + h))
        splits[split] = Split(
            split, paths, np.array(labels), classes, meta={"box": np.array(boxes).reshape(-1, 4)}
        )
        dropped[split] = drop
    if not splits:
        raise DataError(f"{root}: AffectNet training.csv / validation.csv not found")
    return FERDataset("affectnet", classes, splits, source=str(root), info={"dropped": dropped})
