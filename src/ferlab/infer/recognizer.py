"""Recognise expressions in photos, arrays and face crops: the :class:`Recognizer` and the shipped models.

Example:
    >>> from ferlab import Recognizer
    >>> r = Recognizer()                        # the shipped default model, Haar face detector, CPU
    >>> faces = r.predict("photo.jpg")          # also a numpy array or a PIL image
    >>> faces[0].label, faces[0].probs["happy"], faces[0].box
    ('happy', 0.93, (212.0, 80.0, 298.0, 166.0))
    >>> r.predict_faces(crops)                  # uint8 [N,H,W] or [N,H,W,3] crops, no detection

The model is any ferlab checkpoint (run folder, ``.pt``, ``.safetensors``), a shipped model name
(``'default'``, ``'fast'``, see :func:`list_pretrained`) or an already built model (an ensemble included)
that has ``data_config`` and ``classes``. Crops go through the same evaluation transform as training and
``ferlab evaluate`` (:func:`ferlab.create_transform`), so a photo's face is scored exactly like a dataset
crop of the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..runtime.weights import (  # noqa: F401  (the shipped models, re-exported for inference users)
    PRETRAINED,
    WEIGHTS_DIR,
    list_pretrained,
    load_default,
    load_reference,
    pretrained_int8_path,
    pretrained_path,
)

BACKENDS = ("torch", "onnx", "onnx-int8")


def resolve_model(model, threads: int | None = None):
    """The one model reference: a model object from any of the ways a user names a model.

    What :func:`ferlab.runtime.weights.load_reference` takes (a shipped name such as ``'default'``, a run
    folder, a ``.pt`` checkpoint, a ``.safetensors`` export or saved ensemble, a model object), plus an
    exported ``.onnx`` file, run by ONNX Runtime with ``threads``. A registry architecture name
    (``'fernet_s'``) has no trained weights: the error says so and how to train it.
    """
    if isinstance(model, (str, Path)) and Path(model).suffix == ".onnx":
        from .onnx import OnnxModel

        return OnnxModel.from_file(model, threads)
    return load_reference(model)


@dataclass
class FacePrediction:
    """One recognised face.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels of the input image (the whole crop for :meth:`predict_faces`).
        label: the most probable class (lower-case name from :data:`ferlab.labels.CANONICAL`).
        probs: probability of every class the model knows, by name; they sum to 1.
        score: the face detector's confidence (None for crops given without detection).
    """

    box: tuple[float, float, float, float]
    label: str
    probs: dict[str, float]
    score: float | None = None

    @property
    def confidence(self) -> float:
        """The probability of :attr:`label`."""
        return self.probs[self.label]

    def to_dict(self) -> dict:
        """JSON-ready: box rounded to 0.1 px, probabilities to 6 digits (what ``ferlab predict`` writes)."""
        return {
            "box": [round(float(v), 1) for v in self.box],
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
            "score": None if self.score is None else round(float(self.score), 4),
        }


class Recognizer:
    """Face detection + expression classification.

    Args:
        model: shipped model name (``'default'``, ``'fast'``, ``'ferplus'``), checkpoint path / run folder, or a
            model object.
        detector: face detector name (``'blazeface'``, ``'haar-fast'``, ``'haar'``, ``'mtcnn'``, ``'mediapipe'``,
            options after a colon) or a detector object. None: the crop rule the model's training images were
            made with (``model.spec.crop``, recorded by ``ferlab prepare``), else ``'blazeface'`` (MediaPipe's
            network on an image pyramid; it finds more faces than the Haar cascades, with fewer false ones at
            640x480, in less time, docs/bench_detect.md).
        device: ``'cpu'``, ``'cuda'``, ``'mps'``.
        tta: test-time augmentation, ``'none'``, ``'flip'`` or ``'tencrop'``.
        batch_size: crops per forward pass.
        precision: ``'auto'`` (bf16 on CPUs with native bf16, fp16 on CUDA, else fp32), ``'fp32'``, ``'bf16'``.
        backend: ``'torch'``, ``'onnx'`` (ONNX Runtime on an exported copy of the model; fp32) or
            ``'onnx-int8'`` (ONNX Runtime, INT8: the shipped ``weights/<name>.int8.onnx`` for ``default`` and
            ``fast``; other models are quantized in memory, calibrated on FER2013 training faces from
            ``$FERLAB_DATA``; or pass an ``.onnx`` file written by ``ferlab export --quantize int8``).
        threads: CPU threads for torch, ONNX Runtime and OpenCV (None: :func:`ferlab.hardware.default_threads`).
        margin: fraction of the detected box added on each side before cropping. None: the model's crop
            rule, else 0.1 (FER2013-like framing; measured best for BlazeFace boxes on pasted PrivateTest faces,
            0.0-0.1 for Haar's). The whole rule is :attr:`crop_rule` (:class:`ferlab.faces.CropRule`).
        min_face: smallest face side in pixels the detector keeps (None: the detector's own default, 30 for
            ``'blazeface'``, 48 for ``'haar-fast'``, 20 for the others).
    """

    def __init__(
        self,
        model="default",
        detector=None,
        device: str = "cpu",
        tta: str = "none",
        batch_size: int = 128,
        precision: str = "auto",
        backend: str = "torch",
        margin: float | None = None,
        min_face: int | None = None,
        threads: int | None = None,
    ) -> None:
        import torch

        from ..hardware import configure_threads
        from ..runtime.precision import resolve_precision
        from ..runtime.predict import TTA
        from ..transforms import create_transform

        if tta not in TTA:
            raise ConfigError(f"unknown TTA {tta!r}; valid: {', '.join(TTA)}")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if int(batch_size) < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.device = _check_device(device)
        self.threads = configure_threads(threads)
        self.tta, self.batch_size, self.backend = tta, int(batch_size), backend
        self._onnx = None
        if isinstance(model, (str, Path)) and str(model).endswith(".onnx"):  # an exported file runs in ORT
            from .onnx import OnnxModel

            self._onnx = OnnxModel.from_file(model, self.threads)
            self.model = self._onnx
            backend = self.backend = "onnx-int8" if self._onnx.is_int8 else "onnx"
        else:
            self.model = resolve_model(model).eval().to(self.device)
        self.classes = tuple(self.model.classes)
        self.data_config = self.model.data_config
        self.precision = (
            ("int8" if backend == "onnx-int8" else "fp32")
            if backend != "torch"
            else resolve_precision(precision, self.device)
        )
        self.channels_last = self.precision not in ("fp32", "int8") and self.device == "cpu"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.transform = create_transform(self.data_config, is_training=False)
        # the crop rule: what the caller says, else the model's training rule, else the inference default
        from ..faces.crop import INFERENCE_RULE, CropRule, FaceCropper

        trained = (
            CropRule.from_dict(getattr(getattr(self.model, "spec", None), "crop", None)) or INFERENCE_RULE
        )
        given = detector if isinstance(detector, str) else None
        self.crop_rule = trained.replace(detector=given, margin=None if margin is None else float(margin))
        self._detector_spec = detector if detector is not None else self.crop_rule.detector
        self.min_face = None if min_face is None else int(min_face)
        self.cropper = FaceCropper(
            self.crop_rule,
            detector=detector if detector is not None and not isinstance(detector, str) else None,
            detector_options={} if self.min_face is None else {"min_size": self.min_face},
        )
        self.margin = self.crop_rule.margin
        if backend != "torch" and self._onnx is None:
            from .onnx import OnnxModel

            shipped = pretrained_int8_path(str(model)) if isinstance(model, (str, Path)) else None
            if backend == "onnx-int8" and shipped is not None:
                self._onnx = OnnxModel.from_file(shipped, self.threads)
            else:
                quantize = "int8" if backend == "onnx-int8" else None
                self._onnx = OnnxModel.from_model(self.model, threads=self.threads, quantize=quantize)
        if self._onnx is not None and backend == "onnx-int8" and not self._onnx.is_int8:
            raise ConfigError(f"backend 'onnx-int8' needs an INT8 model; {self._onnx.source} is fp32 "
                              "(write one with: ferlab export --quantize int8)")  # fmt: skip

    # -- detection ---------------------------------------------------------------------------------
    @property
    def detector(self):
        """The face detector (built on first use)."""
        return self.cropper.detector

    # -- classification ----------------------------------------------------------------------------
    def predict_proba(self, crops) -> np.ndarray:
        """Class probabilities ``[N, C]`` for uint8 crops ``[N,H,W]`` / ``[N,H,W,3]`` (or a list of crops of any size)."""
        crops = _stack_crops(crops, self.data_config)
        if len(crops) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        if self._onnx is not None:
            return self._onnx.predict_probs(crops, self.transform, self.batch_size, self.tta)
        from ..runtime.predict import predict_probs

        return predict_probs(
            self.model,
            crops,
            self.transform,
            self.batch_size,
            self.tta,
            self.device,
            precision=self.precision,
            channels_last=self.channels_last,
        )

    def _results(self, probs: np.ndarray, boxes, scores) -> list[FacePrediction]:
        out = []
        for p, box, score in zip(probs, boxes, scores):
            d = {c: float(v) for c, v in zip(self.classes, p)}
            out.append(FacePrediction(tuple(float(v) for v in box), self.classes[int(p.argmax())], d, score))
        return out

    def predict_faces(self, crops) -> list[FacePrediction]:
        """Classify already-cropped faces without detection (the fast path for datasets and benchmarks)."""
        crops = _stack_crops(crops, self.data_config)
        probs = self.predict_proba(crops)
        boxes = [(0.0, 0.0, float(c.shape[1]), float(c.shape[0])) for c in crops]
        return self._results(probs, boxes, [None] * len(crops))

    def predict(self, image) -> list[FacePrediction]:
        """Every face in ``image`` (path, numpy array or PIL image), largest first; [] when there is none."""
        from ..io import as_array

        return self.predict_batch([as_array(image)])[0]

    def predict_batch(self, images, detect: bool = True) -> list[list[FacePrediction]]:
        """The faces of several images (uint8 arrays), their crops classified together in batches.

        Gives the same faces as ``[self.predict(im) for im in images]``. With ``detect=False`` each image is
        one face crop (box = the whole image, score None), as in :meth:`predict_faces`.
        """
        crops, owner, boxes, scores = [], [], [], []
        for i, img in enumerate(images):
            if detect:
                for face, crop in self.cropper(img):
                    crops.append(crop)
                    owner.append(i)
                    boxes.append(face.box)
                    scores.append(face.score)
            else:
                crops.append(img)
                owner.append(i)
                boxes.append((0.0, 0.0, float(img.shape[1]), float(img.shape[0])))
                scores.append(None)
        out: list[list[FacePrediction]] = [[] for _ in images]
        if crops:
            for res, i in zip(self._results(self.predict_proba(crops), boxes, scores), owner):
                out[i].append(res)
        return out

    def __repr__(self) -> str:
        name = getattr(self.model, "model_name", type(self.model).__name__)
        return (
            f"Recognizer(model={name}, classes={len(self.classes)}, detector={self._detector_spec!r}, "
            f"device={self.device!r}, precision={self.precision!r}, backend={self.backend!r}, tta={self.tta!r})"
        )


def _check_device(device: str) -> str:
    import torch

    device = str(device)
    kind = device.split(":")[0]
    if kind == "cpu":
        return device
    if kind == "cuda" and torch.cuda.is_available():
        return device
    if kind == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return device
    if kind in ("cuda", "mps"):
        raise ConfigError(f"device {device!r} is not available on this machine; use 'cpu'")
    raise ConfigError(f"unknown device {device!r}; valid: cpu, cuda, mps")


def _stack_crops(crops, data_config) -> np.ndarray:
    """Crops as one uint8 array ``[N,H,W(,3)]``; a list of crops is resized to the model's input, crop by crop."""
    from ..faces.geometry import resize

    if isinstance(crops, np.ndarray):
        if crops.dtype != np.uint8:
            raise ConfigError(f"face crops must be uint8, got {crops.dtype}")
        if crops.ndim == 2:  # one grayscale crop
            crops = crops[None]
        if crops.ndim not in (3, 4) or (crops.ndim == 4 and crops.shape[-1] not in (1, 3)):
            raise ConfigError(
                f"face crops must be [N,H,W] or [N,H,W,3] uint8, got shape {tuple(crops.shape)}"
            )
        return crops[..., 0] if crops.ndim == 4 and crops.shape[-1] == 1 else crops
    crops = [np.asarray(c) for c in crops]
    if not crops:
        return np.zeros((0, *data_config.input_size[-2:]), np.uint8)
    for i, c in enumerate(crops):
        if c.dtype != np.uint8 or c.ndim not in (2, 3):
            raise ConfigError(
                f"face crop {i} must be a uint8 [H,W] or [H,W,3] array, got {c.dtype} {c.shape}"
            )
    color = any(c.ndim == 3 for c in crops)
    if color:
        crops = [np.repeat(c[..., None], 3, -1) if c.ndim == 2 else c for c in crops]
    # every crop takes the same path whatever else is in the batch (alone or with crops of other sizes):
    # resized here to the model's input, so a face gets the same probabilities alone and in a batch
    size = tuple(data_config.input_size[-2:])
    return np.stack([resize(c, size) for c in crops])
