"""Runtime: how a model runs on this machine, shared by training, evaluation, inference and benchmarks.

``precision``: the one precision policy (``auto`` picks bf16 only where the hardware makes it fast).
The CPU facts and the thread budget it relies on live one layer down, in :mod:`ferlab.hardware`.
"""

from ..hardware import CpuInfo, configure_threads, cpu_info, default_threads, ort_session_options
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
