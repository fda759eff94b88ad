"""The timing helpers every benchmark uses: a warm-up, rounds of at least ``min_time`` seconds, medians;
wall and CPU time side by side (speed on a 2-core machine is only comparable as a ratio measured in one run)."""

from __future__ import annotations

import statistics
import time


def timed(fn, *args) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of one call ``fn(*args)``."""
    t, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t, time.process_time() - c


def median_rate(fn, n_items: int, repeats: int, min_time: float = 0.5) -> float:
    """Median items/s of ``fn`` (which processes ``n_items`` per call) over ``repeats`` timed rounds, after one
    warm-up call (oneDNN primitive creation, lazy imports); each round calls ``fn`` until ``min_time`` passed."""
    fn()
    rates = []
    for _ in range(repeats):
        t, k = time.perf_counter(), 0
        while True:
            fn()
            k += 1
            dt = time.perf_counter() - t
            if dt >= min_time:
                break
        rates.append(n_items * k / dt)
    return statistics.median(rates)
