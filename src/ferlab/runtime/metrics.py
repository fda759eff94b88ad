"""Classification metrics (scikit-learn) plus calibration and the repeated-run statistics of Chen & Chen 2024 (VGG16 + GCCA)."""

from __future__ import annotations

import itertools

import numpy as np


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins: sum_b |B|/n * |acc(B) - conf(B)|."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def classification_metrics(y: np.ndarray, probs: np.ndarray, classes) -> dict:
    """Accuracy, macro/weighted F1, per-class precision/recall/F1/support, confusion matrix, ECE, NLL."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y = np.asarray(y)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(1)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(y, pred, labels=labels)
    nll = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean()) if len(y) else float("nan")
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, pred)) if len(y) else float("nan"),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=labels, average="weighted", zero_division=0)),
        "ece": expected_calibration_error(probs, y),
        "nll": nll,
        "per_class": {
            c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, c in enumerate(classes)
        },
        "confusion": cm.tolist(),
        "classes": list(classes),
    }


def acc_sta(accuracies) -> tuple[float, float]:
    """Chen & Chen 2024 (VGG16 + GCCA) eq. 8-9: Acc = mean of N run accuracies, Sta = their population standard deviation."""
    a = np.asarray(accuracies, dtype=np.float64)
    return float(a.mean()), float(np.sqrt(((a - a.mean()) ** 2).mean()))
