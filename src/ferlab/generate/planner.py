"""How many synthetic images each class needs: Berindeie's (2024) deficit table, for the training split only.

Berindeie 2024 (FER ensembles) counted FER2013 and found it needed 21,796 images for training and 5,240 "for testing" to
balance every class to the largest one. In ferlab's terms the 5,240 are the PublicTest (``val``, 2,676)
plus PrivateTest (``test``, 2,564) deficits, each split balanced to its own largest class. ferlab shows
those for reference but only ever generates for the training split: evaluation uses real faces only.

Example:
    >>> plan = plan_generation(load_dataset("fer2013"), target="max")
    >>> plan.generate["disgust"], plan.total
    (6779, 21796)
    >>> print(plan.table())
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.balance import deficit, format_table
from ..data.base import FERDataset
from ..errors import ConfigError, DataError
from ..io import write_atomic


def is_training_split(name: str) -> bool:
    """True for training splits (``train``, ``train_fold3`` ...); the only ones synthetic images may enter."""
    return name.startswith("train") and not name.endswith("_test")


def parse_target(target: str | int | float) -> str | int | float:
    """``'max'``, ``'5000'`` (a count per class) or ``'0.5'`` (a ratio of the largest class) from the CLI."""
    if not isinstance(target, str) or target == "max":
        return target
    try:
        return float(target) if "." in target else int(target)
    except ValueError:
        raise ConfigError(
            f"balance target {target!r}: use 'max', a positive count, or a ratio in (0, 1]"
        ) from None


@dataclass
class SplitDeficit:
    """Class counts of one split and the images each class needs to reach the target."""

    split: str
    counts: np.ndarray
    needed: np.ndarray

    @property
    def training(self) -> bool:
        return is_training_split(self.split)


@dataclass
class GenerationPlan:
    """The deficit of every split and the images to generate per class (training split only).

    Attributes:
        dataset: dataset name.
        classes: class tuple (canonical order).
        target: ``'max'``, a count, or a ratio (see :func:`ferlab.data.balance.deficit`).
        train_split: the split that synthetic images fill.
        splits: per-split deficits (training and, for reference, evaluation splits).
        overshoot: factor applied to the training deficit so that enough images survive post-processing
            (face detection rejects some); ``merge`` then adds at most the deficit itself.
    """

    dataset: str
    classes: tuple[str, ...]
    target: str | int | float
    train_split: str
    splits: list[SplitDeficit] = field(default_factory=list)
    overshoot: float = 1.0

    def split(self, name: str) -> SplitDeficit:
        for s in self.splits:
            if s.split == name:
                return s
        raise DataError(f"plan has no split {name!r}; splits: {', '.join(s.split for s in self.splits)}")

    @property
    def needed(self) -> dict[str, int]:
        """The training split's deficit per class (what ``merge`` fills at most)."""
        tr = self.split(self.train_split)
        return {c: int(n) for c, n in zip(self.classes, tr.needed)}

    @property
    def generate(self) -> dict[str, int]:
        """Images to generate per class: the training deficit times ``overshoot``, rounded up."""
        return {c: math.ceil(n * self.overshoot) for c, n in self.needed.items()}

    @property
    def total(self) -> int:
        return sum(self.needed.values())

    def table(self) -> str:
        """A Markdown table: one row per class, images and deficit per split, images to generate."""
        header = ["class"]
        for s in self.splits:
            header += [s.split, f"{s.split} needed"]
        header.append("generate")
        rows = []
        gen = self.generate
        for i, c in enumerate(self.classes):
            row = [c]
            for s in self.splits:
                row += [int(s.counts[i]), int(s.needed[i])]
            rows.append([*row, gen[c]])
        total = ["TOTAL"]
        for s in self.splits:
            total += [int(s.counts.sum()), int(s.needed.sum())]
        rows.append([*total, sum(gen.values())])
        return format_table(header, rows)

    def notes(self) -> list[str]:
        """Plain-language lines printed under the table."""
        out = [
            f"target: {self.target!r} per class; ferlab generates for the training split "
            f"{self.train_split!r} only: {self.total:,} images"
            + (
                f" (x{self.overshoot:g} overshoot: {sum(self.generate.values()):,})"
                if self.overshoot != 1
                else ""
            )
            + "."
        ]
        other = [s for s in self.splits if s.split != self.train_split]
        if other:
            parts = " + ".join(f"{s.split} {int(s.needed.sum()):,}" for s in other)
            total = sum(int(s.needed.sum()) for s in other)
            paper = (
                "; Berindeie's (2024) 5,240 'test' images are FER2013's val + test"
                if "fer2013" in self.dataset
                else ""
            )
            out.append(
                f"The other splits' deficits ({parts} = {total:,}{paper}) are shown for reference only and are "
                "never filled: evaluation uses real images only."
            )
        return out

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "classes": list(self.classes),
            "target": self.target,
            "train_split": self.train_split,
            "overshoot": self.overshoot,
            "splits": {
                s.split: {
                    "counts": dict(zip(self.classes, map(int, s.counts))),
                    "needed": dict(zip(self.classes, map(int, s.needed))),
                }
                for s in self.splits
            },
            "needed": self.needed,
            "generate": self.generate,
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(json.dumps(self.to_dict(), indent=2) + "\n", path)
        return path

    @classmethod
    def from_dict(cls, d: dict) -> GenerationPlan:
        classes = tuple(d["classes"])
        splits = [
            SplitDeficit(
                name,
                np.array([v["counts"][c] for c in classes], dtype=np.int64),
                np.array([v["needed"][c] for c in classes], dtype=np.int64),
            )
            for name, v in d["splits"].items()
        ]
        return cls(
            d["dataset"], classes, d["target"], d["train_split"], splits, float(d.get("overshoot", 1.0))
        )

    @classmethod
    def load(cls, path: str | Path) -> GenerationPlan:
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: plan file not found (write one with `ferlab generate plan --out`)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: not a ferlab generation plan ({type(e).__name__}: {e})") from None


def plan_generation(
    ds: FERDataset,
    target: str | int | float = "max",
    splits=None,
    train_split: str = "train",
    overshoot: float = 1.0,
) -> GenerationPlan:
    """The deficit table of ``ds``: every split (default: all but ``*_dedup``) balanced to ``target``.

    Args:
        ds: the dataset.
        target: ``'max'`` (the split's largest class), a count per class, or a ratio in (0, 1] of the
            largest class (also as CLI strings ``'5000'``, ``'0.8'``).
        splits: splits to report; the training split is always included.
        train_split: the split to generate for; must be a training split.
        overshoot: >= 1; multiplies the training deficit for :attr:`GenerationPlan.generate`.
    """
    target = parse_target(target)
    if not is_training_split(train_split):
        raise DataError(
            f"refusing to plan generation for split {train_split!r}: synthetic images may only enter a "
            "training split (evaluation uses real images only)"
        )
    if not overshoot >= 1:
        raise ConfigError(f"overshoot {overshoot} must be >= 1")
    ds.split(train_split)  # clear error if absent
    names = list(splits or [s for s in ds.splits if not s.endswith("_dedup")])
    if train_split not in names:
        names.insert(0, train_split)
    rows = []
    for name in names:
        sp = ds.split(name)
        c = sp.class_counts()
        rows.append(SplitDeficit(sp.name, c, deficit(c, target)))
    return GenerationPlan(ds.name, tuple(ds.classes), target, train_split, rows, float(overshoot))
