"""Evaluation: a model's metrics on a split (through the one prediction loop, :mod:`.predict`) and reports."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..tables import markdown_table
from .metrics import classification_metrics
from .precision import resolve_precision
from .predict import predict_probs


def evaluate_model(
    model,
    split,
    classes=None,
    tta: str = "none",
    batch_size: int = 256,
    progress: bool = False,
    precision: str = "fp32",
) -> dict:
    """Metrics of ``model`` on an in-memory split, plus the mean inference time per image."""
    from ..labels import remap

    classes = tuple(classes or getattr(model, "classes", split.classes))
    y = split.labels
    unmapped = {}
    if tuple(split.classes) != classes:  # cross-dataset: map through the shared vocabulary
        y = remap(split.labels, split.classes, classes)
        keep = y >= 0
        if not keep.any():
            raise ConfigError(f"no class of the split {split.classes} is known to the model {classes}")
        # images of classes the model cannot predict are left out and counted, never silently scored
        unmapped = {
            c: int((split.labels[~keep] == i).sum()) for i, c in enumerate(split.classes) if c not in classes
        }
        split = split.subset(keep)
        y = y[keep]
    t = time.perf_counter()
    probs = predict_probs(
        model, split.images, batch_size=batch_size, tta=tta, progress=progress, precision=precision
    )
    dt = time.perf_counter() - t
    m = classification_metrics(y, probs, classes)
    m["tta"] = tta
    m["precision"] = getattr(model, "precision", None) or resolve_precision(precision, quiet=True)
    m["left_out_unknown_classes"] = unmapped
    m["ms_per_image"] = 1000 * dt / max(len(y), 1)
    return m


def markdown_report(m: dict, title: str) -> str:
    lines = [f"# {title}", "", f"- images: {m['n']}", f"- accuracy: {100 * m['accuracy']:.2f}%",
             f"- macro F1: {m['macro_f1']:.4f}, weighted F1: {m['weighted_f1']:.4f}",
             f"- ECE: {m['ece']:.4f}, NLL: {m['nll']:.4f}", f"- TTA: {m.get('tta', 'none')}"]  # fmt: skip
    if "ms_per_image" in m:
        lines.append(f"- inference: {m['ms_per_image']:.3f} ms/image (batched, this machine)")
    per_class = [[c, f"{d['precision']:.3f}", f"{d['recall']:.3f}", f"{d['f1']:.3f}", d["support"]]
                 for c, d in m["per_class"].items()]  # fmt: skip
    cls = m["classes"]
    lines += ["", markdown_table(["class", "precision", "recall (per-class acc.)", "F1", "support"], per_class,
                                 "lrrrr"),
              "", "Confusion matrix (rows: true, columns: predicted)", "",
              markdown_table(["", *cls], [[c, *row] for c, row in zip(cls, m["confusion"])],
                             "l" + "r" * len(cls))]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_report(m: dict, out_dir: str | Path, stem: str, title: str) -> dict:
    """JSON + Markdown + confusion-matrix PNG (and CSV) for one evaluation."""
    import io

    from ..io import write_atomic
    from ..plots import plot_confusion

    out = Path(out_dir)
    write_atomic(json.dumps(m, indent=1), out / f"{stem}.json")
    write_atomic(markdown_report(m, title), out / f"{stem}.md")
    buf = io.StringIO()
    np.savetxt(buf, np.array(m["confusion"]), fmt="%d", delimiter=",", header=",".join(m["classes"]))
    write_atomic(buf.getvalue(), out / f"{stem}_confusion.csv")
    plot_confusion(m["confusion"], m["classes"], out / f"{stem}_confusion.png", title)
    return {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}_confusion.png"}
