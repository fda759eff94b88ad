"""Writers of prediction records: JSON lines, CSV, annotated images and videos."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2

from ..errors import ConfigError, FerlabError
from .draw import annotate
from .records import PredictionRecord

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
