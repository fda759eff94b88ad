"""Prediction records: one per image or video frame, and the run's summary."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .recognizer import FacePrediction


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
