"""The one face-crop rule, shared by dataset preparation, generated-face filtering and inference.

A :class:`CropRule` is how a face becomes a crop: which detector finds it, how much margin is added
around its box, whether the eyes are levelled first (``align``, when the detector gives eye landmarks) and
whether the crop is square. A :class:`FaceCropper` applies one rule. ``ferlab prepare`` records the rule it
used next to the crops it writes; a model trained on them carries it in its
:class:`~ferlab.models.ModelSpec` (``spec.crop``) and the ``Recognizer`` crops photos by it unless told
otherwise, so a face at inference is framed like the faces the model learned from. Datasets that come as
crops (FER2013, FER+) record none, and inference then uses :data:`INFERENCE_RULE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

import numpy as np

from ..data.imagefolder import CROP_RULE_FILE  # noqa: F401  (the file beside prepared crops)
from ..errors import ConfigError
from .detect import FaceDetector, create_detector
from .geometry import Face, aligned_crop, crop_face


@dataclass(frozen=True)
class CropRule:
    """How a face is cut out of a photo (see the module docstring).

    Attributes:
        detector: a detector name with optional options (``'haar'``, ``'blazeface:min_size=40'`` ...).
        margin: fraction of the face box added on each side (0.2 makes the crop 1.4x the box).
        align: level the eyes first when the detector gives eye landmarks.
        square: square crops around the box centre.
    """

    detector: str = "blazeface"
    margin: float = 0.1
    align: bool = False
    square: bool = True

    def __post_init__(self) -> None:
        if float(self.margin) < 0:
            raise ConfigError(f"margin {self.margin} must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping | CropRule | None) -> CropRule | None:
        if d is None or isinstance(d, CropRule):
            return d
        unknown = sorted(set(d) - {"detector", "margin", "align", "square"})
        if unknown:
            raise ConfigError(f"crop rule has unknown key(s) {', '.join(unknown)}")
        return cls(str(d.get("detector", "blazeface")), float(d.get("margin", 0.1)), bool(d.get("align", False)),
                   bool(d.get("square", True)))  # fmt: skip

    def replace(self, **changes) -> CropRule:
        """A copy with the non-None ``changes``."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


#: ``ferlab prepare``'s rule: the Haar cascade (no download, any machine), a 0.2 margin, eyes levelled.
PREPARE_RULE = CropRule("haar", 0.2, True, True)
#: inference's rule for models whose training data came as crops: BlazeFace and a 0.1 margin (FER2013-like
#: framing, measured on PrivateTest faces pasted into photos, docs/bench_detect.md).
INFERENCE_RULE = CropRule("blazeface", 0.1, False, True)


class FaceCropper:
    """Detect faces and cut them out by one :class:`CropRule`.

    Args:
        rule: the rule (a :class:`CropRule` or its dict).
        detector: a ready :class:`~ferlab.faces.FaceDetector` used instead of ``rule.detector``'s.
        detector_options: keyword options for :func:`~ferlab.faces.create_detector` (``min_size`` ...).
    """

    def __init__(self, rule: CropRule | Mapping = INFERENCE_RULE, detector: FaceDetector | None = None,
                 detector_options: dict | None = None) -> None:  # fmt: skip
        self.rule = CropRule.from_dict(rule)
        self._detector = detector
        self._options = dict(detector_options or {})

    @property
    def detector(self) -> FaceDetector:
        """The detector, built on first use (so a cropper for known boxes never loads one)."""
        if self._detector is None:
            self._detector = create_detector(self.rule.detector, **self._options)
        return self._detector

    def crop(self, img: np.ndarray, face: Face) -> np.ndarray:
        """The crop of one known face of ``img`` (uint8 gray or colour, same channels as ``img``)."""
        if self.rule.align and face.eyes is not None:
            return aligned_crop(img, face, self.rule.margin, self.rule.square)
        return crop_face(img, face.box, self.rule.margin, self.rule.square)

    def detect(self, img: np.ndarray) -> list[Face]:
        """The faces of ``img``, largest first."""
        return self.detector.detect(img)

    def __call__(self, img: np.ndarray) -> list[tuple[Face, np.ndarray]]:
        """``(face, crop)`` for every face of ``img``, largest first."""
        return [(f, self.crop(img, f)) for f in self.detect(img)]

    def __repr__(self) -> str:
        return f"FaceCropper({self.rule})"
