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

import csv
import glob
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, FerlabError, ImageReadError
from ..faces.geometry import box_iou
from ..io import IMAGE_EXTENSIONS
from .recognizer import FacePrediction

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")

#: A small photo shipped with ferlab (NASA astronaut Eileen Collins, public domain, from scikit-image).
EXAMPLE_IMAGE = Path(__file__).parent.parent / "assets" / "astronaut.jpg"

#: Drawing colours (RGB) of the canonical classes; other class names get a colour from :data:`_SPARE`.
CLASS_COLORS = {
    "neutral": (190, 190, 190),
    "happy": (255, 205, 0),
    "sad": (70, 130, 255),
    "surprise": (255, 140, 0),
    "fear": (175, 90, 255),
    "disgust": (60, 185, 75),
    "angry": (235, 45, 45),
    "contempt": (0, 200, 200),
}
_SPARE = ((240, 50, 230), (128, 128, 0), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128))


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


@dataclass
class PredictionRecord:
    """The faces found in one image or video frame.

    Attributes:
        source: the file path (``camera:N`` for a camera).
        faces: every face, largest first ([] when there is none).
        width, height: size of the image in pixels.
        frame: index of the frame in the video (None for photos).
        time: timestamp of the frame in seconds (None for photos).
        tracks: per face, the id of the face track it belongs to (videos only).
        error: why the file could not be read (then ``faces`` is empty and means nothing).
        image: the RGB image, kept only when asked (for annotation).
        fps: frame rate of the recorded frames (source rate / stride), for writing annotated videos.
    """

    source: str
    faces: list[FacePrediction] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    frame: int | None = None
    time: float | None = None
    tracks: list[int] | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    fps: float | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def face_dicts(self) -> list[dict]:
        out = []
        for i, f in enumerate(self.faces):
            d = f.to_dict()
            if self.tracks is not None:
                d["track"] = self.tracks[i]
            out.append(d)
        return out

    def to_dict(self) -> dict:
        """JSON-ready: ``source``, (``frame``, ``time``,) ``width``, ``height``, ``faces`` - or ``source`` and ``error``."""
        if self.error is not None:
            return {"source": self.source, "error": self.error}
        d = {"source": self.source}
        if self.frame is not None:
            d["frame"] = self.frame
            d["time"] = None if self.time is None else round(self.time, 4)
        d.update(width=self.width, height=self.height, faces=self.face_dicts())
        return d


@dataclass
class PredictSummary:
    """Counts over a prediction run: images and frames read, faces, images without a face, unreadable files."""

    images: int = 0
    frames: int = 0
    faces: int = 0
    no_face: int = 0
    unreadable: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, record: PredictionRecord) -> None:
        if not record.ok:
            self.unreadable += 1
            self.errors.append(record.error)
            return
        if record.frame is None:
            self.images += 1
        else:
            self.frames += 1
        self.faces += len(record.faces)
        self.no_face += not record.faces

    @property
    def read(self) -> int:
        """Images plus video frames that could be read."""
        return self.images + self.frames

    def __str__(self) -> str:
        what = f"{self.images} image{'s' * (self.images != 1)}"
        if self.frames:
            what += f", {self.frames} video frame{'s' * (self.frames != 1)}"
        return f"{what}: {self.faces} face{'s' * (self.faces != 1)}, {self.no_face} without a face, {self.unreadable} unreadable"


# -- classification --------------------------------------------------------------------------------


def classify_images(recognizer, images: list[np.ndarray], detect: bool = True) -> list[list[FacePrediction]]:
    """The faces of several images, their crops classified together in batches of ``recognizer.batch_size``.

    Gives the same faces as ``[recognizer.predict(im) for im in images]``. With ``detect=False`` each image is
    one face crop (box = the whole image, score None), as in :meth:`~ferlab.Recognizer.predict_faces`.
    """
    from ..faces.geometry import crop_face

    crops, owner, boxes, scores = [], [], [], []
    for i, img in enumerate(images):
        if detect:
            for f in recognizer.detector.detect(img):
                crops.append(crop_face(img, f.box, recognizer.margin, square=True))
                owner.append(i)
                boxes.append(f.box)
                scores.append(f.score)
        else:
            crops.append(img)
            owner.append(i)
            boxes.append((0.0, 0.0, float(img.shape[1]), float(img.shape[0])))
            scores.append(None)
    out: list[list[FacePrediction]] = [[] for _ in images]
    if not crops:
        return out
    classes = recognizer.classes
    for p, i, box, score in zip(recognizer.predict_proba(crops), owner, boxes, scores):
        probs = {c: float(v) for c, v in zip(classes, p)}
        out[i].append(FacePrediction(tuple(float(v) for v in box), classes[int(p.argmax())], probs, score))
    return out


