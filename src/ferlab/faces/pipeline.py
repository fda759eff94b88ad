"""From raw photos to model-ready face crops: detect, align, crop, convert, resize, equalise.

:class:`FacePreprocessor` does this for one image; :func:`prepare_folder` runs it over a folder of
photos and writes PNG crops (keeping expression class folders) or one HDF5 file, counting every image
that had no face, several faces or could not be read instead of stopping on it.

Example:
    >>> pre = FacePreprocessor(size=48, grayscale=True, equalize="hist")
    >>> [(face, crop)] = pre("photo.jpg")          # crop: uint8 [48, 48]
    >>> prepare_folder("raw/", "faces/", size=48).summary()
    '120 images -> 115 face crops; 3 with no face, 1 unreadable, 2 with several faces (kept the largest)'
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .. import labels as L
from ..errors import ConfigError, DataError, FerlabError
from ..io import SkipReport, as_array, list_images, temp_path, write_atomic
from .crop import CROP_RULE_FILE, PREPARE_RULE, CropRule, FaceCropper
from .detect import FaceDetector, create_detector
from .geometry import Face, resize
from .photometric import clahe, equalize_hist

EQUALIZERS = {None: None, "none": None, "hist": equalize_hist, "clahe": clahe}
KEEP_MODES = ("largest", "all", "single")
FORMATS = ("folder", "hdf5")
#: Failures on one file that are counted and skipped (decoder limits, OpenCV errors, odd sizes).
_FILE_FAILURES = (cv2.error, Image.DecompressionBombError, MemoryError, OSError, RuntimeError, ValueError)


class FacePreprocessor:
    """Detect faces and turn each into a normalised crop: a :class:`~ferlab.faces.crop.FaceCropper` (the crop
    rule) followed by conversion (gray/RGB), resizing and optional equalisation.

    Args:
        detector: a detector name (``'haar'``, ``'mtcnn'``, ``'mediapipe'``) or a :class:`FaceDetector`.
        margin: fraction of the face box added on each side before cropping.
        size: output side (int) or ``(height, width)``; None keeps the crop's own size.
        grayscale: return ``[H, W]`` crops instead of RGB ``[H, W, 3]``.
        align: rotate so the eyes are horizontal when the detector gives eye landmarks (Haar gives none).
        equalize: None, ``'hist'`` (global histogram equalisation) or ``'clahe'``, applied after resizing.
        square: make crops square around the face centre.
        detector_options: keyword options for :func:`create_detector` when ``detector`` is a name.
    """

    def __init__(
        self,
        detector: str | FaceDetector = PREPARE_RULE.detector,
        margin: float = PREPARE_RULE.margin,
        size: int | tuple[int, int] | None = 48,
        grayscale: bool = True,
        align: bool = PREPARE_RULE.align,
        equalize: str | None = None,
        square: bool = PREPARE_RULE.square,
        detector_options: dict | None = None,
    ) -> None:
        if equalize not in EQUALIZERS:
            raise ConfigError(f"equalize {equalize!r} is not valid; valid: None, 'hist', 'clahe'")
        det = (
            detector if hasattr(detector, "detect") else create_detector(detector, **(detector_options or {}))
        )
        name = (
            detector if isinstance(detector, str) else getattr(det, "name", type(det).__name__)
        )  # options kept
        rule = CropRule(name, float(margin), bool(align), bool(square))
        self.cropper = FaceCropper(rule, det)
        self.size = size
        self.grayscale = bool(grayscale)
        self.equalize = equalize

    @property
    def detector(self):
        """The face detector; setting another one records its name in :attr:`rule`."""
        return self.cropper.detector

    @detector.setter
    def detector(self, det) -> None:
        self.cropper = FaceCropper(self.rule.replace(detector=getattr(det, "name", type(det).__name__)), det)

    @property
    def rule(self) -> CropRule:
        """The crop rule (recorded next to prepared crops, and from there in a trained model's spec)."""
        return self.cropper.rule

    def _set_rule(self, **change) -> None:
        self.cropper.rule = self.rule.replace(**change)

    margin = property(lambda self: self.rule.margin, lambda self, v: self._set_rule(margin=float(v)))
    align = property(lambda self: self.rule.align, lambda self, v: self._set_rule(align=bool(v)))
    square = property(lambda self: self.rule.square, lambda self, v: self._set_rule(square=bool(v)))

    def crop(self, img: np.ndarray, face: Face) -> np.ndarray:
        """The normalised crop of one known face in ``img`` (uint8 gray or RGB)."""
        out = as_array(self.cropper.crop(img, face), grayscale=self.grayscale)
        if self.size is not None:
            out = resize(out, self.size)
        eq = EQUALIZERS[self.equalize]
        return eq(out) if eq is not None else out

    def __call__(self, img) -> list[tuple[Face, np.ndarray]]:
        """``(face, crop)`` for every face in ``img`` (array, PIL image or path), largest face first."""
        img = as_array(img)
        return [(f, self.crop(img, f)) for f in self.detector.detect(img)]

    def largest(self, img) -> tuple[Face, np.ndarray] | None:
        """``(face, crop)`` of the largest face, or None when there is no face."""
        img = as_array(img)
        faces = self.detector.detect(img)
        return (faces[0], self.crop(img, faces[0])) if faces else None

    def __repr__(self) -> str:
        return (
            f"FacePreprocessor(detector={self.detector!r}, margin={self.margin}, size={self.size}, "
            f"grayscale={self.grayscale}, align={self.align}, equalize={self.equalize!r})"
        )


@dataclass
class PrepareReport:
    """What :func:`prepare_folder` did.

    Attributes:
        output: the folder or HDF5 file written.
        images: image files found.
        crops: face crops written.
        multiple_faces: images with more than one face (kept, skipped or all written, per ``keep``).
        skips: images that gave no crop, by reason (``'no face'``, ``'unreadable'``, ``'several faces'``,
            ``'no class folder'``, ``'failed'``), with example messages.
        classes: the class tuple when the source had expression folders, else None.
        class_counts: crops written per class name.
        keep: the ``keep`` mode used.
    """

    output: Path
    images: int = 0
    crops: int = 0
    multiple_faces: int = 0
    skips: SkipReport = field(default_factory=SkipReport)
    classes: tuple[str, ...] | None = None
    class_counts: Counter = field(default_factory=Counter)
    keep: str = "largest"

    @property
    def no_face(self) -> int:
        return self.skips.counts["no face"]

    @property
    def unreadable(self) -> int:
        return self.skips.counts["unreadable"]

    def summary(self) -> str:
        """One line, e.g. ``'5 images -> 1 face crops in out; 1 with no face, 3 unreadable'``."""
        parts = []
        for reason, n in self.skips.counts.most_common():
            if reason == "several faces":
                parts.append(f"{n} with several faces (skipped)")
            else:
                parts.append(f"{n} {'with no face' if reason == 'no face' else reason}")
        if self.multiple_faces and "several faces" not in self.skips.counts:
            parts.append(
                f"{self.multiple_faces} with several faces (kept {'all' if self.keep == 'all' else 'the largest'})"
            )
        text = f"{self.images} images -> {self.crops} face crops in {self.output}"
        return text + (f"; {', '.join(parts)}" if parts else "")


def _class_of(rel: Path) -> tuple[str | None, int]:
    """The innermost parent folder of ``rel`` named like an expression: (canonical name, part index)."""
    for i in range(len(rel.parts) - 2, -1, -1):
        try:
            return L.canonical_name(rel.parts[i]), i
        except DataError:
            continue
    return None, -1


class _H5Writer:
    """Appends crops to resizable HDF5 datasets, a chunk at a time."""

    def __init__(self, path: Path, shape: tuple[int, ...], labelled: bool, chunk: int = 256) -> None:

        import h5py

        # written under a temporary name and renamed by close(): an existing file stays whole until then
        self.path, self.tmp = path, temp_path(path)
        self.f = h5py.File(self.tmp, "w")
        self.shape, self.labelled, self.chunk = shape, labelled, chunk
        self.buf: list[tuple[np.ndarray, int, str, Face]] = []

        def make(name, inner, dtype, **kw):
            self.f.create_dataset(name, (0, *inner), maxshape=(None, *inner), dtype=dtype, chunks=True, **kw)

        make("images", shape, np.uint8, compression="gzip", compression_opts=4)
        if labelled:
            make("labels", (), np.int64)
        make("paths", (), h5py.string_dtype())
        make("boxes", (4,), np.float32)
        make("scores", (), np.float32)

    def add(self, crop: np.ndarray, label: int, path: str, face: Face) -> None:
        if crop.shape != self.shape:
            raise ConfigError(f"crop of shape {crop.shape} differs from {self.shape}")
        self.buf.append((crop, label, path, face))
        if len(self.buf) >= self.chunk:
            self.flush()

    def _append(self, name: str, arr) -> None:
        ds = self.f[name]
        ds.resize(ds.shape[0] + len(arr), axis=0)
        ds[-len(arr) :] = arr

    def flush(self) -> None:
        if not self.buf:
            return
        crops, labels, paths, faces = zip(*self.buf)
        self._append("images", np.stack(crops))
        if self.labelled:
            self._append("labels", np.asarray(labels, dtype=np.int64))
        self._append("paths", list(paths))
        self._append("boxes", np.asarray([f.box for f in faces], dtype=np.float32))
        self._append("scores", np.asarray([f.score for f in faces], dtype=np.float32))
        self.buf = []

    def close(self, attrs: dict, keep: bool = True) -> None:
        import os

        try:
            self.flush()
            for k, v in attrs.items():
                self.f.attrs[k] = v
        finally:
            self.f.close()
            if keep:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)


