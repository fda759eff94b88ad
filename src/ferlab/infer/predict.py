"""Recognise expressions in photos, folders, globs, videos and camera streams; write JSON lines, CSV and pictures.

The library side of ``ferlab predict``. Every input becomes a stream of :class:`PredictionRecord` (one per
image or video frame, faces largest first); writers turn records into JSON lines, CSV rows or annotated
images/videos. Unreadable files become records with an ``error`` and never stop the stream.

Example:
    >>> from ferlab import Recognizer
    >>> from ferlab.infer.predict import JsonlWriter, PredictSummary, predict_paths
    >>> r = Recognizer("default")
    >>> summary = PredictSummary()
    >>> with JsonlWriter("faces.jsonl") as out:
    ...     for rec in predict_paths(r, ["photos/", "shots/*.jpg", "clip.mp4"], smooth=0.5):
    ...         out.write(rec)
    ...         summary.add(rec)
    >>> print(summary)      # 12 images, 250 video frames: 270 faces, 2 without a face, 1 unreadable

Video records add the frame index and its timestamp in seconds; faces are followed from frame to frame
(``track`` ids, matched by box overlap) and their probabilities can be smoothed over time with an
exponential moving average (:class:`FaceTracker`).
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import ConfigError, FerlabError, ImageReadError
from ..faces.geometry import box_iou  # noqa: F401  (re-exported for the tracker's users)
from ..io import IMAGE_EXTENSIONS
from .draw import CLASS_COLORS, annotate, class_color  # noqa: F401  (the predict API in one place)
from .recognizer import FacePrediction  # noqa: F401
from .records import PredictionRecord, PredictSummary  # noqa: F401
from .video import FaceTracker, _progress, open_video, predict_video  # noqa: F401
from .writers import AnnotationWriter, CsvWriter, JsonlWriter  # noqa: F401

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")

#: A small photo shipped with ferlab (NASA astronaut Eileen Collins, public domain, from scikit-image).
EXAMPLE_IMAGE = Path(__file__).parent.parent / "assets" / "astronaut.jpg"


def is_video(path) -> bool:
    """Whether ``path`` has a video file extension."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def expand_inputs(inputs: Iterable) -> list[Path]:
    """The files to process, in order: files as given, folders searched recursively, glob patterns expanded.

    Folders contribute their image and video files (by extension), sorted; patterns support ``**``.
    Duplicates are dropped. A missing path or a pattern that matches nothing is kept as given, so it is
    reported as unreadable instead of vanishing.
    """
    out, seen = [], set()
    for item in inputs:
        text = str(item)
        if Path(text).is_dir():
            hits = sorted(
                p
                for p in Path(text).rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS
            )
        elif _is_pattern(text) and not Path(text).exists():
            hits = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
            hits = hits or [Path(text)]
        else:
            hits = [Path(text)]
        for p in hits:
            if p not in seen:
                seen.add(p)
                out.append(p)
    return out


def predict_images(
    recognizer,
    paths: Iterable,
    detect: bool = True,
    chunk: int = 16,
    keep_images: bool = False,
) -> Iterator[PredictionRecord]:
    """One record per image file (in order); ``chunk`` images share each classifier pass."""
    from ..io import as_array

    if int(chunk) < 1:
        raise ConfigError(f"chunk must be >= 1, got {chunk}")
    paths = list(paths)
    for start in range(0, len(paths), int(chunk)):
        records, images = [], []
        for p in paths[start : start + int(chunk)]:
            try:
                img = as_array(p)
            except FerlabError as e:
                records.append(PredictionRecord(str(p), error=str(e)))
                continue
            images.append(img)
            rec = PredictionRecord(str(p), width=img.shape[1], height=img.shape[0])
            rec.image = img if keep_images else None
            records.append(rec)
        results = iter(recognizer.predict_batch(images, detect))
        for rec in records:
            if rec.ok:
                rec.faces = next(results)
            yield rec


def predict_paths(
    recognizer,
    inputs: Iterable,
    detect: bool = True,
    every: int = 1,
    smooth: float | None = None,
    max_frames: int | None = None,
    progress: bool = False,
    keep_images: bool = False,
    chunk: int = 16,
) -> Iterator[PredictionRecord]:
    """Records for image files, folders (recursive), glob patterns and video files, in input order.

    Args:
        recognizer: a :class:`ferlab.Recognizer`.
        inputs: paths and patterns (see :func:`expand_inputs`); videos are recognised by extension.
        detect: False when every image is already a face crop.
        every, smooth, max_frames: video options, see :func:`predict_video`.
        progress: show a progress bar over the files (and one per video).
        keep_images: keep each image/frame in its record (``record.image``) for :func:`annotate`.
        chunk: images per classifier pass.
    """
    paths = expand_inputs(inputs)
    bar = _progress(total=len(paths), desc="predict", unit="file", disable=not progress or len(paths) < 2)
    try:
        i = 0
        while i < len(paths):
            if is_video(paths[i]):
                try:
                    yield from predict_video(
                        recognizer,
                        paths[i],
                        detect=detect,
                        every=every,
                        smooth=smooth,
                        max_frames=max_frames,
                        progress=progress,
                        keep_images=keep_images,
                    )
                except ImageReadError as e:
                    yield PredictionRecord(str(paths[i]), error=str(e))
                bar.update()
                i += 1
                continue
            j = i
            while j < len(paths) and not is_video(paths[j]):
                j += 1
            for rec in predict_images(recognizer, paths[i:j], detect, chunk, keep_images):
                yield rec
                bar.update()
            i = j
    finally:
        bar.close()