def _progress(iterable=None, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, file=sys.stderr, **kw)


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
        results = iter(classify_images(recognizer, images, detect))
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
            for (i, t, img), faces in zip(batch, classify_images(recognizer, [b[2] for b in batch], detect)):
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


# -- drawing ---------------------------------------------------------------------------------------


def class_color(name: str, classes=()) -> tuple[int, int, int]:
    """The RGB colour of a class in drawings."""
    if name in CLASS_COLORS:
        return CLASS_COLORS[name]
    extra = [c for c in classes if c not in CLASS_COLORS]
    i = extra.index(name) if name in extra else sum(map(ord, name))
    return _SPARE[i % len(_SPARE)]


def _text_color(rgb) -> tuple[int, int, int]:
    return (0, 0, 0) if 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 140 else (255, 255, 255)


def _place_panel(box, pw: int, ph: int, w: int, h: int, gap: int, placed) -> tuple[int, int]:
    """Top-left corner of a ``pw`` x ``ph`` legend beside ``box``: right, else left, else over the image,
    at the box's top or lower down, avoiding legends already ``placed`` when possible."""
    x1, y1, x2, _ = box
    xs = [x for x in (x2 + gap, x1 - gap - pw) if 0 <= x <= w - pw] or [min(max(x2 + gap, 0), max(w - pw, 0))]
    y0 = min(max(y1, 0), max(h - ph, 0))
    ys = {y0} | {q[3] + gap for q in placed} | {q[1] - gap - ph for q in placed}
    ys = sorted((y for y in ys if 0 <= y <= h - ph), key=lambda y: abs(y - y0))
    for x in xs:
        for y in ys:
            if not any(x < q[2] and q[0] < x + pw and y < q[3] and q[1] < y + ph for q in placed):
                return x, y
    return xs[0], y0


