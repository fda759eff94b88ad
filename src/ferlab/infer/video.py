"""Videos and camera streams: frames read with OpenCV, faces followed from frame to frame (:class:`FaceTracker`)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, ImageReadError
from ..faces.geometry import box_iou
from .recognizer import FacePrediction
from .records import PredictionRecord


def _progress(iterable=None, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, file=sys.stderr, **kw)


# -- video -----------------------------------------------------------------------------------------


@dataclass
class _Track:
    id: int
    box: tuple
    probs: np.ndarray
    last: int


class FaceTracker:
    """Follows faces from frame to frame and optionally smooths their probabilities over time.

    Each face is matched to the live track whose last box overlaps it most (IoU >= ``min_iou``; best pairs
    first, one face per track); unmatched faces start new tracks and tracks unseen for more than ``max_age``
    updates end. With ``alpha`` a track's probabilities are the exponential moving average
    ``p_t = alpha * p_new + (1 - alpha) * p_(t-1)`` and its label is their argmax; ``alpha=None`` or 1 leaves
    the probabilities as they are (tracks are still assigned).
    """

    def __init__(self, alpha: float | None = None, min_iou: float = 0.3, max_age: int = 5) -> None:
        if alpha is not None and not 0 < float(alpha) <= 1:
            raise ConfigError(f"smoothing alpha must be in (0, 1], got {alpha}")
        self.alpha = None if alpha is None else float(alpha)
        self.min_iou, self.max_age = float(min_iou), int(max_age)
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._step = 0

    def update(self, faces: list[FacePrediction]) -> tuple[list[FacePrediction], list[int]]:
        """The faces of the next frame (smoothed if asked, same order) and their track ids."""
        self._step += 1
        pairs = sorted(
            (
                (box_iou(f.box, t.box), fi, ti)
                for fi, f in enumerate(faces)
                for ti, t in enumerate(self._tracks)
            ),
            reverse=True,
        )
        match: dict[int, _Track] = {}
        used = set()
        for iou, fi, ti in pairs:
            if iou < self.min_iou:
                break
            if fi not in match and ti not in used:
                match[fi] = self._tracks[ti]
                used.add(ti)
        out, ids = [], []
        for fi, f in enumerate(faces):
            classes = list(f.probs)
            p = np.array([f.probs[c] for c in classes], dtype=np.float64)
            t = match.get(fi)
            if t is None or len(t.probs) != len(p):
                t = _Track(self._next_id, f.box, p, self._step)
                self._next_id += 1
                self._tracks.append(t)
            else:
                if self.alpha is not None:
                    p = self.alpha * p + (1 - self.alpha) * t.probs
                t.box, t.probs, t.last = f.box, p, self._step
            if self.alpha is not None:
                probs = {c: float(v) for c, v in zip(classes, p)}
                f = replace(f, probs=probs, label=classes[int(p.argmax())])
            out.append(f)
            ids.append(t.id)
        self._tracks = [t for t in self._tracks if self._step - t.last <= self.max_age]
        return out, ids


def open_video(source) -> tuple[cv2.VideoCapture, str]:
    """An opened ``cv2.VideoCapture`` for a video file or a camera index, and the source's name."""
    if isinstance(source, (int, np.integer)) or (isinstance(source, str) and source.isdigit()):
        index = int(source)
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no backend-by-backend warnings
        try:
            cap = cv2.VideoCapture(index)
        finally:
            cv2.utils.logging.setLogLevel(level)
        name = f"camera:{index}"
        if not cap.isOpened():
            raise ImageReadError(f"{name}: camera could not be opened (is it connected and free?)")
        return cap, name
    from ..io import display_name

    path = Path(source)
    name = display_name(path)
    if not path.is_file():
        raise ImageReadError(f"{name}: no such file")
    cap = cv2.VideoCapture(_opencv_safe_path(path))
    if not cap.isOpened():
        raise ImageReadError(f"{name}: not a readable video (OpenCV could not open it)")
    return cap, str(path)


