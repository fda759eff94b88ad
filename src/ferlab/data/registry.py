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

from functools import lru_cache
from pathlib import Path

from ..errors import DataError, unknown_name
from .base import FERDataset, resolve_root

DATASETS = ("fer2013", "ferplus", "ferplus7", "rafdb", "affectnet", "affectnet7", "ckplus", "ckplus7")

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


def locate(name: str, root: Path) -> Path | None:
    """Where dataset ``name`` lives under ``root`` (the file or folder its reader takes), or None."""
    base = name.rstrip("7")
    if base == "fer2013":
        for d in (*_DIRS["fer2013"], "."):
            hit = _first(root / d, ("fer2013.npz", "fer2013.csv"))
            if hit:
                return hit
            if (root / d / "train").is_dir() and d != ".":
                return root / d
        return None
    if base == "ferplus":
        for d in _DIRS["ferplus"]:
            hit = _first(root / d, ("ferplus_votes.csv", "fer2013new.csv"))
            if hit:
                return hit
        return None
    return _first(root, _DIRS.get(base, ()))


@lru_cache(maxsize=4)
def _fer2013_cached(path: str, mtime: float) -> FERDataset:
    from .fer2013 import read_fer2013_csv, read_fer2013_folder, read_fer2013_npz

    p = Path(path)
    if p.suffix == ".npz":
        return read_fer2013_npz(p)
    if p.suffix == ".csv":
        return read_fer2013_csv(p)
    return read_fer2013_folder(p)


def load_dataset(name: str, data_dir: str | Path | None = None, **options) -> FERDataset:
    """Load a dataset by name from the data root (``data_dir`` or ``$FERLAB_DATA``).

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
        DataError: the root or the dataset's files are missing or malformed.
    """
    from .cache import load_cached

    if name.startswith("cache:"):
        return load_cached(name[6:])
    if name.startswith("folder:"):
        from ..io import SkipReport
        from .imagefolder import SPLIT_DIRS, read_imagefolder, read_split_folders

        p = Path(name[7:])
        report = SkipReport()
        if p.is_dir() and any(d.name.lower() in SPLIT_DIRS for d in p.iterdir() if d.is_dir()):
            ds = read_split_folders(p, name=p.name, size=options.get("size"), report=report)
        else:
            ds = read_imagefolder(p, size=options.get("size"), report=report)
        ds.info["skipped"] = report
        return ds
    if name not in DATASETS:
        raise unknown_name("dataset", name, [*DATASETS, "folder:PATH", "cache:PATH"])
    root = resolve_root(data_dir)
    path = locate(name, root)
    if path is None:
        raise DataError(
            f"dataset {name!r} not found under {root} (see `ferlab datasets --help` for the layouts)"
        )
    if name == "fer2013":
        return _fer2013_cached(str(path), path.stat().st_mtime)
    if name.startswith("ferplus"):
        from .ferplus import read_ferplus

        fer_path = locate("fer2013", root)
        if fer_path is None:
            raise DataError(f"FER+ needs the FER2013 images too; none found under {root}")
        fer = _fer2013_cached(str(fer_path), fer_path.stat().st_mtime)
        return read_ferplus(
            path, fer, mode=options.get("mode", "majority"), num_classes=7 if name.endswith("7") else 8
        )
    if name == "rafdb":
        from .rafdb import read_rafdb

        return read_rafdb(path, aligned=options.get("aligned", True))
    if name.startswith("affectnet"):
        from .affectnet import read_affectnet

        return read_affectnet(path, num_classes=7 if name.endswith("7") else 8)
    from .ckplus import read_ckplus

    return read_ckplus(path, include_contempt=not name.endswith("7"))


def find_datasets(data_dir: str | Path | None = None) -> dict[str, Path]:
    """The datasets present under the data root, by name -> path."""
    root = resolve_root(data_dir)
    out = {}
    for n in ("fer2013", "ferplus", "rafdb", "affectnet", "ckplus"):
        p = locate(n, root)
        if p is not None:
            out[n] = p
    return out
