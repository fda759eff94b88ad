"""Dataset names -> readers, and discovery of what a data root holds.

``load_dataset(name, data_dir=None, **options)`` is the one entry point. Names:

======================  =======================================================================
``fer2013``             ``<root>/fer2013/fer2013.npz`` (shared copy), ``fer2013.csv`` (Kaggle) or
                        ``train/<class>/`` folders
``ferplus``             FER+ 8-class, ``mode=majority|plurality|probability`` (``ferplus7``: no contempt);
                        votes from ``fer2013/ferplus_votes.csv`` or ``ferplus/fer2013new.csv``
``rafdb``               ``<root>/rafdb`` (``EmoLabel/`` + ``Image/aligned/``)
``affectnet``           ``<root>/affectnet`` (``training.csv``, ``validation.csv``); ``affectnet7``
``ckplus``              ``<root>/ckplus/<class>/`` (``ckplus7``: contempt removed)
``folder:PATH``         any ImageFolder (``PATH/<class>/`` or ``PATH/{train,val,test}/<class>/``)
``cache:PATH``          an HDF5 or npz file written by :func:`ferlab.data.cache.save_dataset`
======================  =======================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import DataError, unknown_name
from .base import FERDataset, resolve_root

_DIRS = {
    "fer2013": ("fer2013", "FER2013", "fer-2013"),
    "ferplus": ("ferplus", "FERPlus", "fer2013", "FER2013"),
    "rafdb": ("rafdb", "RAF-DB", "raf-db", "RAFDB", "raf_db", "rafdb/basic", "RAF-DB/basic"),
    "affectnet": ("affectnet", "AffectNet"),
    "ckplus": ("ckplus", "CK+", "ck+", "CKPlus"),
}


def _first(root: Path, rels) -> Path | None:
    for r in rels:
        if (root / r).exists():
            return root / r
    return None


def _locate_fer2013(root: Path) -> Path | None:
    for d in (*_DIRS["fer2013"], "."):
        hit = _first(root / d, ("fer2013.npz", "fer2013.csv"))
        if hit:
            return hit
        if (root / d / "train").is_dir() and d != ".":
            return root / d
    return None


def _locate_ferplus(root: Path) -> Path | None:
    for d in _DIRS["ferplus"]:
        hit = _first(root / d, ("ferplus_votes.csv", "fer2013new.csv"))
        if hit:
            return hit
    return None


@lru_cache(maxsize=4)
def _fer2013_cached(path: str, mtime: float) -> FERDataset:
    from .fer2013 import read_fer2013_csv, read_fer2013_folder, read_fer2013_npz

    p = Path(path)
    if p.suffix == ".npz":
        return read_fer2013_npz(p)
    if p.suffix == ".csv":
        return read_fer2013_csv(p)
    return read_fer2013_folder(p)


def _read_fer2013(path: Path, root: Path, options: dict) -> FERDataset:
    return _fer2013_cached(str(path), path.stat().st_mtime)


def _ferplus(num_classes: int):
    def read(path: Path, root: Path, options: dict) -> FERDataset:
        from .ferplus import read_ferplus

        fer_path = _locate_fer2013(root)
        if fer_path is None:
            raise DataError(f"FER+ needs the FER2013 images too; none found under {root}")
        fer = _fer2013_cached(str(fer_path), fer_path.stat().st_mtime)
        return read_ferplus(path, fer, mode=options.get("mode", "majority"), num_classes=num_classes)

    return read


def _read_rafdb(path: Path, root: Path, options: dict) -> FERDataset:
    from .rafdb import read_rafdb

    return read_rafdb(path, aligned=options.get("aligned", True))


def _affectnet(num_classes: int):
    def read(path: Path, root: Path, options: dict) -> FERDataset:
        from .affectnet import read_affectnet

        return read_affectnet(path, num_classes=num_classes)

    return read


def _ckplus(contempt: bool):
    def read(path: Path, root: Path, options: dict) -> FERDataset:
        from .ckplus import read_ckplus

        return read_ckplus(path, include_contempt=contempt)

    return read


@dataclass(frozen=True)
class DatasetEntry:
    """One named dataset: where it lives under a data root (``locate``) and how it is read (``read``)."""

    name: str
    locate: Callable[[Path], Path | None]
    read: Callable[[Path, Path, dict], FERDataset]
    description: str


def _in_dirs(key: str):
    return lambda root: _first(root, _DIRS[key])


#: The dataset table: ``load_dataset`` looks names up here, the CLI reads its choices from it.
REGISTRY: dict[str, DatasetEntry] = {
    e.name: e
    for e in (
        DatasetEntry("fer2013", _locate_fer2013, _read_fer2013, "FER2013, 7 classes, official splits"),
        DatasetEntry(
            "ferplus", _locate_ferplus, _ferplus(8), "FER+ votes over the FER2013 images, 8 classes"
        ),
        DatasetEntry("ferplus7", _locate_ferplus, _ferplus(7), "FER+ without contempt, 7 classes"),
        DatasetEntry("rafdb", _in_dirs("rafdb"), _read_rafdb, "RAF-DB basic, 7 classes"),
        DatasetEntry("affectnet", _in_dirs("affectnet"), _affectnet(8), "AffectNet, 8 classes"),
        DatasetEntry("affectnet7", _in_dirs("affectnet"), _affectnet(7), "AffectNet without contempt"),
        DatasetEntry("ckplus", _in_dirs("ckplus"), _ckplus(True), "CK+ peak frames, 8 classes"),
        DatasetEntry("ckplus7", _in_dirs("ckplus"), _ckplus(False), "CK+ without contempt"),
    )
}
DATASETS = tuple(REGISTRY)
#: name prefixes taking a path: ``folder:PATH`` (an ImageFolder) and ``cache:PATH`` (HDF5/npz)
PREFIXES = ("folder:", "cache:")


def locate(name: str, root: Path) -> Path | None:
    """Where dataset ``name`` lives under ``root`` (the file or folder its reader takes), or None."""
    if name not in REGISTRY:
        raise unknown_name("dataset", name, [*DATASETS, "folder:PATH", "cache:PATH"])
    return REGISTRY[name].locate(root)


def _read_folder(p: Path, options: dict) -> FERDataset:
    from ..io import SkipReport
    from .imagefolder import SPLIT_DIRS, read_imagefolder, read_split_folders

    report = SkipReport()
    if p.is_dir() and any(d.name.lower() in SPLIT_DIRS for d in p.iterdir() if d.is_dir()):
        ds = read_split_folders(p, name=p.name, size=options.get("size"), report=report)
    else:
        ds = read_imagefolder(p, size=options.get("size"), report=report)
    ds.info["skipped"] = report
    return ds


def load_dataset(name: str, data_dir: str | Path | None = None, **options) -> FERDataset:
    """Load a dataset by name (a row of :data:`REGISTRY`, or ``folder:PATH`` / ``cache:PATH``) from the data
    root (``data_dir`` or ``$FERLAB_DATA``).

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
        DataError: the root or the dataset's files are missing or malformed.
    """
    if name.startswith("cache:"):
        from .cache import load_cached

        return load_cached(name[6:])
    if name.startswith("folder:"):
        return _read_folder(Path(name[7:]), options)
    if name not in REGISTRY:
        raise unknown_name("dataset", name, [*DATASETS, "folder:PATH", "cache:PATH"])
    root = resolve_root(data_dir)
    path = REGISTRY[name].locate(root)
    if path is None:
        raise DataError(
            f"dataset {name!r} not found under {root} (see `ferlab datasets --help` for the layouts)"
        )
    return REGISTRY[name].read(path, root, options)


def find_datasets(data_dir: str | Path | None = None) -> dict[str, Path]:
    """The datasets present under the data root, by name -> path."""
    root = resolve_root(data_dir)
    out = {}
    for name, entry in REGISTRY.items():
        p = entry.locate(root)
        if p is not None:
            out[name] = p
    return out
