"""A run's per-epoch history, ``<run_dir>/metrics.csv`` (written by the Trainer), read back without torch."""

from __future__ import annotations

import csv
from pathlib import Path

METRICS_FILE = "metrics.csv"


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The rows of a run's ``metrics.csv`` (strings, one dict per epoch); [] when the run has none yet."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def best_val_acc(run_dir: str | Path) -> float | None:
    """The highest validation accuracy over a run's epochs, whatever it monitored; None without any."""
    accs = [float(r["val_acc"]) for r in read_metrics(run_dir) if r.get("val_acc")]
    return max(accs) if accs else None
