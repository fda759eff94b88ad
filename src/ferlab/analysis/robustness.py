"""Robustness of checkpoints to controlled corruptions (``ferlab robustness``).

Every (corruption, severity) of :data:`ferlab.analysis.corruptions.CORRUPTIONS` is applied once to the
same seeded sample of uint8 crops, and every checkpoint classifies the *same* corrupted images through its
own evaluation transform (the one ``ferlab evaluate`` uses). Reported: accuracy and macro-F1 per
corruption and severity, the drop from the clean accuracy, and the papers' buckets — rotation within /
beyond ±30°, brightness and contrast within ±30 % / beyond ±50 % — plus the mean over each grid.

Outputs (``write_robustness``): ``robustness.md``, ``robustness.csv`` (one row per checkpoint, corruption
and severity), ``robustness_buckets.csv``, ``robustness.json`` (everything) and ``robustness.png`` (accuracy
against severity, one panel per family, the clean accuracy dashed).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError, unknown_name
from ..io import atomic_path, write_atomic
from ..tables import markdown_table
from .corruptions import CORRUPTIONS, corrupt


def _scores(y: np.ndarray, keep: np.ndarray, probs: np.ndarray, n_classes: int) -> dict:
    from sklearn.metrics import f1_score

    pred = probs[keep].argmax(1)
    yk = y[keep]
    return {
        "accuracy": float((pred == yk).mean()) if len(yk) else float("nan"),
        "macro_f1": float(f1_score(yk, pred, labels=range(n_classes), average="macro", zero_division=0)),
    }


def run_robustness(
    models,
    images: np.ndarray,
    labels: np.ndarray,
    classes,
    corruptions=None,
    seed: int = 0,
    batch_size: int = 256,
    precision: str = "fp32",
    progress: bool = False,
) -> dict:
    """Accuracy of each ``(label, model)`` on every corruption and severity of ``images``.

    Args:
        models: ``[(label, model)]``; each model has ``data_config`` and ``classes``.
        images: uint8 crops ``[N,H,W]`` or ``[N,H,W,3]``; labels index ``classes`` (the split's classes,
            mapped by name to each model's classes; images of classes a model lacks are left out for it).
        corruptions: names to run (default all).
        seed: the corruption seed (same seed -> same corrupted images).
    """
    from tqdm.auto import tqdm

    from ..labels import remap
    from ..runtime.predict import predict_probs

    names = list(corruptions or CORRUPTIONS)
    for n in names:
        if n not in CORRUPTIONS:
            raise unknown_name("corruption", n, CORRUPTIONS)
    if not models:
        raise ConfigError("robustness needs at least one checkpoint")
    images = np.asarray(images)
    targets = {}
    for label, m in models:
        mc = tuple(getattr(m, "classes", classes))
        y = labels if tuple(classes) == mc else remap(labels, classes, mc)
        keep = y >= 0
        if not keep.any():
            raise ConfigError(f"{label}: no class of {tuple(classes)} is known to the model {mc}")
        targets[label] = (y, keep, len(mc))

    def score_all(imgs) -> dict:
        out = {}
        for label, m in models:
            p = predict_probs(m, imgs, batch_size=batch_size, precision=precision)
            out[label] = _scores(*targets[label][:2], p, targets[label][2])
        return out

    clean = score_all(images)
    rows = []
    points = [(n, s) for n in names for s in CORRUPTIONS[n].severities]
    for name, sev in tqdm(points, desc="robustness", disable=not progress, leave=False):
        c = CORRUPTIONS[name]
        res = (
            clean
            if c.identity is not None and sev == c.identity
            else score_all(corrupt(images, name, sev, seed))
        )
        for label, _ in models:
            r = res[label]
            rows.append({"checkpoint": label, "corruption": name, "severity": float(sev), "unit": c.unit,
                         "accuracy": r["accuracy"], "macro_f1": r["macro_f1"],
                         "drop": clean[label]["accuracy"] - r["accuracy"]})  # fmt: skip
    buckets = []
    for label, _ in models:
        for name in names:
            c = CORRUPTIONS[name]
            mine = [r for r in rows if r["checkpoint"] == label and r["corruption"] == name]
            groups = {"mean": lambda s, c=c: c.identity is None or s != c.identity, **c.buckets}
            for b, pred in groups.items():
                sel = [r for r in mine if pred(r["severity"])]
                if sel:
                    buckets.append({"checkpoint": label, "corruption": name, "bucket": b,
                                    "severities": [r["severity"] for r in sel],
                                    "accuracy": float(np.mean([r["accuracy"] for r in sel]))})  # fmt: skip
    return {
        "seed": int(seed),
        "n": len(images),
        "image_shape": list(images.shape[1:]),
        "precision": precision,
        "checkpoints": [label for label, _ in models],
        "clean": clean,
        "corruptions": {
            n: {
                "unit": CORRUPTIONS[n].unit,
                "family": CORRUPTIONS[n].family,
                "severities": [float(s) for s in CORRUPTIONS[n].severities],
                "identity": CORRUPTIONS[n].identity,
            }
            for n in names
        },
        "rows": rows,
        "buckets": buckets,
    }


def _pct(v: float) -> str:
    return "-" if v != v else f"{100 * v:.2f}"


def robustness_markdown(res: dict, title: str = "Robustness") -> str:
    """The buckets summary and one accuracy-per-severity table per corruption (accuracy in %)."""
    ck = res["checkpoints"]
    right = "r" * len(ck)
    clean = [["accuracy", *(_pct(res["clean"][c]["accuracy"]) for c in ck)],
             ["macro F1", *(f"{res['clean'][c]['macro_f1']:.4f}" for c in ck)]]  # fmt: skip
    by = {(b["checkpoint"], b["corruption"], b["bucket"]): b for b in res["buckets"]}
    buckets = []
    for name in res["corruptions"]:
        for b in [
            x["bucket"] for x in res["buckets"] if x["checkpoint"] == ck[0] and x["corruption"] == name
        ]:
            sev = ", ".join(f"{s:g}" for s in by[(ck[0], name, b)]["severities"])
            buckets.append([name, b, sev, *(_pct(by[(c, name, b)]["accuracy"]) if (c, name, b) in by else "-"
                                             for c in ck)])  # fmt: skip
    lines = [f"# {title}", "", f"- images: {res['n']} (shape {'x'.join(map(str, res['image_shape']))}), "
             f"corruption seed {res['seed']}, precision {res['precision']}",
             "- the same corrupted images for every checkpoint; accuracy in %; buckets average the accuracies "
             "of the severities they hold (the clean point excluded)", "",
             "## Clean", "", markdown_table(["", *ck], clean, "l" + right),
             "", "## Buckets", "", markdown_table(["corruption", "bucket", "severities", *ck], buckets, "lll" + right)]  # fmt: skip
    acc = {(r["checkpoint"], r["corruption"], r["severity"]): r["accuracy"] for r in res["rows"]}
    for name, info in res["corruptions"].items():
        sev = [[f"{s:g}", *(_pct(acc[(c, name, s)]) for c in ck)] for s in info["severities"]]
        lines += ["", f"## {name} ({info['unit']})", "", markdown_table(["severity", *ck], sev, "r" + right)]
    return "\n".join(lines) + "\n"


def plot_robustness(res: dict, path: str | Path) -> Path:
    """Accuracy against severity: one panel per family, a line per corruption and checkpoint."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    families = list(dict.fromkeys(info["family"] for info in res["corruptions"].values()))
    ncol = min(3, len(families))
    nrow = -(-len(families) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.8 * nrow), squeeze=False)
    styles = ["-", "--", ":", "-."]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    acc = {(r["checkpoint"], r["corruption"], r["severity"]): r["accuracy"] for r in res["rows"]}
    for ax, fam in zip(axes.flat, families):
        names = [n for n, info in res["corruptions"].items() if info["family"] == fam]
        units = sorted({res["corruptions"][n]["unit"] for n in names})
        for j, ckpt in enumerate(res["checkpoints"]):
            ls = styles[j % len(styles)]
            clean = res["clean"][ckpt]["accuracy"]
            ax.axhline(100 * clean, color="grey", ls=ls, lw=0.8, alpha=0.7)
            for i, n in enumerate(names):
                info = res["corruptions"][n]
                xs = list(info["severities"])
                ys = [100 * acc[(ckpt, n, s)] for s in xs]
                if info["identity"] is None and fam in ("occlusion", "blur"):  # severity 0 = the clean image
                    xs, ys = [0.0, *xs], [100 * clean, *ys]
                lab = n if len(units) == 1 else f"{n} ({info['unit']})"
                lab = lab if len(res["checkpoints"]) == 1 else f"{lab} [{ckpt}]"
                ax.plot(xs, ys, ls=ls, marker="o", ms=3, color=colours[i % len(colours)], label=lab)
        ax.set_xlabel(units[0] if len(units) == 1 else "severity (see legend)")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(fam)
        if fam == "jpeg":
            ax.invert_xaxis()  # lower quality is worse: severity grows to the right
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(families) :]:
        ax.axis("off")
    fig.suptitle(f"accuracy under corruption ({res['n']} images, seed {res['seed']}; grey: clean accuracy)")
    return save_figure(fig, path)


