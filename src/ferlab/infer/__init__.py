"""Inference: the :class:`Recognizer` (detect, crop by the model's crop rule, classify), batch and video
prediction with tracking (``predict``, ``video``), their writers and drawing, ONNX export and INT8
(``onnx``), the web service (``serve``) and ensemble building (``ensemble``).

Everything here runs trained models through :mod:`ferlab.runtime`; nothing here trains.
"""

from .recognizer import BACKENDS, FacePrediction, Recognizer, resolve_model

__all__ = ["BACKENDS", "FacePrediction", "Recognizer", "resolve_model"]
