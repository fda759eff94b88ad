"""Synthetic faces into a training split, as a new dataset version; and the helpers training uses.

:func:`merge_synthetic` returns a new :class:`~ferlab.data.base.FERDataset` whose training split holds the
real images followed by the accepted synthetic crops, with ``meta['synthetic']`` (bool), ``meta['gen_seed']``
(-1 for real images) and ``meta['gen_file']`` (the generated file, '' for real images); the other splits
are the original, real ones. The original dataset is not modified. :func:`write_dataset` saves the new
version as HDF5/npz (``cache:PATH``) or as a folder (``folder:PATH``), plus a ``synthetic.jsonl`` sidecar
with each synthetic image's full provenance (prompt, negative prompt, seed, model, steps, guidance, face box).

Training: ``synthetic_weight`` in the training config scales how often synthetic images are drawn
(:func:`ferlab.data.balance.draw_weights`; 0 drops them, 1 treats them like real ones), and every non-training split is
stripped of synthetic images (:func:`ferlab.data.synthetic.real_only`), so validation and test scores are on real faces only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import labels as L
from ..data.balance import deficit
from ..data.base import FERDataset, Split, stack_splits
from ..data.imagefolder import CROP_RULE_FILE
from ..data.synthetic import SIDECAR, real_only, synthetic_mask
from ..errors import DataError
from ..io import write_atomic
from .planner import is_training_split, parse_target
from .postprocess import SyntheticFaces

# ---------------------------------------------------------------- merging


def _fill(v: np.ndarray, n: int) -> np.ndarray:
    """``n`` placeholder values of ``v``'s kind for synthetic items (-1, '', False, NaN)."""
    k = v.dtype.kind
    if k in "iu":
        return np.full(n, -1, dtype=np.int64 if k == "u" else v.dtype)
    if k == "b":
        return np.zeros(n, bool)
    if k == "f":
        return np.full(n, np.nan, v.dtype)
    return np.full(n, "", dtype=object if k == "O" else "U1")


def merge_synthetic(
    ds: FERDataset,
    faces: SyntheticFaces,
    split: str = "train",
    cap: str | int | float | dict | None = "max",
    name: str | None = None,
) -> FERDataset:
    """A new dataset: ``ds`` with ``faces`` appended to its training split ``split``.

    Args:
        ds: the original dataset (not modified).
        faces: accepted crops from :func:`~ferlab.generate.postprocess.postprocess_generated`; their size
            and colour must match the split's images.
        split: the training split to extend; any other split is refused.
        cap: at most this many synthetic images per class: a balance target (``'max'``, a count, a ratio:
            the class's deficit in the real split), a dict class -> count, or None (all).
        name: the new dataset's name (default ``<name>+synthetic``).

    Raises:
        DataError: a non-training split, a class the dataset does not have, a size/colour mismatch.
    """
    if not is_training_split(split):
        raise DataError(
            f"refusing to add synthetic images to split {split!r}: only training splits may hold them "
            "(evaluation uses real images only)"
        )
    real = ds.split(split)
    if not real.in_memory:
        raise DataError(f"split {split!r} holds file paths; export it first (ferlab export-data --size N)")
    if synthetic_mask(real) is not None:
        raise DataError(f"split {split!r} already holds synthetic images; merge into the original dataset")
    unknown = sorted({e for e in faces.emotions if e not in ds.classes})
    if unknown:
        raise DataError(
            f"synthetic images of classes {unknown} that dataset {ds.name!r} does not have {ds.classes}"
        )
    if len(faces) and faces.images.shape[1:] != real.images.shape[1:]:
        raise DataError(
            f"synthetic crops of shape {faces.images.shape[1:]} differ from {split!r} images "
            f"{real.images.shape[1:]}; post-process with the dataset's size and colour"
        )
    labels = L.to_indices(faces.emotions, ds.classes) if len(faces) else np.zeros(0, np.int64)
    if cap is None:
        limit = np.full(len(ds.classes), np.iinfo(np.int64).max)
    elif isinstance(cap, dict):
        limit = np.array([int(cap.get(c, 0)) for c in ds.classes])
    else:
        limit = deficit(real.class_counts(), parse_target(cap))
    keep, used = [], np.zeros(len(ds.classes), np.int64)
    for i, y in enumerate(labels):
        if used[y] < limit[y]:
            keep.append(i)
            used[y] += 1
    keep = np.asarray(keep, dtype=np.int64)
    recs = [faces.records[i] for i in keep]
    meta_real = {k: np.asarray(v) for k, v in real.meta.items()}
    meta_real.update(
        synthetic=np.zeros(len(real), bool),
        gen_seed=np.full(len(real), -1, np.int64),
        gen_file=np.full(len(real), "", dtype="U1"),
    )
    meta_syn = {k: _fill(v, len(keep)) for k, v in meta_real.items()}
    meta_syn.update(
        synthetic=np.ones(len(keep), bool),
        gen_seed=np.array([int(r.get("seed", -1)) for r in recs], dtype=np.int64),
        gen_file=np.array([str(r.get("file", "")) for r in recs]),
    )
    real_part = Split(split, real.images, real.labels, ds.classes, None, meta_real)
    syn_part = Split(split, faces.images[keep], labels[keep], ds.classes, None, meta_syn)
    merged = stack_splits([real_part, syn_part], split)
    if real.soft_labels is not None:  # one-hot soft labels for the synthetic images
        merged.soft_labels = np.concatenate(
            [real.soft_labels, np.eye(len(ds.classes), dtype=np.float32)[labels[keep]]]
        )
    splits = {}
    for n, sp in ds.splits.items():
        splits[n] = merged if n == split else (sp if is_training_split(n) else real_only(sp))
    added = {c: int(k) for c, k in zip(ds.classes, used)}
    info = {
        **ds.info,
        "synthetic": {"split": split, "added": added, "total": int(used.sum()), "records": recs},
        "parent": ds.name,
    }
    return FERDataset(name or f"{ds.name}+synthetic", tuple(ds.classes), splits, source=ds.source, info=info)