def write_robustness(res: dict, out_dir: str | Path, title: str = "Robustness") -> dict:
    """Markdown, CSVs, JSON and the line plot of a :func:`run_robustness` result into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"md": out / "robustness.md", "csv": out / "robustness.csv",
             "buckets_csv": out / "robustness_buckets.csv", "json": out / "robustness.json",
             "png": out / "robustness.png"}  # fmt: skip
    write_atomic(robustness_markdown(res, title), files["md"])
    with atomic_path(files["csv"]) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["checkpoint", "corruption", "severity", "unit", "accuracy", "macro_f1", "drop_vs_clean"])
        for label in res["checkpoints"]:
            w.writerow([label, "clean", "", "", f"{res['clean'][label]['accuracy']:.6f}",
                        f"{res['clean'][label]['macro_f1']:.6f}", "0"])  # fmt: skip
        for r in res["rows"]:
            w.writerow([r["checkpoint"], r["corruption"], f"{r['severity']:g}", r["unit"], f"{r['accuracy']:.6f}",
                        f"{r['macro_f1']:.6f}", f"{r['drop']:.6f}"])  # fmt: skip
    with atomic_path(files["buckets_csv"]) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["checkpoint", "corruption", "bucket", "severities", "accuracy"])
        for b in res["buckets"]:
            sev = " ".join(f"{s:g}" for s in b["severities"])
            w.writerow([b["checkpoint"], b["corruption"], b["bucket"], sev, f"{b['accuracy']:.6f}"])
    write_atomic(json.dumps(res, indent=1), files["json"])
    plot_robustness(res, files["png"])
    return files


#: Fields that must agree for two robustness results to share one table (the same corrupted images).
_SAME = ("seed", "n", "image_shape", "precision", "dataset", "split", "limit")


def merge_robustness(results) -> dict:
    """One result from several :func:`run_robustness` results (e.g. a model evaluated in a later run).

    The results must come from the same sample and corruptions (same seed, split, size, limit, precision and
    severity grids), so every model saw the same corrupted images; checkpoint labels must be distinct.

    Raises:
        ConfigError: the results differ in one of those, or two of them hold the same checkpoint label.
    """
    results = list(results)
    if not results:
        raise ConfigError("nothing to merge: no robustness results given")
    base = results[0]
    merged = {
        k: v
        for k, v in base.items()
        if k not in ("checkpoints", "clean", "rows", "buckets", "checkpoint_paths")
    }
    merged.update(checkpoints=[], clean={}, rows=[], buckets=[], checkpoint_paths=[])
    for i, res in enumerate(results):
        for key in _SAME:
            if res.get(key) != base.get(key):
                raise ConfigError(
                    f"robustness result {i + 1} has {key}={res.get(key)!r}, the first has {base.get(key)!r}: "
                    "only results on the same corrupted images can be merged"
                )
        grids = {k: c["severities"] for k, c in res["corruptions"].items()}
        for name, sev in grids.items():
            if name in base["corruptions"] and base["corruptions"][name]["severities"] != sev:
                raise ConfigError(f"robustness result {i + 1} uses other {name} severities than the first")
        for name, c in res["corruptions"].items():
            merged["corruptions"].setdefault(name, c)
        for label in res["checkpoints"]:
            if label in merged["clean"]:
                raise ConfigError(f"checkpoint {label!r} appears in more than one robustness result")
            merged["checkpoints"].append(label)
            merged["clean"][label] = res["clean"][label]
        merged["rows"] += res["rows"]
        merged["buckets"] += res["buckets"]
        merged["checkpoint_paths"] += res.get("checkpoint_paths", [])
    return merged


def robustness_on_dataset(
    checkpoints,
    dataset: str = "fer2013",
    split: str = "test",
    data_dir=None,
    limit: int | None = None,
    seed: int = 0,
    corruptions=None,
    batch_size: int = 256,
    precision: str = "fp32",
    out_dir=None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """Load checkpoints and a seeded sample of ``dataset/split``, run every corruption, write the tables
    (default ``out_dir``: ``<first run folder>/robustness``). Returns ``(result, files)``."""
    from ._common import expand_checkpoints, load_checkpoints, load_split_sample

    paths = expand_checkpoints(checkpoints)
    models = load_checkpoints(paths)
    sp = load_split_sample(dataset, split, data_dir, limit, seed, [m for _, m in models])
    res = run_robustness(
        models, sp.images, sp.labels, sp.classes, corruptions, seed, batch_size, precision, progress
    )
    res.update(dataset=dataset, split=split, limit=limit, checkpoint_paths=[str(p) for p in paths])
    first = Path(paths[0])
    out = Path(out_dir) if out_dir else (first if first.is_dir() else first.parent) / "robustness"
    files = write_robustness(res, out, f"Robustness on {dataset}/{split}")
    return res, files
