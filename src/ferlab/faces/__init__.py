"""Face preprocessing: detection, alignment, cropping, photometric normalisation and folder preparation."""

from .detect import (
    DETECTORS,
    FaceDetector,
    HaarDetector,
    MediaPipeDetector,
    MTCNNDetector,
    create_detector,
    list_detectors,
)
from .geometry import (
    Face,
    align_face,
    aligned_crop,
    alignment_matrix,
    crop_face,
    expand_box,
    eye_angle,
    resize,
)
from .photometric import clahe, equalize_hist, lbp_batch, lbp_image
from .pipeline import FacePreprocessor, PrepareReport, prepare_folder

__all__ = [
    "DETECTORS",
    "Face",
    "FaceDetector",
    "FacePreprocessor",
    "HaarDetector",
    "MTCNNDetector",
    "MediaPipeDetector",
    "PrepareReport",
    "align_face",
    "aligned_crop",
    "alignment_matrix",
    "clahe",
    "create_detector",
    "crop_face",
    "equalize_hist",
    "expand_box",
    "eye_angle",
    "lbp_batch",
    "lbp_image",
    "list_detectors",
    "prepare_folder",
    "resize",
]
