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


def time_runs(fn, repeats: int = 10, warmup: int = 2, max_seconds: float = 20.0, sync=None) -> list[float]:
    """Wall times (s) of ``fn()`` after ``warmup`` calls: ``repeats`` runs, stopping early once
    ``max_seconds`` have been spent timing (at least 3 runs)."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times, start = [], time.perf_counter()
    for i in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
        if i >= 2 and time.perf_counter() - start > max_seconds:
            break
    return times
