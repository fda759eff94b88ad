"""CK+ (Lucey et al., 2010) as per-class folders of peak frames, with subject-independent folds.

Layout: ``<root>/<class>/S005_001_00000011.png`` (the usual Kaggle/paper copy: anger, contempt, disgust,
fear, happy, sadness, surprise, optionally neutral). The subject id (``S005``) is parsed from the file
name into ``meta['subject']`` so k-fold splits never put one person in two folds.
``include_contempt=False`` drops contempt, as in the 6/7-class CK+ protocols of the papers.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .. import labels as L
from ..errors import DataError
from .base import FERDataset
from .imagefolder import read_class_folder

SUBJECT = re.compile(r"(S\d{3})", re.IGNORECASE)


def read_ckplus(root: str | Path, include_contempt: bool = True) -> FERDataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: CK+ folder not found")
    classes = L.EIGHT if include_contempt else L.SEVEN
    sp = read_class_folder(root, "all", L.EIGHT)
    if not include_contempt:
        keep = np.array([L.EIGHT[i] != "contempt" for i in sp.labels])
        sp = sp.subset(keep)
        sp.classes = classes
    subjects = []
    for p in sp.images:
        m = SUBJECT.search(Path(p).name)
        if not m:
            raise DataError(f"{p}: no CK+ subject id (S###) in the file name")
        subjects.append(m.group(1).upper())
    sp.meta["subject"] = np.array(subjects)
    return FERDataset("ckplus", classes, {"all": sp}, source=str(root))
