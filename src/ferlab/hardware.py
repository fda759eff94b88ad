"""What this machine is: the CPU (model, SIMD flags, whether bf16 is fast) and the thread budget.

The bottom layer (beside ``errors`` and ``labels``): faces, models, the runtime and the engine all ask it.

``cpu_info()`` reads ``/proc/cpuinfo`` once. bf16 counts as fast only with native AVX512-BF16 or AMX and
torch allowed to use them; ``FERLAB_NO_FAST_BF16=1`` makes ferlab believe the CPU lacks it, and
``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (which make torch itself run like an AVX2-only CPU)
are read too.

Threads: on a small machine (ferlab is measured on 2 cores) a second pool that spins, or a thread count
above the cores this process may use, makes everything several times slower. ``default_threads()`` is the
number of cores this process may run on (its CPU affinity), or ``FERLAB_THREADS`` / ``OMP_NUM_THREADS``
when set; ``configure_threads(n)`` applies one count to torch and OpenCV; ``ort_session_options(n)``
builds ONNX Runtime session options with the same count, one inter-op thread and passive waiting.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

FAST_BF16_ENV = "FERLAB_NO_FAST_BF16"
THREADS_ENV = "FERLAB_THREADS"
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) that still include a native bf16 path
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                     "AVX10_2_512_AMX_2", "ALL", "DEFAULT")  # fmt: skip


@dataclass(frozen=True)
class CpuInfo:
    """What the precision policy knows of this CPU."""

    model: str
    flags: frozenset
    fast_bf16: bool
    reason: str

    def summary(self) -> str:
        """One line for benchmark tables: model, the SIMD flags that matter, and the bf16 verdict."""
        keys = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni")
        have = [k for k in keys if k in self.flags]
        return f"{self.model} [{' '.join(have) or 'no AVX2'}]; fast bf16: {'yes' if self.fast_bf16 else 'no'}"


def _read_cpuinfo() -> tuple[str, frozenset]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            key = key.strip()
            if key == "model name" and model in ("", platform.machine(), platform.processor()):
                model = val.strip()
            elif key in ("flags", "Features") and not flags:
                flags = frozenset(val.split())
    return model or "unknown CPU", flags


def _torch_limit() -> str | None:
    """Why torch is held back from native bf16 by its environment, or None."""
    cap = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if cap and cap not in ("avx512", "avx512_bf16", "amx", "default"):
        return f"ATEN_CPU_CAPABILITY={cap}"
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if isa and isa not in _ONEDNN_BF16_ISAS:
        return f"ONEDNN_MAX_CPU_ISA={isa}"
    return None


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This CPU's model, flags and whether bf16 is fast on it (cached; the environment is read once)."""
    model, flags = _read_cpuinfo()
    native = [f for f in _BF16_FLAGS if f in flags]
    if os.environ.get(FAST_BF16_ENV, "").strip() not in ("", "0"):
        fast, reason = False, f"{FAST_BF16_ENV} is set"
    elif not native:
        fast, reason = False, "no AVX512-BF16/AMX: bf16 is emulated and several times slower than fp32"
    elif (limit := _torch_limit()) is not None:
        fast, reason = False, f"{limit} keeps torch off the native bf16 path"
    else:
        fast, reason = True, f"native bf16 ({', '.join(native)})"
    return CpuInfo(model, flags, fast, reason)


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """``FERLAB_THREADS``, else ``OMP_NUM_THREADS``, else the usable cores; never more than the usable cores."""
    cores = usable_cores()
    for var in (THREADS_ENV, "OMP_NUM_THREADS"):
        val = os.environ.get(var, "").strip()
        if val.isdigit() and int(val) > 0:
            return min(int(val), cores)
    return cores


def check_threads(threads) -> int | None:
    """Validate a user's ``--threads`` (None stays None)."""
    from .errors import ConfigError

    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be a whole number >= 1, got {threads!r}")
    return threads


def configure_threads(threads: int | None = None) -> int:
    """Use ``threads`` (default :func:`default_threads`) in torch and OpenCV; returns the count used."""
    import torch

    n = check_threads(threads) or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    with contextlib.suppress(ImportError):
        import cv2

        cv2.setNumThreads(n)
    return n


def ort_session_options(threads: int | None = None):
    """ONNX Runtime ``SessionOptions``: ``threads`` intra-op threads, one inter-op, no spinning, quiet."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = check_threads(threads) or default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so
