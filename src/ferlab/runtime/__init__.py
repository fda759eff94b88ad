"""Runtime: how a model runs on this machine, shared by training, evaluation, inference and benchmarks.

- ``precision``: the one precision policy (``auto`` picks bf16 only where the hardware makes it fast);
- ``predict``: the one prediction loop (uint8 crops -> eval transform -> model -> probabilities, TTA);
- ``evaluate``: metrics of a model on a split and their reports; ``metrics``: the metric functions;
- ``files``: model files (checkpoints, ``.safetensors`` weights) written atomically, loaded without pickle,
  dispatched on their format through a loader table; ``ensemble``: the ensemble model, one such format;
- ``weights``: the shipped models and :func:`~ferlab.runtime.weights.load_reference`.
The CPU facts and the thread budget it relies on live one layer down, in :mod:`ferlab.hardware`.
"""

from ..hardware import CpuInfo, configure_threads, cpu_info, default_threads, ort_session_options
from . import ensemble as _ensemble  # noqa: F401  (registers the ensemble file format)
from .precision import FAST_BF16_ENV, PRECISIONS, autocast_context, cpu_has_fast_bf16, resolve_precision

__all__ = [
    "FAST_BF16_ENV",
    "PRECISIONS",
    "CpuInfo",
    "autocast_context",
    "configure_threads",
    "cpu_has_fast_bf16",
    "cpu_info",
    "default_threads",
    "ort_session_options",
    "resolve_precision",
]
