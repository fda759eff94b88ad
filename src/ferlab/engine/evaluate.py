"""Evaluation: batched prediction with optional test-time augmentation, metrics and reports.

``predict_probs`` is the one prediction loop used by the Trainer's validation, ``ferlab evaluate``,
ensembles and the inference API: uint8 crops -> shared eval transform -> model -> softmax, with
``tta='flip'`` (average with the mirrored face) or ``'tencrop'`` (four corners + centre at 90 % of the
side, resized back, and their mirrors).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..runtime.precision import autocast_context, resolve_precision
from ..transforms import create_transform
from .metrics import classification_metrics

TTA = ("none", "flip", "tencrop")


def tta_views(x: torch.Tensor, tta: str) -> list[torch.Tensor]:
    """The views of a normalised batch averaged by test-time augmentation."""
    if tta in (None, "none"):
        return [x]
    if tta == "flip":
        return [x, x.flip(-1)]
    if tta == "tencrop":
        h, w = x.shape[-2:]
        ch, cw = round(h * 0.9), round(w * 0.9)
        offs = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]
        crops = [
            F.interpolate(x[..., i : i + ch, j : j + cw], size=(h, w), mode="bilinear", align_corners=False)
            for i, j in offs
        ]
        return crops + [c.flip(-1) for c in crops]
    raise ConfigError(f"unknown TTA {tta!r}; valid: {', '.join(TTA)}")


@torch.no_grad()
def predict_probs(
    model,
    images,
    transform=None,
    batch_size: int = 256,
    tta: str = "none",
    device: str = "cpu",
    progress: bool = False,
    precision: str = "fp32",
    channels_last: bool = False,
) -> np.ndarray:
    """Class probabilities ``[N, C]`` for uint8 face crops (array ``[N,H,W(,3)]``).

    ``precision='bf16'`` (or ``'auto'``) runs the model under autocast; with ``channels_last`` the batch
    is laid out NHWC (convert the model too: ``model.to(memory_format=torch.channels_last)``). Both are
    the CPU fast path; fp32 is the exact reference.
    """
    from tqdm.auto import tqdm

    if getattr(model, "is_ensemble", False):  # members need their own transforms (ferlab.ensemble)
        return model.predict_probs(images, tta, batch_size, device, progress, precision, channels_last)
    if not isinstance(model, torch.nn.Module) and hasattr(model, "predict_probs"):  # an ONNX Runtime model
        return model.predict_probs(images, transform, batch_size, tta)
    precision = resolve_precision(precision, device)
    transform = transform or create_transform(model.data_config, is_training=False)
    model.eval()
    out = []
    rng = range(0, len(images), batch_size)
    for i in tqdm(rng, desc="predict", disable=not progress, leave=False):
        x = transform(images[i : i + batch_size]).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(precision, device):
            p = torch.stack([F.softmax(model(v).float(), -1) for v in tta_views(x, tta)]).mean(0)
        out.append(p.cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes), np.float32)


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
    lines += [
        "",
        "| class | precision | recall (per-class acc.) | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for c, d in m["per_class"].items():
        lines.append(f"| {c} | {d['precision']:.3f} | {d['recall']:.3f} | {d['f1']:.3f} | {d['support']} |")
    cls = m["classes"]
    lines += ["", "Confusion matrix (rows: true, columns: predicted)", "", "| | " + " | ".join(cls) + " |",
              "|---|" + "---:|" * len(cls)]  # fmt: skip
    for c, row in zip(cls, m["confusion"]):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_report(m: dict, out_dir: str | Path, stem: str, title: str) -> dict:
    """JSON + Markdown + confusion-matrix PNG (and CSV) for one evaluation."""
    import io

    from ..io import write_atomic
    from .plots import plot_confusion

    out = Path(out_dir)
    write_atomic(json.dumps(m, indent=1), out / f"{stem}.json")
    write_atomic(markdown_report(m, title), out / f"{stem}.md")
    buf = io.StringIO()
    np.savetxt(buf, np.array(m["confusion"]), fmt="%d", delimiter=",", header=",".join(m["classes"]))
    write_atomic(buf.getvalue(), out / f"{stem}_confusion.csv")
    plot_confusion(m["confusion"], m["classes"], out / f"{stem}_confusion.png", title)
    return {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}_confusion.png"}
