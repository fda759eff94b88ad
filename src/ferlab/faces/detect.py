"""Face detectors behind one small interface.

Every detector takes a uint8 grayscale ``[H, W]`` or RGB ``[H, W, 3]`` image (or a path / PIL image) and
returns a list of :class:`~ferlab.faces.geometry.Face`, largest first. Only the OpenCV Haar cascade is
always available; MTCNN (``pip install 'ferlab[mtcnn]'``) and MediaPipe (``pip install mediapipe``) are
optional and imported only when such a detector is created. All of them ship their weights inside their
package, so nothing is downloaded.

Example:
    >>> det = create_detector("haar", min_size=40)
    >>> faces = det.detect(read_image("photo.jpg"))
    >>> faces[0].box  # (x1, y1, x2, y2) of the largest face
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import yaml

from ..errors import ConfigError, FerlabError, unknown_name
from ..io import as_array
from .geometry import Face


class FaceDetector:
    """Base class: subclasses implement ``_detect(img)`` on a uint8 array and return faces in any order.

    Args:
        min_size: drop faces whose shorter box side is below this many pixels.
        score_threshold: drop faces scoring below this (None keeps all).
    """

    name = "base"
    #: close-ups: when nothing is found, look again with this much plain border (a fraction of the longer
    #: side, on every side) around the photo, so a face that fills the frame or is cut by its edge gets the
    #: context detectors expect; boxes are clipped back to the photo. 0 turns the second look off.
    pad_retry: float = 0.25

    def __init__(self, min_size: int = 20, score_threshold: float | None = None) -> None:
        self.min_size = int(min_size)
        self.score_threshold = score_threshold

    def _found(self, img: np.ndarray) -> list[Face]:
        return [
            f
            for f in self._detect(img)
            if min(f.width, f.height) >= self.min_size
            and (self.score_threshold is None or f.score >= self.score_threshold)
        ]

    def detect(self, img) -> list[Face]:
        """Faces in ``img`` (uint8 gray or RGB array, PIL image or path), sorted largest first."""
        img = as_array(img)
        faces = self._found(img)
        if not faces and self.pad_retry > 0:
            faces = self._found_padded(img)
        return sorted(faces, key=lambda f: (f.area, f.score), reverse=True)

    def _found_padded(self, img: np.ndarray) -> list[Face]:
        h, w = img.shape[:2]
        p = max(1, round(self.pad_retry * max(h, w)))
        fill = [int(v) for v in np.atleast_1d(img.reshape(-1, img.shape[2] if img.ndim == 3 else 1).mean(0))]
        padded = cv2.copyMakeBorder(img, p, p, p, p, cv2.BORDER_CONSTANT, value=fill + [0] * (4 - len(fill)))
        out = []
        for f in self._found(padded):
            x1, y1, x2, y2 = (f.box[0] - p, f.box[1] - p, f.box[2] - p, f.box[3] - p)
            box = (max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h)))
            if box[2] - box[0] < 0.5 * (x2 - x1) or box[3] - box[1] < 0.5 * (y2 - y1):
                continue  # mostly in the added border: not a face of this photo
            lm = None if f.landmarks is None else {k: (x - p, y - p) for k, (x, y) in f.landmarks.items()}
            out.append(Face(box, f.score, lm))
        return out

    __call__ = detect

    def _detect(self, img: np.ndarray) -> list[Face]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(min_size={self.min_size}, score_threshold={self.score_threshold})"


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img)


class HaarDetector(FaceDetector):
    """OpenCV's Viola-Jones cascade (``haarcascade_frontalface_default.xml`` bundled with opencv-python).

    Fast and dependency-free, frontal faces only, no landmarks (so no alignment). The score is the
    cascade's level weight (unbounded, larger is surer; about 3-8 for clear faces), not a probability.

    Args:
        min_size: smallest face side in pixels.
        score_threshold: minimum level weight (None keeps every detection).
        scale_factor: image pyramid step of ``detectMultiScale``.
        min_neighbors: overlapping raw detections needed to keep a face; higher means fewer false faces.
        cascade: file name in ``cv2.data.haarcascades`` or a path to a cascade XML.
        max_side: images whose longer side exceeds this are shrunk for detection (boxes are mapped back);
            None detects at full resolution.
        face_px: detect on a copy shrunk so that a ``min_size`` face spans this many pixels (the cascade's
            window is 24), boxes mapped back; None keeps the full resolution. OpenCV scans pyramid levels
            below 2x the window with a 2-pixel stride and larger ones with a 1-pixel stride, so shrinking
            first makes large ``min_size`` values several times cheaper (``ferlab bench detect`` measures
            the speed and the recall of each setting).
    """

    name = "haar"

    def __init__(
        self,
        min_size: int = 20,
        score_threshold: float | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascade: str = "haarcascade_frontalface_default.xml",
        max_side: int | None = 1024,
        face_px: int | None = None,
    ) -> None:
        super().__init__(min_size, score_threshold)
        if face_px is not None and face_px < 24:
            raise FerlabError(f"face_px={face_px} is below the Haar cascade's 24-pixel window")
        path = Path(cascade)
        if not path.is_file():
            path = Path(cv2.data.haarcascades) / cascade
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FerlabError(f"Haar cascade {cascade!r} could not be loaded (looked for {path})")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.max_side = max_side
        self.face_px = face_px

    def _detect(self, img: np.ndarray) -> list[Face]:
        gray = _gray(img)
        factor = 1.0
        if self.max_side and max(gray.shape) > self.max_side:
            factor = self.max_side / max(gray.shape)
        if self.face_px and self.min_size > self.face_px:
            factor = min(factor, self.face_px / self.min_size)
        if factor < 1.0:
            size = (round(gray.shape[1] * factor), round(gray.shape[0] * factor))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        min_px = max(round(self.min_size * factor), 1)
        rects, _, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_px, min_px),
            outputRejectLevels=True,
        )
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        faces = []
        for i, (x, y, w, h) in enumerate(np.asarray(rects).reshape(-1, 4)):
            score = float(weights[i]) if i < len(weights) else 1.0
            faces.append(Face((x, y, x + w, y + h), score).scaled(1 / factor))
        return faces


class FastHaarDetector(HaarDetector):
    """The Haar cascade tuned for speed on photos (``'haar-fast'``; the default detector is ``'blazeface'``).

    Faces from ``min_size`` = 48 pixels up (FER models see 48x48 faces; ``fer`` stops at 50), found on a copy
    shrunk so a 48-pixel face spans 32 pixels (the cascade's window is 24), with a coarser pyramid (1.15); a single
    neighbour suffices (more recall) and a cascade weight of 1 is required instead (fewer false faces).
    Tuned on synthetic photos with pasted FER2013 faces (``ferlab bench detect --seed 2/4``) and measured on
    another seed (3, docs/bench_detect.md): against the exhaustive settings ``fer`` uses (min 50 px, 1.1,
    5 neighbours) it takes half the time (19.6 vs 40.2 ms at 640x480, 44 vs 84 ms at 1280x720, 2 threads)
    and finds 1-2 points fewer faces (0.706 vs 0.722, 0.739 vs 0.747), losing mostly faces under 64 px,
    with a few more false faces (use ``'haar'`` when a stray box matters more than speed). Pass the
    :class:`HaarDetector` options to change any of it.
    """

    name = "haar-fast"

    def __init__(
        self,
        min_size: int = 48,
        score_threshold: float | None = 1.0,
        scale_factor: float = 1.15,
        min_neighbors: int = 1,
        cascade: str = "haarcascade_frontalface_default.xml",
        max_side: int | None = 1024,
        face_px: int | None = 32,
    ) -> None:
        super().__init__(min_size, score_threshold, scale_factor, min_neighbors, cascade, max_side, face_px)


def _missing(what: str, package: str, install: str, err: ImportError) -> FerlabError:
    if err.name and err.name.split(".")[0] == package:
        return FerlabError(
            f"the {what} face detector needs {package}, which is not installed; run: {install}"
        )
    return FerlabError(f"the {what} face detector could not import {package}: {err}")


class MTCNNDetector(FaceDetector):
    """MTCNN (Zhang et al. 2016) from facenet-pytorch, with 5 landmarks; install ``ferlab[mtcnn]``.

    Landmarks: ``left_eye``, ``right_eye``, ``nose``, ``mouth_left``, ``mouth_right``. Runs on the CPU
    with the weights bundled in facenet-pytorch.

    Args:
        min_size: smallest face side in pixels (also MTCNN's ``min_face_size``).
        score_threshold: minimum face probability.
        thresholds: MTCNN's three stage thresholds.
        device: torch device.
    """

    name = "mtcnn"

    def __init__(
        self,
        min_size: int = 20,
        score_threshold: float | None = 0.9,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        device: str = "cpu",
    ) -> None:
        super().__init__(min_size, score_threshold)
        try:
            from facenet_pytorch import MTCNN
        except ImportError as e:
            raise _missing("MTCNN", "facenet_pytorch", "pip install 'ferlab[mtcnn]'", e) from None
        self._mtcnn = MTCNN(
            min_face_size=self.min_size, thresholds=list(thresholds), keep_all=True, device=device
        )

    def _detect(self, img: np.ndarray) -> list[Face]:
        import torch

        with torch.no_grad():
            boxes, probs, points = self._mtcnn.detect(_rgb(img), landmarks=True)
        if boxes is None:
            return []
        names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
        return [
            Face(tuple(b), float(p), {n: tuple(pt) for n, pt in zip(names, pts)})
            for b, p, pts in zip(boxes, probs, points)
        ]


def _mediapipe_landmarks(kp) -> dict:
    """Named landmarks from MediaPipe's six face key points (right eye, left eye, nose, mouth, right ear, left
    ear, named from the subject's view); each eye and ear pair is ordered by image side instead."""
    eyes, ears = sorted(kp[0:2]), sorted(kp[4:6])
    return {
        "left_eye": eyes[0], "right_eye": eyes[1], "nose": kp[2], "mouth": kp[3],
        "left_ear": ears[0], "right_ear": ears[1],
    }  # fmt: skip


class BlazeFaceDetector(FaceDetector):
    """MediaPipe's BlazeFace (short-range weights, bundled) run by PyTorch on an image pyramid (``'blazeface'``).

    Needs neither mediapipe nor TFLite (see :mod:`ferlab.faces.blazeface` for the network and the deviations
    from MediaPipe's graph). The finest level shrinks the photo so a ``min_size`` face spans ``face_px`` input
    pixels; each further level shrinks it by ``step`` until the photo fits in 128 pixels, where a last level
    sees the whole photo as MediaPipe does. Detections of all levels are merged by MediaPipe's weighted
    non-maximum suppression. Landmarks: ``left_eye``, ``right_eye``, ``nose``, ``mouth``, ``left_ear``,
    ``right_ear`` (sides in the image), so faces can be aligned by the eyes.

    Args:
        min_size: smallest face side in pixels.
        score_threshold: minimum face probability (MediaPipe's default 0.5).
        face_px: input pixels a ``min_size`` face spans on the finest level (the network's anchors suit
            faces of about 16-100 input pixels).
        step: scale ratio between pyramid levels.
        iou_threshold: overlap above which two detections are merged (MediaPipe: 0.3).
        backend: ``'onnx'`` (ONNX Runtime, ~3x faster), ``'torch'``, or ``'auto'``: ONNX Runtime when it is
            installed (``ferlab[onnx]``), else PyTorch.
    """

    name = "blazeface"

    def __init__(
        self,
        min_size: int = 30,
        score_threshold: float | None = 0.6,
        face_px: float = 19.0,
        step: float = 2.0,
        iou_threshold: float = 0.3,
        backend: str = "auto",
    ) -> None:
        super().__init__(min_size, score_threshold)
        if backend not in ("auto", "onnx", "torch"):
            raise ConfigError(f"blazeface backend {backend!r}: use 'auto', 'onnx' or 'torch'")
        if not 8 <= face_px <= 128:
            raise ConfigError(f"blazeface face_px={face_px}: must be between 8 and 128 input pixels")
        if step <= 1.0:
            raise ConfigError(f"blazeface step={step}: must be above 1")
        from .blazeface import OnnxBlazeFace, load_blazeface

        self.face_px, self.step, self.iou_threshold = float(face_px), float(step), float(iou_threshold)
        self.net = load_blazeface()
        if backend == "auto":
            backend = "onnx" if importlib.util.find_spec("onnxruntime") else "torch"
        if backend == "onnx":
            try:
                self.net = OnnxBlazeFace(self.net)
            except ImportError as e:
                raise _missing(
                    "BlazeFace (ONNX backend)", "onnxruntime", "pip install 'ferlab[onnx]'", e
                ) from None
        self.backend = backend

    def _detect(self, img: np.ndarray) -> list[Face]:
        from .blazeface import detect_pyramid, pyramid_scales

        rgb = _rgb(img)
        h, w = rgb.shape[:2]
        scales = pyramid_scales(h, w, self.min_size, self.face_px, self.step)
        thr = 0.5 if self.score_threshold is None else float(self.score_threshold)
        faces = []
        for d in detect_pyramid(self.net, rgb, scales, thr, self.iou_threshold):
            lm = _mediapipe_landmarks([(float(x), float(y)) for x, y in d[4:16].reshape(6, 2)])
            box = (max(float(d[0]), 0.0), max(float(d[1]), 0.0), min(float(d[2]), w), min(float(d[3]), h))
            if box[2] > box[0] and box[3] > box[1]:
                faces.append(Face(box, float(d[16]), lm))
        return faces

    def __repr__(self) -> str:
        return (
            f"BlazeFaceDetector(min_size={self.min_size}, score_threshold={self.score_threshold}, "
            f"face_px={self.face_px}, step={self.step}, backend={self.backend!r})"
        )


class MediaPipeDetector(FaceDetector):
    """MediaPipe's BlazeFace short-range detector (mediapipe 0.10.x, model bundled in the wheel).

    Best for faces that fill a good part of the image (within about 2 m of the camera); use
    ``model_selection=1`` for the full-range model. Landmarks: ``left_eye``, ``right_eye``, ``nose``,
    ``mouth``, ``left_ear``, ``right_ear`` (sides in the image).

    Args:
        min_size: smallest face side in pixels.
        score_threshold: minimum detection confidence (MediaPipe's ``min_detection_confidence``).
        model_selection: 0 short-range, 1 full-range.
    """

    name = "mediapipe"

    def __init__(
        self, min_size: int = 20, score_threshold: float | None = 0.5, model_selection: int = 0
    ) -> None:
        super().__init__(min_size, score_threshold)
        try:
            import mediapipe as mp
        except ImportError as e:
            raise _missing("MediaPipe", "mediapipe", "pip install mediapipe==0.10.21", e) from None
        self._mp = mp.solutions.face_detection.FaceDetection(
            min_detection_confidence=float(score_threshold or 0.0), model_selection=model_selection
        )

    def _detect(self, img: np.ndarray) -> list[Face]:
        rgb = _rgb(img)
        h, w = rgb.shape[:2]
        result = self._mp.process(rgb)
        faces = []
        for det in result.detections or []:
            rel = det.location_data.relative_bounding_box
            box = (rel.xmin * w, rel.ymin * h, (rel.xmin + rel.width) * w, (rel.ymin + rel.height) * h)
            kp = [(p.x * w, p.y * h) for p in det.location_data.relative_keypoints]
            lm = _mediapipe_landmarks(kp) if len(kp) >= 6 else None
            faces.append(Face(box, float(det.score[0]) if det.score else 1.0, lm))
        return faces

    def close(self) -> None:
        self._mp.close()


DETECTORS: dict[str, type[FaceDetector]] = {
    "haar": HaarDetector,
    "haar-fast": FastHaarDetector,
    "blazeface": BlazeFaceDetector,
    "mtcnn": MTCNNDetector,
    "mediapipe": MediaPipeDetector,
}


def list_detectors() -> list[str]:
    """Names accepted by :func:`create_detector`."""
    return sorted(DETECTORS)


def create_detector(name: str | FaceDetector = "haar", **kwargs) -> FaceDetector:
    """A face detector by name (``'haar'``, ``'haar-fast'``, ``'mtcnn'``, ``'mediapipe'``); an instance is returned as is.

    The name may carry options after a colon, ``'haar:min_size=50,max_side=null'`` (values are YAML
    scalars); keyword arguments override them.

    Args:
        name: detector name (case-insensitive), optionally with options, or a ready :class:`FaceDetector`.
        **kwargs: options of that detector, e.g. ``min_size``, ``score_threshold``.

    Raises:
        ConfigError: unknown name (the message lists the valid ones) or a malformed option.
        FerlabError: the detector's optional package is not installed (the message says how to install it).
    """
    if isinstance(name, FaceDetector):
        return name
    key, _, opts = str(name).strip().partition(":")
    key = key.strip().lower()
    if key not in DETECTORS:
        raise unknown_name("face detector", key, DETECTORS)
    options = {}
    for item in filter(None, (o.strip() for o in opts.split(","))):
        k, eq, v = item.partition("=")
        if not eq or not k.strip():
            raise ConfigError(f"face detector option {item!r} in {name!r} is not key=value")
        options[k.strip()] = yaml.safe_load(v)
    options.update(kwargs)
    pad_retry = options.pop("pad_retry", None)
    try:
        det = DETECTORS[key](**options)
    except TypeError as e:
        raise ConfigError(f"face detector {name!r}: {e}") from None
    if pad_retry is not None:
        if not isinstance(pad_retry, (int, float)) or not 0 <= pad_retry <= 1:
            raise ConfigError(f"face detector {name!r}: pad_retry={pad_retry!r} must be a fraction in [0, 1]")
        det.pad_retry = float(pad_retry)
    return det
