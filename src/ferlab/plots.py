"""Pictures a person can look at: training curves and confusion matrices (matplotlib, Agg)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .io import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed); the one way ferlab gets it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110, layout: bool = True) -> Path:
    """Lay out (``tight_layout`` unless ``layout=False``), write (creating the folder) and close a figure."""
    import matplotlib.pyplot as plt

    if layout:
        fig.tight_layout()

    path = Path(path)
    try:
        with atomic_path(path, keep_suffix=True) as tmp:  # same suffix: same image format
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def plot_curves(metrics_csv: str | Path, path: str | Path) -> Path:
    """Loss, accuracy and learning rate per epoch from a run's ``metrics.csv``."""
    plt = pyplot()
    with open(metrics_csv) as f:
        rows = list(csv.DictReader(f))
    ep = [int(r["epoch"]) for r in rows]
    col = lambda k: [float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]  # noqa: E731
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(ep, col("train_loss"), label="train")
    ax[0].plot(ep, col("val_loss"), label="val")
    ax[0].set_title("loss")
    ax[1].plot(ep, col("train_acc"), label="train")
    ax[1].plot(ep, col("val_acc"), label="val")
    ax[1].set_title("accuracy")
    ax[2].plot(ep, col("lr"))
    ax[2].set_title("learning rate")
    for a in ax:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    ax[0].legend()
    ax[1].legend()
    return save_figure(fig, path)


def plot_confusion(cm, classes, path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts in each cell."""
    plt = pyplot()
    cm = np.asarray(cm)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(classes), 0.8 + 0.8 * len(classes)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({cm[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised)")
    return save_figure(fig, path)