def _unique_png(folder: Path, name: str, used: set[Path], ext: str) -> Path:
    out = folder / f"{name}.png"
    if out in used:  # e.g. a.jpg and a.png side by side
        out = folder / f"{name}_{ext.lstrip('.').lower()}.png"
    k = 1
    while out in used:
        out = folder / f"{name}_{k}.png"
        k += 1
    used.add(out)
    return out


def _crop_shape(pre: FacePreprocessor) -> tuple[int, ...]:
    h, w = (pre.size, pre.size) if isinstance(pre.size, (int, np.integer)) else tuple(pre.size)
    return (int(h), int(w)) if pre.grayscale else (int(h), int(w), 3)


def prepare_folder(
    src: str | Path,
    out: str | Path,
    preprocessor: FacePreprocessor | None = None,
    *,
    detector: str | FaceDetector = "haar",
    margin: float = 0.2,
    size: int | tuple[int, int] | None = 48,
    grayscale: bool = True,
    align: bool = True,
    equalize: str | None = None,
    format: str = "folder",
    keep: str = "largest",
    progress: bool = True,
    overwrite: bool = False,
) -> PrepareReport:
    """Detect, crop and resize the faces of every photo under ``src`` (recursively).

    When images sit in folders named like expressions (``happy/``, ``Anger/``, ``train/sad/`` ...; see
    :func:`ferlab.labels.canonical_name`) the class is kept: ``out/<class>/<name>.png`` (other folder levels
    such as ``train/`` are kept too), or an integer ``labels`` dataset in HDF5. Otherwise crops go to
    ``out/<relative folder>/<name>.png``. Images that cannot be read or have no face are skipped and
    counted; one bad file never stops the run.

    Args:
        src: folder of raw photos.
        out: output folder (``format='folder'``), or HDF5 file (``format='hdf5'``; a path without an
            ``.h5``/``.hdf5`` suffix is taken as a folder and ``faces.h5`` is written inside it).
        preprocessor: a ready :class:`FacePreprocessor`; otherwise one is built from the options below.
        detector, margin, size, grayscale, align, equalize: see :class:`FacePreprocessor`.
        format: ``'folder'`` (PNG files) or ``'hdf5'`` (datasets ``images`` uint8 ``[N,H,W(,3)]``, ``labels``
            int64 into ``attrs['classes']`` when classes are known, ``paths`` relative to ``src``, ``boxes``
            and ``scores``).
        keep: with several faces in one image, ``'largest'`` keeps the largest, ``'all'`` writes each
            (``<name>_0.png``, ``<name>_1.png`` ...), ``'single'`` skips the image.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`PrepareReport`; ``report.summary()`` is a one-line account.
    """
    from tqdm.auto import tqdm

    if format not in FORMATS:
        raise ConfigError(f"format {format!r} is not valid; valid: {', '.join(FORMATS)}")
    if keep not in KEEP_MODES:
        raise ConfigError(f"keep {keep!r} is not valid; valid: {', '.join(KEEP_MODES)}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise DataError(f"{src}: not a folder")
    pre = preprocessor or FacePreprocessor(detector, margin, size, grayscale, align, equalize)
    if format == "hdf5" and pre.size is None:
        raise ConfigError("HDF5 output needs a fixed crop size; pass size=")

    out_res = out.resolve()
    files = [p for p in list_images(src) if out_res not in p.resolve().parents]
    if not files:
        raise DataError(f"{src}: no image files found")
    rels = [p.relative_to(src) for p in files]
    found = [_class_of(r) for r in rels]
    labelled = any(c is not None for c, _ in found)
    names = {c for c, _ in found if c is not None}
    classes = (L.EIGHT if "contempt" in names else L.SEVEN) if labelled else None

    if format == "hdf5":
        h5_path = out if out.suffix.lower() in (".h5", ".hdf5") else out / "faces.h5"
        if h5_path.exists() and not overwrite:
            raise ConfigError(f"{h5_path} exists; pass overwrite=True (--overwrite) to replace it")
        h5_path.parent.mkdir(parents=True, exist_ok=True)
        writer = _H5Writer(h5_path, _crop_shape(pre), labelled)
        report = PrepareReport(output=h5_path, classes=classes, keep=keep)
    else:
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise ConfigError(
                f"{out} is not empty; pass overwrite=True (--overwrite) to add to it (same names are replaced)"
            )
        out.mkdir(parents=True, exist_ok=True)
        writer = None
        report = PrepareReport(output=out, classes=classes, keep=keep)
    report.images = len(files)
    used: set[Path] = set()

    try:
        for path, rel, (cls, part) in tqdm(
            list(zip(files, rels, found)), desc="faces", unit="img", disable=not progress
        ):
            if labelled and cls is None:
                report.skips.add("no class folder", f"{path}: not under an expression-named folder")
                continue
            try:
                img = as_array(path)
                faces = pre.detector.detect(img)
                if len(faces) > 1 and keep == "single":
                    crops = []
                else:
                    crops = [pre.crop(img, f) for f in (faces if keep == "all" else faces[:1])]
            except FerlabError as e:
                report.skips.add("unreadable", str(e))
                continue
            except _FILE_FAILURES as e:  # one odd file must not end the run
                report.skips.add("failed", f"{path}: {type(e).__name__}: {e}")
                continue
            if not faces:
                report.skips.add("no face", f"{path}: no face found")
                continue
            if len(faces) > 1:
                report.multiple_faces += 1
                if keep == "single":
                    report.skips.add("several faces", f"{path}: {len(faces)} faces found")
                    continue
            parts = list(rel.parts)
            if cls is not None:
                parts[part] = cls
            folder, stem = out.joinpath(*parts[:-1]), Path(parts[-1]).stem
            label = classes.index(cls) if classes and cls else -1
            for k, (face, crop) in enumerate(zip(faces, crops)):
                if writer is not None:
                    writer.add(crop, label, rel.as_posix() + (f"#{k}" if keep == "all" else ""), face)
                else:
                    dest = _unique_png(folder, f"{stem}_{k}" if keep == "all" else stem, used, rel.suffix)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(crop).save(dest)
                report.crops += 1
                if cls is not None:
                    report.class_counts[cls] += 1
    except BaseException:
        if writer is not None:
            writer.close({}, keep=False)  # an interrupted run leaves any earlier file as it was
        raise
    if writer is None:  # the crop rule beside the crops: a model trained on them carries it to inference
        write_atomic(json.dumps(pre.rule.to_dict()) + "\n", out / CROP_RULE_FILE)
    if writer is not None:
        attrs = {"detector": pre.detector.name, "margin": pre.margin, "grayscale": pre.grayscale,
                 "crop": json.dumps(pre.rule.to_dict())}  # fmt: skip
        if classes:
            attrs["classes"] = list(classes)
        writer.close(attrs)
    return report
