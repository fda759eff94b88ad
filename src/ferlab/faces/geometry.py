"""Face geometry: the :class:`Face` record, resizing, border-safe cropping and eye alignment.

Coordinates are pixels with the origin at the top-left corner, ``x`` to the right and ``y`` down.
Landmark names refer to sides *in the image* (``left_eye`` is the eye with the smaller ``x`` in an
upright face), the convention of MTCNN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..errors import ConfigError
from ..io import _check_image, _hw, resize  # noqa: F401  (resize is part of this module's API)

Point = tuple[float, float]
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels of the image it was found in.
        score: the detector's confidence (a probability for MTCNN/MediaPipe, a cascade weight for Haar).
        landmarks: named points such as ``{'left_eye': (x, y), 'right_eye': (x, y), 'nose': ...}`` or None.
    """

    box: Box
    score: float = 1.0
    landmarks: dict[str, Point] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))
        if self.landmarks is not None:
            pts = {k: (float(v[0]), float(v[1])) for k, v in self.landmarks.items()}
            object.__setattr__(self, "landmarks", pts)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> Point:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def eyes(self) -> tuple[Point, Point] | None:
        """``(left_eye, right_eye)`` when both are known, else None."""
        lm = self.landmarks or {}
        if "left_eye" in lm and "right_eye" in lm:
            return lm["left_eye"], lm["right_eye"]
        return None

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by ``factor``."""
        lm = (
            None
            if self.landmarks is None
            else {k: (x * factor, y * factor) for k, (x, y) in self.landmarks.items()}
        )
        return replace(self, box=tuple(v * factor for v in self.box), landmarks=lm)

    def transformed(self, matrix: np.ndarray) -> Face:
        """The face after the 2x3 affine ``matrix``: landmarks mapped, box re-centred with the same size."""
        m = np.asarray(matrix, dtype=np.float64)
        cx, cy = _apply(m, self.center)
        w, h = self.width, self.height
        lm = None if self.landmarks is None else {k: _apply(m, p) for k, p in self.landmarks.items()}
        return replace(self, box=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), landmarks=lm)


def _apply(matrix: np.ndarray, p: Point) -> Point:
    x, y = p
    return (
        float(matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]),
        float(matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]),
    )


def expand_box(box: Box, margin: float = 0.2, square: bool = True) -> Box:
    """``box`` grown by ``margin`` × its size on every side (made square around its centre if asked)."""
    x1, y1, x2, y2 = map(float, box)
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        raise ConfigError(f"face box {tuple(box)} is empty (x2 <= x1 or y2 <= y1)")
    if square:
        w = h = max(w, h)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = w * (1 + 2 * margin), h * (1 + 2 * margin)
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _pixel_window(box: Box) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    w, h = max(round(x2 - x1), 1), max(round(y2 - y1), 1)
    x0, y0 = round((x1 + x2) / 2 - w / 2), round((y1 + y2) / 2 - h / 2)
    return x0, y0, x0 + w, y0 + h


def crop_face(
    img: np.ndarray, box: Box, margin: float = 0.2, square: bool = True, pad: str = "edge"
) -> np.ndarray:
    """Crop a face with a margin; never fails near the borders.

    Args:
        img: uint8 ``[H, W]`` or ``[H, W, C]``.
        box: ``(x1, y1, x2, y2)``.
        margin: fraction of the box size added on each side (0.2 makes the crop 1.4× the box).
        square: make the crop square around the box centre (side = the longer box side).
        pad: how to fill the part of the crop outside the image: ``'edge'`` repeats the border pixels,
            ``'constant'`` fills with zeros.

    Returns:
        The crop, same dtype and channels as ``img``.
    """
    img = _check_image(img)
    if pad not in ("edge", "constant"):
        raise ConfigError(f"pad {pad!r} is not valid; valid: constant, edge")
    x0, y0, x1, y1 = _pixel_window(expand_box(box, margin, square))
    h, w = img.shape[:2]
    ys, xs = np.arange(y0, y1), np.arange(x0, x1)
    out = img[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)]
    if pad == "constant":
        out[(ys < 0) | (ys >= h)] = 0
        out[:, (xs < 0) | (xs >= w)] = 0
    return out


def eye_angle(left_eye: Point, right_eye: Point) -> float:
    """Angle in degrees of the line from the left to the right eye (positive when the right eye is lower)."""
    return math.degrees(math.atan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0]))


def alignment_matrix(left_eye: Point, right_eye: Point, scale: float = 1.0) -> np.ndarray:
    """The 2x3 affine that rotates about the eye midpoint so the eyes become horizontal."""
    center = ((left_eye[0] + right_eye[0]) / 2, (left_eye[1] + right_eye[1]) / 2)
    return cv2.getRotationMatrix2D(center, eye_angle(left_eye, right_eye), scale)


def _border(pad: str) -> int:
    if pad == "edge":
        return cv2.BORDER_REPLICATE
    if pad == "constant":
        return cv2.BORDER_CONSTANT
    raise ConfigError(f"pad {pad!r} is not valid; valid: constant, edge")


def align_face(
    img: np.ndarray, left_eye: Point, right_eye: Point, scale: float = 1.0, pad: str = "edge"
) -> np.ndarray:
    """Rotate ``img`` about the eye midpoint so the eyes lie on one horizontal line.

    The output has the size of the input; the eye midpoint stays where it was. Map boxes and
    landmarks into the result with ``Face.transformed(alignment_matrix(left_eye, right_eye, scale))``.
    """
    img = _check_image(img)
    m = alignment_matrix(left_eye, right_eye, scale)
    h, w = img.shape[:2]
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=_border(pad))
    if img.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def aligned_crop(
    img: np.ndarray, face: Face, margin: float = 0.2, square: bool = True, pad: str = "edge"
) -> np.ndarray:
    """``crop_face(align_face(img, *eyes), aligned box)`` in one warp, without rotating the whole image.

    Falls back to a plain :func:`crop_face` when the face has no eye landmarks.
    """
    img = _check_image(img)
    if face.eyes is None:
        return crop_face(img, face.box, margin, square, pad)
    m = alignment_matrix(*face.eyes)
    x0, y0, x1, y1 = _pixel_window(expand_box(face.transformed(m).box, margin, square))
    m = m.copy()
    m[:, 2] -= (x0, y0)
    out = cv2.warpAffine(img, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=_border(pad))
    if img.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return out


def box_iou_many(box, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one ``(x1, y1, x2, y2)`` box with each row of ``boxes`` ``[N, >=4]``."""
    boxes = np.asarray(boxes, np.float64)
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    union = (
        (box[2] - box[0]) * (box[3] - box[1])
        + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        - inter
    )
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    return float(box_iou_many(a, np.asarray([b[:4]]))[0])