def annotate(
    image, faces: list[FacePrediction], tracks: list[int] | None = None, min_side: int = 480
) -> np.ndarray:
    """A copy of ``image`` with, per face, its box, its label and a bar chart of every class probability.

    The chart is a legend box listing the classes with a horizontal bar and the percentage each; the
    predicted class is highlighted. With one face it stands beside the face (right of it when there is room,
    else left) as long as it stays clear of the face; otherwise, and always with several faces, the legends
    go into a column added to the right of the picture, each numbered like its face's tag (``1 happy 91%``),
    so no legend ever covers a face or another legend. Line widths and text scale with the image, and images
    whose longer side is below ``min_side`` pixels are enlarged first so small crops stay readable (boxes are
    scaled along).

    Args:
        image: uint8 RGB ``[H, W, 3]`` or grayscale ``[H, W]`` array (or a path / PIL image).
        faces: the faces, e.g. from :meth:`ferlab.Recognizer.predict`.
        tracks: optional track id per face, shown as ``#id``.
        min_side: enlarge smaller images to this longer side (0 never enlarges).

    Returns:
        uint8 RGB ``[H', W', 3]``.
    """
    from ..io import as_array

    img = as_array(image, grayscale=False).copy()
    h, w = img.shape[:2]
    factor = 1.0
    if min_side and max(h, w) < min_side:
        factor = min_side / max(h, w)
        img = cv2.resize(img, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_CUBIC)
        h, w = img.shape[:2]
    s = min(max(max(h, w) / 600, 0.7), 4.0)
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs, th = 0.5 * s, max(1, round(1.2 * s))
    line = max(2, round(2 * s))
    pad = max(3, round(5 * s))
    text_h = cv2.getTextSize("Ag", font, fs, th)[0][1]
    base0 = cv2.getTextSize("Ag", font, fs, th)[1]
    gap = max(4, round(6 * s))
    boxes = [tuple(round(v * factor) for v in f.box) for f in faces]
    side_column = False
    if faces:  # legend size (the same for every face of one model)
        classes0 = list(faces[0].probs)
        name_w0 = max(cv2.getTextSize(c, font, fs, th)[0][0] for c in classes0)
        pw0 = name_w0 + round(110 * s) + cv2.getTextSize("100%", font, fs, th)[0][0] + 4 * pad
        ph0 = (text_h + base0 + pad) * len(classes0) + pad + text_h + base0 + pad
        if len(faces) > 1:
            side_column = True
        else:
            px, py = _place_panel(boxes[0], pw0, ph0, w, h, gap, [])
            x1, y1, x2, y2 = boxes[0]
            side_column = px < x2 and x1 < px + pw0 and py < y2 and y1 < py + ph0  # it would cover the face
        if side_column:
            # a wide, low picture: legends in rows under it; else in columns beside it
            below = ph0 + 2 * gap > h
            if below:
                per_row = max(1, (w - gap) // (pw0 + gap))
                nrow = -(-len(faces) // per_row)
                canvas = np.full((h + nrow * (ph0 + gap) + gap, max(w, pw0 + 2 * gap), 3), 30, np.uint8)
            else:
                per_col = max(1, (h - gap) // (ph0 + gap))
                ncol = -(-len(faces) // per_col)
                canvas = np.full((h, w + ncol * (pw0 + gap) + gap, 3), 30, np.uint8)
            canvas[:h, :w] = img
            img = canvas
    placed: list[tuple[int, int, int, int]] = []  # legend boxes drawn so far
    for k, f in enumerate(faces):
        x1, y1, x2, y2 = boxes[k]
        classes = list(f.probs)
        color = class_color(f.label, classes)
        cv2.rectangle(img, (x1, y1), (x2, y2), color, line, cv2.LINE_AA)
        # title tag above the box (inside it when the box touches the top)
        tag = f"{f.label} {100 * f.confidence:.0f}%"
        if tracks is not None:
            tag = f"#{tracks[k]} {tag}"
        if side_column:
            tag = f"{k + 1} {tag}"
        (tw, _), base = cv2.getTextSize(tag, font, fs, th)
        tag_h = text_h + base + 2 * pad
        ty = y1 - tag_h if y1 - tag_h >= 0 else y1
        tx = min(max(x1, 0), max(w - tw - 2 * pad, 0))
        cv2.rectangle(img, (tx, ty), (tx + tw + 2 * pad, ty + tag_h), color, -1)
        cv2.putText(img, tag, (tx + pad, ty + pad + text_h), font, fs, _text_color(color), th, cv2.LINE_AA)
        # legend: one row per class, name | bar | percent
        name_w = max(cv2.getTextSize(c, font, fs, th)[0][0] for c in classes)
        pct_w = cv2.getTextSize("100%", font, fs, th)[0][0]
        bar_w = round(110 * s)
        row = text_h + base + pad
        pw = name_w + bar_w + pct_w + 4 * pad
        ph = row * len(classes) + pad
        head = 0
        if side_column:
            head = row
            ph += head
            if below:
                per_row = max(1, (w - gap) // (pw + gap))
                px = gap + (k % per_row) * (pw + gap)
                py = h + gap + (k // per_row) * (ph + gap)
            else:
                per_col = max(1, (h - gap) // (ph + gap))
                px = w + gap + (k // per_col) * (pw + gap)
                py = gap + (k % per_col) * (ph + gap)
        else:
            px, py = _place_panel((x1, y1, x2, y2), pw, ph, w, h, gap, placed)
        placed.append((px, py, px + pw, py + ph))
        px2, py2 = min(px + pw, img.shape[1]), min(py + ph, img.shape[0])
        roi = img[py:py2, px:px2]
        roi[:] = (roi.astype(np.float32) * 0.3 + np.array([20, 20, 20]) * 0.7).astype(np.uint8)
        cv2.rectangle(img, (px, py), (px2 - 1, py2 - 1), color, max(1, line // 2))
        if head:
            cv2.putText(img, tag, (px + pad, py + pad + text_h), font, fs, (255, 255, 255), th, cv2.LINE_AA)
        for r, c in enumerate(classes):
            top = py + pad + head + r * row
            y_text = top + text_h
            best = c == f.label
            ink = (255, 255, 255) if best else (185, 185, 185)
            if best:  # frame the predicted class's row
                cv2.rectangle(img, (px + 1, top - pad // 2), (px2 - 2, top + row - pad // 2), color, 1)
            cv2.putText(img, c, (px + pad, y_text), font, fs, ink, th, cv2.LINE_AA)
            bx = px + 2 * pad + name_w
            fill = round(bar_w * min(max(f.probs[c], 0.0), 1.0))
            cc = class_color(c, classes)
            cv2.rectangle(img, (bx, top), (bx + bar_w, top + text_h), (70, 70, 70), -1)
            if fill > 0:
                cv2.rectangle(img, (bx, top), (bx + fill, top + text_h), cc, -1)
            cv2.putText(
                img,
                f"{100 * f.probs[c]:.0f}%",
                (bx + bar_w + pad, y_text),
                font,
                fs,
                ink,
                th,
                cv2.LINE_AA,
            )
    return img


# -- writers ---------------------------------------------------------------------------------------


class _Writer:
    def write(self, record: PredictionRecord):
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JsonlWriter(_Writer):
    """One JSON object per record and line (:meth:`PredictionRecord.to_dict`), to a file path or an open text file."""

    def __init__(self, file) -> None:
        if hasattr(file, "write"):
            self._f, self._own = file, False
        else:
            Path(file).parent.mkdir(parents=True, exist_ok=True)
            # names that are not valid UTF-8 are written escaped (\\udcNN), never an error
            self._f, self._own = open(file, "w", encoding="utf-8", errors="backslashreplace"), True  # noqa: SIM115

    def write(self, record: PredictionRecord) -> None:
        self._f.write(json.dumps(record.to_dict()) + "\n")
        self._f.flush()

    def close(self) -> None:
        if self._own:
            self._f.close()


class CsvWriter(_Writer):
    """One CSV row per face (one row with empty face columns for an image without a face or unreadable).

    Columns: ``source, frame, time, face, track, x1, y1, x2, y2, label, confidence, score``, one
    probability column per class (named after the class), then ``error``.
    """

    def __init__(self, path, classes) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.classes = tuple(classes)
        self._f = open(path, "w", newline="", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
        self._w = csv.writer(self._f)
        head = ["source", "frame", "time", "face", "track", "x1", "y1", "x2", "y2", "label", "confidence"]
        self._w.writerow([*head, "score", *self.classes, "error"])

    def write(self, record: PredictionRecord) -> None:
        d = record.to_dict()
        lead = [record.source, d.get("frame", ""), d.get("time", "")]
        empty = [""] * (9 + len(self.classes))
        if not record.ok or not record.faces:
            self._w.writerow([*lead, *empty, record.error or ""])
        for i, f in enumerate(record.face_dicts()):
            score = "" if f["score"] is None else f["score"]
            probs = [f["probs"].get(c, "") for c in self.classes]
            self._w.writerow(
                [*lead, i, f.get("track", ""), *f["box"], f["label"], f["confidence"], score, *probs, ""]
            )
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class AnnotationWriter(_Writer):
    """Annotated pictures (:func:`annotate`) into a folder: one image per photo, one mp4 per video/camera.

    Photos keep their name (JPEG/PNG keep their format, others become PNG; ``_2``, ``_3`` ... are added on
    name clashes and when the file exists, so an input photo or an earlier output is never overwritten); a video ``clip.avi`` becomes ``clip_annotated.mp4`` (mp4v) at the frame rate of the
    processed frames. Records need their image (``keep_images=True``); unreadable ones are skipped.
    """

    def __init__(self, out_dir, jpeg_quality: int = 90) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jpeg_quality = int(jpeg_quality)
        self.written: list[Path] = []
        self._videos: dict[str, tuple[cv2.VideoWriter, Path, tuple[int, int], Path]] = {}
        self._names: set[str] = set()

    def _unique(self, stem: str, suffix: str) -> Path:
        name, n = stem + suffix, 1
        # never onto an existing file: a photo of the input folder, or an earlier run's output
        while name in self._names or (self.out_dir / name).exists():
            n += 1
            name = f"{stem}_{n}{suffix}"
        self._names.add(name)
        return self.out_dir / name

    def write(self, record: PredictionRecord) -> Path | None:
        """Draw and write one record; returns the file written (a video's file on its first frame)."""
        if not record.ok:
            return None
        if record.image is None:
            raise ConfigError("annotation needs the image in each record (predict with keep_images=True)")
        rgb = annotate(record.image, record.faces, record.tracks)
        if record.frame is None:
            from ..io import write_image

            suffix = Path(record.source).suffix.lower()
            suffix = suffix if suffix in (".jpg", ".jpeg", ".png") else ".png"
            path = write_image(self._unique(Path(record.source).stem, suffix), rgb, self.jpeg_quality)
            self.written.append(path)
            return path
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if record.source not in self._videos:
            from ..io import display_name

            stem = record.source.replace(":", "") if record.source.startswith("camera:") else None
            path = self._unique((stem or Path(record.source).stem) + "_annotated", ".mp4")
            size = (bgr.shape[1], bgr.shape[0])
            # OpenCV writes a plain temporary name (any final name works, and a kill leaves no torn file)
            tmp = self.out_dir / f".ferlab-annotated-{len(self._videos)}-{os.getpid()}.tmp.mp4"
            vw = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), record.fps or 30.0, size)
            if not vw.isOpened():
                raise FerlabError(f"{display_name(path)}: could not open a video writer (mp4v)")
            self._videos[record.source] = (vw, path, size, tmp)
            self.written.append(path)
            new = path
        else:
            new = None
        vw, _path, size, _tmp = self._videos[record.source]
        if (bgr.shape[1], bgr.shape[0]) != size:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        vw.write(bgr)
        return new

    def close(self) -> None:
        for vw, path, _, tmp in self._videos.values():
            vw.release()
            if tmp.exists():
                os.replace(tmp, path)
        self._videos.clear()
