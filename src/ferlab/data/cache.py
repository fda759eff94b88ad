"""Export any dataset to HDF5 (train/val/test groups, as in Berindeie 2024) or npz, and load it back fast.

HDF5 layout::

    /<split>/images       uint8 [N,H,W] or [N,H,W,3] (uncompressed: loads at disk speed)
    /<split>/labels       int64 [N]
    /<split>/soft_labels  float32 [N,C]            (optional)
    /<split>/meta/<key>   [N]                      (row, subject, synthetic, ...)
    attrs: name, classes (JSON), source, format_version

npz layout: ``<split>__images``, ``<split>__labels``, ``<split>__soft_labels``, ``<split>__meta__<key>``
and ``__classes__``/``__name__`` as unicode arrays (no pickle).
Path-based splits are loaded (resized to ``size``) before writing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_path
from .base import FERDataset, Split

FORMAT_VERSION = 1


def _in_memory(sp: Split, size, report=None) -> Split:
    if sp.in_memory:
        return sp
    if size is None:
        raise DataError(f"split {sp.name!r} holds file paths; give an image size to export it")
    return sp.load(size=size, grayscale=True, report=report)


def _meta_array(v) -> np.ndarray:
    a = np.asarray(v)
    return a.astype("S") if a.dtype.kind in "UO" else a


def save_dataset(ds: FERDataset, path: str | Path, splits=None, size: int | None = None, report=None) -> Path:
    """Write ``ds`` (all splits, or ``splits``) to ``path`` (.h5/.hdf5 or .npz), atomically.

    Path-based splits are read at ``size``; files that cannot be read are skipped and added to ``report``
    (a :class:`ferlab.io.SkipReport`) when one is given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(splits or ds.splits)
    with atomic_path(path) as tmp:
        if path.suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(tmp, "w") as f:
                f.attrs.update(
                    name=ds.name,
                    classes=json.dumps(list(ds.classes)),
                    source=ds.source,
                    format_version=FORMAT_VERSION,
                )
                if ds.info.get("crop"):  # the face-crop rule of the images, when ferlab prepare made them
                    f.attrs["crop"] = json.dumps(ds.info["crop"])
                for n in names:
                    sp = _in_memory(ds.split(n), size, report)
                    g = f.create_group(n)
                    g.create_dataset("images", data=sp.images)
                    g.create_dataset("labels", data=sp.labels)
                    if sp.soft_labels is not None:
                        g.create_dataset("soft_labels", data=sp.soft_labels)
                    for k, v in sp.meta.items():
                        g.create_dataset(f"meta/{k}", data=_meta_array(v))
        elif path.suffix == ".npz":
            arrays = {"__classes__": np.array(ds.classes), "__name__": np.array(ds.name)}
            if ds.info.get("crop"):  # the face-crop rule of the images, as JSON text
                arrays["__crop__"] = np.array(json.dumps(ds.info["crop"]))
            for n in names:
                sp = _in_memory(ds.split(n), size, report)
                arrays[f"{n}__images"] = sp.images
                arrays[f"{n}__labels"] = sp.labels
                if sp.soft_labels is not None:
                    arrays[f"{n}__soft_labels"] = sp.soft_labels
                for k, v in sp.meta.items():
                    arrays[f"{n}__meta__{k}"] = np.asarray(v)
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        else:
            raise DataError(f"{path}: unknown cache format; use .h5, .hdf5 or .npz")
    return path


def load_cached(path: str | Path, splits=None) -> FERDataset:
    """Load a dataset written by :func:`save_dataset` (FER2013 train loads in well under a second)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: cache file not found")
    out = {}
    info: dict = {}
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
        with f:
            classes = tuple(json.loads(f.attrs["classes"]))
            name = str(f.attrs.get("name", path.stem))
            for n in splits or list(f.keys()):
                if n not in f:
                    raise DataError(f"{path}: no split {n!r}; splits: {', '.join(f.keys())}")
                g = f[n]
                meta = {}
                if "meta" in g:
                    for k, d in g["meta"].items():
                        a = d[()]
                        meta[k] = a.astype(str) if a.dtype.kind == "S" else a
                soft = g["soft_labels"][()] if "soft_labels" in g else None
                out[n] = Split(n, g["images"][()], g["labels"][()], classes, soft, meta)
            source = str(f.attrs.get("source", ""))
            if "crop" in f.attrs:
                info["crop"] = json.loads(f.attrs["crop"])
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            classes = tuple(str(c) for c in z["__classes__"])
            name = str(z["__name__"])
            if "__crop__" in z.files:
                info["crop"] = json.loads(str(z["__crop__"]))
            found = sorted({k.split("__")[0] for k in z.files if not k.startswith("__")})
            for n in splits or found:
                if f"{n}__images" not in z.files:
                    raise DataError(f"{path}: no split {n!r}; splits: {', '.join(found)}")
                meta = {k.split("__meta__")[1]: z[k] for k in z.files if k.startswith(f"{n}__meta__")}
                soft = z[f"{n}__soft_labels"] if f"{n}__soft_labels" in z.files else None
                out[n] = Split(n, z[f"{n}__images"], z[f"{n}__labels"], classes, soft, meta)
        source = str(path)
    else:
        raise DataError(f"{path}: unknown cache format; use .h5, .hdf5 or .npz")
    return FERDataset(name, classes, out, source=source, info=info)
