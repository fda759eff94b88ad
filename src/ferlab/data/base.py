"""The split structure every dataset reader returns.

A reader returns a :class:`FERDataset`: a name, a class tuple in canonical order and a dict of
:class:`Split` objects (``train``, ``val``, ``test``, ...). A split holds either in-memory uint8 images
(``[N, H, W]`` grayscale or ``[N, H, W, 3]`` RGB) or file paths, integer labels indexing the class tuple,
optional soft labels ``[N, C]`` and per-item metadata arrays (source row, subject, face box, synthetic flag).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError, FerlabError
from ..io import SkipReport, read_image


@dataclass
class Split:
    """One split of a dataset: images (array or paths), labels, optional soft labels and metadata."""

    name: str
    images: np.ndarray | list[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    soft_labels: np.ndarray | None = None
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        if len(self.images) != n:
            raise DataError(f"split {self.name!r}: {len(self.images)} images but {n} labels")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            bad = int(np.flatnonzero((self.labels < 0) | (self.labels >= len(self.classes)))[0])
            raise DataError(
                f"split {self.name!r}: label {int(self.labels[bad])} at item {bad} is out of range "
                f"0..{len(self.classes) - 1}"
            )
        if self.soft_labels is not None and self.soft_labels.shape != (n, len(self.classes)):
            raise DataError(
                f"split {self.name!r}: soft labels of shape {self.soft_labels.shape}, expected {(n, len(self.classes))}"
            )
        for k, v in self.meta.items():
            if len(v) != n:
                raise DataError(f"split {self.name!r}: metadata {k!r} has {len(v)} entries for {n} items")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return isinstance(self.images, np.ndarray)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))

    def real_only(self) -> Split:
        """This split without synthetic (generated) items; itself when it has none (see :mod:`.synthetic`)."""
        from .synthetic import real_only

        return real_only(self)

    def subset(self, index, name: str | None = None) -> Split:
        """A new split with the items at ``index`` (bool mask or integer indices)."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        imgs = self.images[index] if self.in_memory else [self.images[i] for i in index]
        return Split(
            name=name or self.name,
            images=imgs,
            labels=self.labels[index],
            classes=self.classes,
            soft_labels=None if self.soft_labels is None else self.soft_labels[index],
            meta={k: np.asarray(v)[index] for k, v in self.meta.items()},
        )

    def load(
        self,
        size: int | tuple[int, int] | None = None,
        grayscale: bool = True,
        report: SkipReport | None = None,
    ) -> Split:
        """Materialise path-based images into one uint8 array (resized to ``size`` if given).

        Unreadable files are skipped and counted in ``report`` (created if not given, then attached as
        ``self.last_report``); the returned split keeps only the readable items.
        """
        from ..io import resize

        report = report if report is not None else SkipReport()
        if self.in_memory:
            return self
        arrays, keep = [], []
        for i, p in enumerate(self.images):
            try:
                img = read_image(p, grayscale=grayscale)
            except FerlabError as e:
                report.add("unreadable", str(e))
                continue
            if size is not None:
                img = resize(img, size)
            elif arrays and img.shape != arrays[0].shape:
                raise DataError(f"{p}: size {img.shape} differs from {arrays[0].shape}; pass size= to load()")
            arrays.append(img)
            keep.append(i)
        out = self.subset(keep)
        out.images = np.stack(arrays) if arrays else np.zeros((0, 1, 1), np.uint8)
        out.load_report = report  # type: ignore[attr-defined]
        return out


@dataclass
class FERDataset:
    """A named dataset: splits keyed by name, one class tuple, and where it came from."""

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    source: str = ""
    info: dict = field(default_factory=dict)

    def __getitem__(self, split: str) -> Split:
        return self.split(split)

    def split(self, name: str) -> Split:
        name = SPLIT_ALIASES.get(name.lower(), name) if isinstance(name, str) else name
        if name not in self.splits:
            raise DataError(f"dataset {self.name!r} has no split {name!r}; splits: {', '.join(self.splits)}")
        return self.splits[name]


#: Names users type for the official splits.
SPLIT_ALIASES = {
    "training": "train",
    "publictest": "val",
    "privatetest": "test",
    "valid": "val",
    "validation": "val",
    "test-dedup": "test_dedup",
}


def resolve_root(data_dir: str | Path | None) -> Path:
    """The data root: ``data_dir`` if given, else ``$FERLAB_DATA``; a clear error if neither exists."""
    import os

    root = data_dir or os.environ.get("FERLAB_DATA")
    if not root:
        raise DataError("no data root: pass --data-dir or set FERLAB_DATA to the folder holding the datasets")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data root {root} does not exist or is not a folder")
    return root


def stack_splits(splits: Sequence[Split], name: str) -> Split:
    """Concatenate in-memory splits with the same class tuple."""
    if not splits:
        raise DataError("nothing to concatenate")
    classes = splits[0].classes
    for s in splits:
        if s.classes != classes:
            raise DataError(f"split {s.name!r} has classes {s.classes}, expected {classes}")
    keys = set.intersection(*(set(s.meta) for s in splits))
    soft = None
    if all(s.soft_labels is not None for s in splits):
        soft = np.concatenate([s.soft_labels for s in splits])
    return Split(
        name=name,
        images=np.concatenate([s.images for s in splits]),
        labels=np.concatenate([s.labels for s in splits]),
        classes=classes,
        soft_labels=soft,
        meta={k: np.concatenate([np.asarray(s.meta[k]) for s in splits]) for k in keys},
    )
