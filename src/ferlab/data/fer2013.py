"""FER2013 (Goodfellow et al., 2013) from the Kaggle CSV, the shared npz copy, or a folder of images.

Official splits: ``Training`` -> ``train`` (28,709), ``PublicTest`` -> ``val`` (3,589),
``PrivateTest`` -> ``test`` (3,589). Labels follow :data:`ferlab.labels.FER2013` into the 7-class
canonical order. Every split carries ``meta['row']``, the 0-based row of ``fer2013.csv``.
``test_dedup`` / ``val_dedup`` drop the test rows whose pixels are byte-identical to a Training image
(568 such rows across the two test splits in the official data).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from .. import labels as L
from ..errors import DataError
from ..io import SkipReport
from .base import FERDataset, Split

USAGES = ("Training", "PublicTest", "PrivateTest")
SPLIT_OF_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
IMAGE_SIDE = 48


def read_fer2013_csv(path: str | Path, report: SkipReport | None = None) -> FERDataset:
    """Read Kaggle's ``fer2013.csv`` (``emotion,pixels,Usage``).

    Rows whose pixel string does not hold 48x48 integers in 0..255, whose label is out of range or whose
    usage is unknown are skipped with a one-line message naming the row, and counted in ``report``.
    """
    path = Path(path)
    report = report if report is not None else SkipReport()
    imgs, labs, usage, rows = [], [], [], []
    # bytes that are not UTF-8 become U+FFFD, so their row fails the checks below and is reported, not fatal;
    # fields up to 64 MB parse (then fail the pixel count) instead of stopping the csv module
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, 1 << 26))
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            _read_rows(csv.reader(f), path, report, imgs, labs, usage, rows)
    except csv.Error as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None
    finally:
        csv.field_size_limit(old_limit)
    if not imgs:
        raise DataError(f"{path}: no valid rows ({report.summary()})")
    ds = _from_arrays(np.stack(imgs), np.array(labs), np.array(usage), np.array(rows), source=str(path))
    ds.info["skipped"] = report
    return ds


def _read_rows(reader, path, report, imgs, labs, usage, rows) -> None:
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:3]] != ["emotion", "pixels", "usage"]:
        raise DataError(f"{path}: header {header} is not 'emotion,pixels,Usage'")
    for i, rec in enumerate(reader):
        where = f"{path}:row {i} (line {i + 2})"
        if len(rec) < 3:
            report.add("bad row", f"{where}: {len(rec)} fields, expected 3")
            continue
        try:
            lab = int(rec[0])
        except ValueError:
            report.add("bad label", f"{where}: emotion {rec[0]!r} is not an integer")
            continue
        if lab not in L.FER2013:
            report.add("bad label", f"{where}: emotion {lab} out of range 0..6")
            continue
        try:
            px = np.array(rec[1].split(), dtype=np.int64)
        except ValueError:
            report.add("bad pixels", f"{where}: pixel string holds non-integers")
            continue
        if px.size != IMAGE_SIDE * IMAGE_SIDE:
            report.add("bad pixels", f"{where}: {px.size} pixel values, expected 48x48 = 2304")
            continue
        if px.min() < 0 or px.max() > 255:
            report.add("bad pixels", f"{where}: pixel values outside 0..255")
            continue
        u = rec[2].strip()
        if u not in SPLIT_OF_USAGE:
            report.add("bad usage", f"{where}: Usage {u!r} not one of {USAGES}")
            continue
        imgs.append(px.astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE))
        labs.append(lab)
        usage.append(USAGES.index(u))
        rows.append(i)


def read_fer2013_npz(path: str | Path) -> FERDataset:
    """Read the npz copy (``pixels`` [N,48,48] uint8, ``emotion``, ``usage`` 0/1/2) in CSV row order."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            pixels, emotion, usage = z["pixels"], z["emotion"], z["usage"]
    except KeyError as e:
        raise DataError(f"{path}: missing array {e}; expected pixels, emotion, usage") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable npz file ({e})") from None
    if pixels.ndim != 3 or pixels.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE) or pixels.dtype != np.uint8:
        raise DataError(f"{path}: pixels {pixels.shape} {pixels.dtype}, expected [N,48,48] uint8")
    return _from_arrays(pixels, emotion, usage, np.arange(len(pixels)), source=str(path))


def _from_arrays(pixels, emotion, usage, rows, source: str) -> FERDataset:
    classes = L.SEVEN
    labels = L.map_native(np.asarray(emotion, dtype=np.int64), L.FER2013, classes, source)
    usage = np.asarray(usage)
    splits = {}
    for u, name in enumerate(("train", "val", "test")):
        m = usage == u
        splits[name] = Split(name, pixels[m], labels[m], classes, meta={"row": np.asarray(rows)[m]})
    add_dedup_splits(splits)
    return FERDataset("fer2013", classes, splits, source=source)


def image_hashes(images: np.ndarray) -> np.ndarray:
    """A content hash per image (sha1 of its bytes) for exact-duplicate checks."""
    return np.array([hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest() for im in images])


def add_dedup_splits(splits: dict[str, Split]) -> None:
    """Add ``val_dedup``/``test_dedup``: the test splits without images byte-identical to a train image."""
    if "train" not in splits or not splits["train"].in_memory:
        return
    train_hashes = set(image_hashes(splits["train"].images))
    for name in ("val", "test"):
        if name in splits and splits[name].in_memory:
            h = image_hashes(splits[name].images)
            keep = np.array([x not in train_hashes for x in h], dtype=bool)
            splits[f"{name}_dedup"] = splits[name].subset(keep, name=f"{name}_dedup")


def read_fer2013_folder(root: str | Path, report: SkipReport | None = None) -> FERDataset:
    """The common ``train/<class>/*.png`` + ``test/<class>/*.png`` layout (e.g. Kaggle's msambare copy).

    Class folders may use any common name (``angry``, ``disgusted``, ``fearful`` ...). Without a
    ``val``/``PublicTest`` folder the dataset has only ``train`` and ``test``.
    """
    from .imagefolder import read_split_folders

    ds = read_split_folders(root, name="fer2013", classes=L.SEVEN, report=report, size=IMAGE_SIDE)
    return ds
