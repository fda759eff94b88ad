"""Generated images -> dataset-format face crops, with every rejection counted (Berindeie 2024 (FER ensembles), section 6.2).

Berindeie's (2024) steps: load OpenCV's face detector, convert to grayscale, crop to the face, resize to 48x48.
ferlab adds the checks the paper describes as problems: images that are blank or near-black (what the
safety checker returns for flagged outputs), with no face (scenery, body parts, non-close-ups) or with
several faces are rejected, and each reason is counted.

Example:
    >>> faces, report = postprocess_generated("gen/", size=48)
    >>> report.summary()
    '120 generated images -> 97 accepted; rejected: 15 no face, 5 several faces, 3 blank'
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import FerlabError
from ..faces.detect import FaceDetector
from ..faces.pipeline import FacePreprocessor
from ..io import as_array, read_image, write_atomic
from .backend import read_manifest

REASONS = ("unreadable", "blank", "no face", "several faces")


def is_blank(img, dark_level: float = 16.0, min_std: float = 2.0) -> bool:
    """True for near-black images (99th percentile of gray below ``dark_level``) and flat ones (std below
    ``min_std``): the safety checker's black squares and failed generations."""
    gray = as_array(img, grayscale=True).astype(np.float32)
    return bool(np.percentile(gray, 99) < dark_level or gray.std() < min_std)


class FaceFilter:
    """Accept an image with exactly one face and return its crop in the dataset's format.

    Args:
        size: crop side or ``(height, width)``: the dataset's image size (48 for FER2013).
        grayscale: gray crops (FER2013) or RGB.
        detector: detector name or instance (Berindeie 2024 (FER ensembles): OpenCV's Haar cascade).
        margin: fraction of the face box added on each side.
        min_face: smallest face side in pixels of the generated image; smaller detections are ignored.
        dark_level, min_std: see :func:`is_blank`.
    """

    def __init__(
        self,
        size: int | tuple[int, int] = 48,
        grayscale: bool = True,
        detector: str | FaceDetector = "haar",
        margin: float = 0.2,
        min_face: int = 40,
        dark_level: float = 16.0,
        min_std: float = 2.0,
    ) -> None:
        opts = {"min_size": min_face} if isinstance(detector, str) else None
        self.pre = FacePreprocessor(detector, margin, size, grayscale, align=True, detector_options=opts)
        self.dark_level, self.min_std = dark_level, min_std

    def __call__(self, img) -> tuple[np.ndarray | None, str | None, tuple | None]:
        """``(crop, None, box)`` for an accepted image, ``(None, reason, None)`` for a rejected one."""
        img = as_array(img)
        if is_blank(img, self.dark_level, self.min_std):
            return None, "blank", None
        faces = self.pre.detector.detect(img)
        if not faces:
            return None, "no face", None
        if len(faces) > 1:
            return None, "several faces", None
        box = tuple(round(float(v), 1) for v in faces[0].box)
        return self.pre.crop(img, faces[0]), None, box


@dataclass
class PostprocessReport:
    """Counts of accepted and rejected generated images (by reason), with per-image decisions."""

    total: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    accepted_per_class: Counter = field(default_factory=Counter)
    decisions: list[dict] = field(default_factory=list)

    def summary(self) -> str:
        parts = ", ".join(f"{self.rejected[r]} {r}" for r in REASONS if self.rejected[r])
        return f"{self.total} generated images -> {self.accepted} accepted" + (
            f"; rejected: {parts}" if parts else ""
        )

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "accepted": self.accepted,
            "rejected": {r: self.rejected[r] for r in REASONS},
            "accepted_per_class": dict(self.accepted_per_class),
        }


@dataclass
class SyntheticFaces:
    """Accepted crops: images ``[N, H, W]`` (or RGB), their emotions and provenance records."""

    images: np.ndarray
    emotions: list[str]
    records: list[dict]

    def __len__(self) -> int:
        return len(self.emotions)


def postprocess_generated(
    gen_dir: str | Path,
    size: int | tuple[int, int] = 48,
    grayscale: bool = True,
    face_filter: FaceFilter | None = None,
    faces_out: str | Path | None = None,
    progress: bool = True,
    **filter_options,
) -> tuple[SyntheticFaces, PostprocessReport]:
    """Post-process every image of a ``ferlab generate images`` folder, in (emotion, index) order.

    Args:
        gen_dir: the generation folder (``manifest.jsonl`` + ``images/``).
        size, grayscale: the dataset's format.
        face_filter: a ready :class:`FaceFilter` (else built from ``size``, ``grayscale`` and
            ``filter_options``).
        faces_out: also write accepted crops to ``faces_out/<emotion>/<name>.png`` and every decision to
            ``faces_out/decisions.jsonl``, for inspection.
        progress: tqdm progress bar.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    gen_dir = Path(gen_dir)
    records = sorted(read_manifest(gen_dir), key=lambda r: (str(r.get("emotion")), int(r.get("index", 0))))
    filt = face_filter or FaceFilter(size, grayscale, **filter_options)
    report = PostprocessReport(total=len(records))
    crops, emotions, kept = [], [], []
    for rec in tqdm(records, desc="faces", unit="img", disable=not progress):
        path = gen_dir / "images" / str(rec.get("file"))
        try:
            crop, reason, box = filt(read_image(path))
        except FerlabError as e:
            crop, reason, box = None, "unreadable", None
            rec = {**rec, "error": str(e)}
        decision = {"file": rec.get("file"), "emotion": rec.get("emotion"), "status": reason or "accepted"}
        report.decisions.append(decision)
        if crop is None:
            report.rejected[reason] += 1
            continue
        report.accepted += 1
        report.accepted_per_class[rec["emotion"]] += 1
        crops.append(crop)
        emotions.append(rec["emotion"])
        kept.append({**rec, "face_box": box})
    if crops:
        images = np.stack(crops)
    else:
        h, w = (size, size) if isinstance(size, int) else size
        images = np.zeros((0, h, w) if grayscale else (0, h, w, 3), np.uint8)
    if faces_out is not None:
        faces_out = Path(faces_out)
        for img, rec in zip(images, kept):
            dest = faces_out / rec["file"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(dest)
        faces_out.mkdir(parents=True, exist_ok=True)
        write_atomic("".join(json.dumps(d) + "\n" for d in report.decisions), faces_out / "decisions.jsonl")
    return SyntheticFaces(images, emotions, kept), report