def _opencv_safe_path(path: Path) -> str:
    """``path`` as OpenCV can take it: names that are not valid UTF-8 (which crash OpenCV's C++ string
    conversion) are reached through a symbolic link with a plain name in a temporary folder."""
    try:
        str(path).encode("utf-8")
        return str(path)
    except UnicodeEncodeError:
        import atexit
        import shutil
        import tempfile

        d = tempfile.mkdtemp(prefix="ferlab-video-")
        atexit.register(shutil.rmtree, d, True)
        link = Path(d) / f"video{path.suffix.encode('ascii', 'ignore').decode() or '.bin'}"
        link.symlink_to(path.resolve())
        return str(link)


def predict_video(
    recognizer,
    source,
    detect: bool = True,
    every: int = 1,
    smooth: float | None = None,
    max_frames: int | None = None,
    progress: bool = False,
    keep_images: bool = False,
    chunk: int = 8,
    min_iou: float = 0.3,
) -> Iterator[PredictionRecord]:
    """One record per processed frame of a video file or camera (``source`` = an int index).

    Args:
        recognizer: a :class:`ferlab.Recognizer`.
        source: video file path, or camera index (int or digit string).
        detect: False when the frames are already face crops.
        every: process every ``every``-th frame (frame indices 0, every, 2 * every, ...).
        smooth: exponential-moving-average weight of the newest frame per face track, in (0, 1]
            (smaller = smoother); None for raw probabilities. See :class:`FaceTracker`.
        max_frames: stop after this many processed frames (None: until the video or camera ends).
        progress: show a progress bar over the frames.
        keep_images: keep each RGB frame in its record for :func:`annotate`.
        chunk: frames per classifier pass for files (cameras are processed frame by frame).
        min_iou: box overlap needed to continue a face track.

    Records carry ``frame`` (index in the source) and ``time`` (seconds: index / frame rate for files, time
    since the start for cameras).

    Raises:
        ImageReadError: the file or camera cannot be opened, or not a single frame can be decoded.
    """
    if int(every) < 1:
        raise ConfigError(f"every must be >= 1, got {every}")
    if max_frames is not None and int(max_frames) < 1:
        raise ConfigError(f"max_frames must be >= 1, got {max_frames}")
    tracker = FaceTracker(smooth, min_iou=min_iou)
    cap, name = open_video(source)
    camera = name.startswith("camera:")
    every = int(every)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 0 < fps < 1000 else 0.0
    n_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not camera else 0
    total = (n_frames + every - 1) // every if n_frames > 0 else None
    if max_frames is not None:
        total = min(total, int(max_frames)) if total else int(max_frames)
    out_fps = (fps or 30.0) / every
    chunk = 1 if camera else max(1, int(chunk))
    bar = _progress(total=total, desc=Path(name).name, unit="frame", disable=not progress, leave=False)
    t0 = time.monotonic()
    index, done = 0, 0
    try:
        while max_frames is None or done < int(max_frames):
            batch = []  # (index, time, rgb frame)
            while len(batch) < chunk and (max_frames is None or done + len(batch) < int(max_frames)):
                if index % every:
                    if not cap.grab():
                        break
                    index += 1
                    continue
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                if camera or not fps:
                    t = time.monotonic() - t0 if camera else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
                else:
                    t = index / fps
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame
                batch.append((index, t, rgb))
                index += 1
            if not batch:
                break
            for (i, t, img), faces in zip(batch, recognizer.predict_batch([b[2] for b in batch], detect)):
                faces, ids = tracker.update(faces)
                h, w = img.shape[:2]
                yield PredictionRecord(
                    name,
                    faces,
                    w,
                    h,
                    frame=i,
                    time=t,
                    tracks=ids,
                    image=img if keep_images else None,
                    fps=out_fps,
                )
                done += 1
                bar.update()
    finally:
        bar.close()
        cap.release()
    if done == 0:
        raise ImageReadError(f"{name}: no frame could be decoded")
