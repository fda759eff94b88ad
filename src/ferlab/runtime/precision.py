"""The one precision policy of ferlab: training, evaluation, inference and benchmarks ask it.

bf16 is about 3x faster than fp32 on CPUs that compute it natively (AVX512-BF16 or AMX: Intel Cooper
Lake, Sapphire Rapids and later, AMD Zen 4 and later) and about 11x *slower* on CPUs that emulate it
(AVX2-only, e.g. a 2-core AMD EPYC measured for ferlab). So ``'auto'`` means:

* CUDA: fp16 (autocast with loss scaling in training);
* a CPU with native bf16 that torch is allowed to use: bf16;
* anything else: fp32.

An explicit ``'bf16'`` on a CPU without fast bf16 runs, but warns once. ``auto`` says once per process
what it chose and why (on stderr).

Switches, for testing and measuring the slow-CPU path on any machine:

* ``FERLAB_NO_FAST_BF16=1``: ferlab believes the CPU lacks fast bf16 (policy only; torch is unchanged);
* ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``: torch itself runs like an AVX2-only CPU; the
  policy reads them too, so ``auto`` then picks fp32 as it would on such a CPU.
"""

from __future__ import annotations

import contextlib
import sys
import warnings

from ..errors import ConfigError
from ..hardware import FAST_BF16_ENV, cpu_info

__all__ = ["FAST_BF16_ENV", "PRECISIONS", "autocast_context", "cpu_has_fast_bf16", "resolve_precision"]

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_said: set = set()


def cpu_has_fast_bf16() -> bool:
    """True when bf16 is fast on this CPU (native AVX512-BF16 or AMX, and torch allowed to use it)."""
    return cpu_info().fast_bf16


def _say_once(msg: str) -> None:
    if msg not in _said:
        _said.add(msg)
        print(f"ferlab: {msg}", file=sys.stderr, flush=True)


def resolve_precision(precision: str, device="cpu", *, quiet: bool = False) -> str:
    """``'auto'`` -> ``'fp16'`` on CUDA, ``'bf16'`` on a CPU with fast bf16, else ``'fp32'``.

    Says once per process what ``auto`` chose and why (unless ``quiet``); warns once when bf16 is asked
    for explicitly on a CPU where it is slow. Explicit choices are returned unchanged.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    dev = str(device).split(":")[0]
    info = cpu_info() if dev == "cpu" else None
    if precision == "auto":
        if dev == "cuda":
            chosen, why = "fp16", "CUDA device"
        elif dev == "cpu":
            chosen, why = ("bf16" if info.fast_bf16 else "fp32"), info.reason
        else:
            chosen, why = "fp32", f"device {dev}"
        if not quiet:
            _say_once(f"precision auto -> {chosen} ({why}; CPU: {cpu_info().model})")
        return chosen
    if precision == "bf16" and info is not None and not info.fast_bf16:
        key = f"bf16-slow:{info.reason}"
        if key not in _said:
            _said.add(key)
            warnings.warn(
                f"bf16 was asked for on a CPU without fast bf16 ({info.reason}); it runs, but expect it to be "
                "several times slower than fp32 (use precision 'auto' or 'fp32')",
                RuntimeWarning,
                stacklevel=2,
            )
    return precision


def autocast_context(precision: str, device="cpu"):
    """The autocast context for a *resolved* precision (a null context for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=str(device).split(":")[0], dtype=dtype)


def _reset_for_tests() -> None:
    """Forget the cached CPU verdict and what was said (tests change the environment)."""
    cpu_info.cache_clear()
    _said.clear()
