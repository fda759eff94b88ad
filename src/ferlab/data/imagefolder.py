"""Folder-of-images datasets: ``<root>/<class>/*.jpg`` and ``<root>/<split>/<class>/*.jpg``.

Class folder names are mapped to the canonical vocabulary through :func:`ferlab.labels.canonical_name`
(``angry``/``anger``, ``happy``/``happiness``, ``disgusted`` ...). Unknown folder names are an error
that lists them, never silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import labels as L
from ..errors import DataError
from ..io import SkipReport, list_images
from .base import FERDataset, Split

SPLIT_DIRS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "publictest": "val",
    "test": "test", "privatetest": "test",
}  # fmt: skip


def _class_dirs(root: Path) -> dict[str, Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown, out = [], {}
    for d in dirs:
        try:
            out[d.name] = L.canonical_name(d.name)
        except DataError:
            unknown.append(d.name)
    if unknown:
        raise DataError(
            f"{root}: class folders {unknown} are not expression names; "
            f"known: {', '.join(sorted(set(L.SYNONYMS)))}"
        )
    return {name: root / folder for folder, name in out.items()}


def _classes_for(names) -> tuple[str, ...]:
    return L.EIGHT if "contempt" in names else L.SEVEN


def read_class_folder(
    root: Path, split: str, classes: tuple[str, ...], report: SkipReport | None = None, size=None
) -> Split:
    """One split from ``root/<class>/*``; if ``size`` is given the images are loaded into memory."""
    paths, labels = [], []
    pos = {c: i for i, c in enumerate(classes)}
    for name, folder in sorted(_class_dirs(root).items(), key=lambda kv: pos.get(kv[0], 99)):
        if name not in pos:
            raise DataError(f"{folder}: class {name!r} is not in the class set {classes}")
        files = list_images(folder)
        paths += [str(p) for p in files]
        labels += [pos[name]] * len(files)
    if not paths:
        raise DataError(f"{root}: no image files found under its class folders")
    sp = Split(split, paths, np.array(labels), classes, meta={"path": np.array(paths)})
    if size is not None:
        sp = sp.load(size=size, grayscale=True, report=report)
    return sp


def read_imagefolder(
    root: str | Path,
    name: str | None = None,
    split: str = "train",
    report: SkipReport | None = None,
    size=None,
) -> FERDataset:
    """Any ImageFolder whose class folders name expressions (7 classes, or 8 if ``contempt`` is present)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    classes = _classes_for(_class_dirs(root))
    sp = read_class_folder(root, split, classes, report, size)
    return FERDataset(name or root.name, classes, {split: sp}, source=str(root), info=crop_info(root))


def read_split_folders(
    root: str | Path, name: str, classes=None, report: SkipReport | None = None, size=None
) -> FERDataset:
    """``root/{train,val,test}/<class>/*`` (also ``Training``/``PublicTest``/``PrivateTest``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    found = {
        SPLIT_DIRS[d.name.lower()]: d for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLIT_DIRS
    }
    if not found:
        raise DataError(f"{root}: no split folders (train/, val/, test/) found")
    if classes is None:
        names = set().union(*(_class_dirs(d) for d in found.values()))
        classes = _classes_for(names)
    splits = {
        s: read_class_folder(found[s], s, classes, report, size)
        for s in ("train", "val", "test")
        if s in found
    }
    return FERDataset(name, tuple(classes), splits, source=str(root), info=crop_info(root))


#: the file beside prepared crops that records their face-crop rule as JSON (written by ``ferlab prepare``
#: through :mod:`ferlab.faces.crop`, read here as plain data; the HDF5 attribute ``crop`` holds the same)
CROP_RULE_FILE = "ferlab_crop.json"


def crop_info(root: Path) -> dict:
    """``{'crop': rule}`` when ``root`` holds the crop rule ``ferlab prepare`` wrote beside its crops, else {}."""
    f = Path(root) / CROP_RULE_FILE
    if not f.is_file():
        return {}
    try:
        rule = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{f}: not a readable crop rule ({e})") from None
    if not isinstance(rule, dict):
        raise DataError(f"{f}: not a crop rule (a JSON object expected)")
    return {"crop": rule}