# ---------------------------------------------------------------- writing


def sidecar_path(out: str | Path) -> Path:
    """Where :func:`write_dataset` puts the provenance of the synthetic images."""
    out = Path(out)
    return (
        out / SIDECAR
        if out.suffix.lower() not in (".h5", ".hdf5", ".npz")
        else out.with_suffix(".synthetic.jsonl")
    )


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve() or Path(b).resolve() in Path(a).resolve().parents
    except OSError:
        return False


def write_dataset(ds: FERDataset, out: str | Path, splits=None, protect=()) -> Path:
    """Save a merged dataset to ``out``: ``.h5``/``.hdf5``/``.npz`` (load with ``cache:OUT``) or a folder
    (``OUT/<split>/<class>/*.png``, synthetic files named ``syn_*``; load with ``folder:OUT``).

    Writes ``synthetic.jsonl`` beside it (inside the folder, or ``<stem>.synthetic.jsonl``). Refuses to
    write over or into the dataset's source or any path in ``protect`` (e.g. the ``cache:`` file it came from).
    """
    from PIL import Image

    from ..data.cache import save_dataset

    out = Path(out)
    for orig in [ds.source, *protect]:
        if orig and (_same_file(out, orig) or _same_file(orig, out)):
            raise DataError(f"refusing to write {out}: it would overwrite the original dataset {orig}")
    records = (ds.info.get("synthetic") or {}).get("records", [])
    if out.suffix.lower() in (".h5", ".hdf5", ".npz"):
        save_dataset(ds, out, splits=splits)
        lines = [{"split": (ds.info.get("synthetic") or {}).get("split"), **r} for r in records]
    else:
        if out.exists() and any(out.iterdir()):
            raise DataError(
                f"{out}: folder exists and is not empty; choose a new folder for the dataset version"
            )
        by_file = {r.get("file"): r for r in records}
        lines = []
        names = [n for n in (splits or ds.splits) if n in ("train", "val", "test")]
        if not names:
            raise DataError("folder output holds train/val/test splits only; none to write")
        for n in names:
            sp = ds.split(n)
            if not sp.in_memory:
                raise DataError(f"split {n!r} holds file paths; load it before writing")
            syn = synthetic_mask(sp)
            files = sp.meta.get("gen_file")
            for i in range(len(sp)):
                cls = ds.classes[sp.labels[i]]
                if syn is not None and syn[i]:
                    rel = f"{n}/{cls}/syn_{Path(str(files[i])).stem}.png"
                    lines.append({"path": rel, "split": n, **by_file.get(str(files[i]), {})})
                else:
                    rel = f"{n}/{cls}/{n}_{i:06d}.png"
                dest = out / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(sp.images[i]).save(dest)
        if ds.info.get(
            "crop"
        ):  # the real images' crop rule (generated faces are cut by ferlab prepare's rule)
            write_atomic(json.dumps(ds.info["crop"]) + "\n", out / CROP_RULE_FILE)
    side = sidecar_path(out)
    write_atomic("".join(json.dumps(r) + "\n" for r in lines), side)
    return out
