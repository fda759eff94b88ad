"""Building and studying ensembles: greedy member selection, disagreement, snapshot members, the ensemble
study of Berindeie 2024 (FER ensembles) (:func:`run_ensemble`) and its report.

The ensemble *model* (combination rules, fitted weights, saving and loading) is
:mod:`ferlab.runtime.ensemble`: a model file like any other, loaded by :func:`ferlab.runtime.files.load_model`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import write_atomic
from ..runtime.combine import _acc_nll, canonical_method, combine_probs, fit_weights
from ..runtime.ensemble import Ensemble, load_ensemble, save_ensemble  # noqa: F401  (the model, re-exported)
from ..tables import markdown_table


def greedy_select(
    probs, labels, method: str = "mean", replacement: bool = True, max_size: int | None = None
) -> dict:
    """Caruana-style forward selection on cached validation probabilities ``[M, N, C]``.

    Start from the empty ensemble; at each step add the candidate whose addition gives the highest
    validation accuracy of the combined ensemble (``method``; ties: lower NLL, then lower index). Stop when
    no candidate raises the accuracy strictly, or at ``max_size`` picks. With ``replacement=True``
    (Caruana's default) a member may be picked again, which weights it: the result's ``weights`` are the
    pick counts divided by the number of picks. Returns ``bag`` (the picks in order), ``selected`` (distinct
    member indices, ascending), ``weights`` (per selected member), ``counts`` (per pool member) and
    ``history`` (validation accuracy after each pick).
    """
    method = "mean" if canonical_method(method) == "weighted" else canonical_method(method)
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    m = p.shape[0]
    bag: list[int] = []
    history: list[float] = []
    best_acc = -1.0
    while max_size is None or len(bag) < max_size:
        cands = [i for i in range(m) if replacement or i not in bag]
        if not cands:
            break
        scored = []
        for i in cands:
            counts = np.bincount([*bag, i], minlength=m)
            keep = counts > 0
            acc, nll = _acc_nll(combine_probs(p[keep], method, counts[keep]), y)
            scored.append((-acc, nll, i))
        neg_acc, _nll, pick = min(scored)
        if -neg_acc <= best_acc:
            break
        best_acc = -neg_acc
        bag.append(pick)
        history.append(best_acc)
    counts = np.bincount(bag, minlength=m)
    selected = [int(i) for i in np.flatnonzero(counts)]
    return {
        "bag": bag,
        "selected": selected,
        "weights": (counts[selected] / counts.sum()).tolist(),
        "counts": counts.tolist(),
        "history": history,
        "replacement": replacement,
        "method": method,
    }


def disagreement_matrix(probs) -> np.ndarray:
    """``D[i, j]``: the fraction of samples on which members ``i`` and ``j`` predict different classes."""
    pred = np.asarray(probs).argmax(-1)
    return (pred[:, None, :] != pred[None, :, :]).mean(-1)


def snapshot_members(
    run_dir: str | Path, epochs=None, include_best: bool = True, include_last: bool = False
) -> list[Path]:
    """A run's snapshot-ensemble members: its ``epoch_XXX.pt`` checkpoints (by epoch) plus ``best.pt``.

    Snapshots come from the ``snapshot_epochs`` training option (Berindeie 2024 (FER ensembles): epochs 30-80 every 10 under a
    cyclic learning rate). ``epochs`` keeps only those epoch numbers. ``best.pt`` (best validation metric) is
    added unless it is the same epoch as a listed snapshot; ``include_last`` adds ``last.pt`` likewise.
    Berindeie 2024 (FER ensembles) also used a "best test" checkpoint: ferlab never selects on the test split, so there is none.
    """
    from ..runtime.files import load_checkpoint, snapshot_paths

    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"run folder {run} not found")
    snaps = [(e, p) for e, p in snapshot_paths(run).items() if epochs is None or e in set(epochs)]
    out = [p for _, p in snaps]
    seen = {e for e, _ in snaps}
    for name, want in (("best.pt", include_best), ("last.pt", include_last)):
        if want and (run / name).is_file():
            epoch = load_checkpoint(run / name).get("epoch")
            if epoch not in seen:
                out.append(run / name)
                seen.add(epoch)
    if not out:
        raise ConfigError(f"{run}: no epoch_*.pt snapshots or best.pt (train with snapshot_epochs=[...])")
    return out


# -- evaluation and report -------------------------------------------------------------------------------------
def _prepare_split(split, classes, data_config):
    """(uint8 images, labels in ``classes``' indices, left-out counts) for an in-memory evaluation."""
    from ..labels import remap

    if not split.in_memory:
        split = split.load(size=tuple(data_config.input_size[1:]), grayscale=data_config.color == "gray")
    y = split.labels
    left_out = {}
    if tuple(split.classes) != tuple(classes):
        y = remap(split.labels, split.classes, classes)
        keep = y >= 0
        if not keep.any():
            raise ConfigError(f"no class of the split {split.classes} is known to the ensemble {classes}")
        left_out = {
            c: int((split.labels[~keep] == i).sum()) for i, c in enumerate(split.classes) if c not in classes
        }
        split, y = split.subset(keep), y[keep]
    return split.images, np.asarray(y), left_out


def _member_scores(pool, ds, split: str, **kw):
    """Every member's probabilities ``[M, N, C]`` on a dataset split, the seconds each took, the labels and
    the left-out class counts (:func:`_prepare_split`)."""
    images, y, left_out = _prepare_split(ds.split(split), pool.classes, pool.data_config)
    probs, secs = pool.member_probs(images, return_times=True, **kw)
    return probs, secs, y, left_out


def _metrics(probs, y, classes) -> dict:
    from ..runtime.metrics import classification_metrics

    m = classification_metrics(y, probs, classes)
    return {k: m[k] for k in ("n", "accuracy", "macro_f1", "weighted_f1", "ece", "nll")}


def run_ensemble(
    members,
    dataset: str = "fer2013",
    split: str = "test",
    fit_split: str = "val",
    method: str = "mean",
    greedy: bool = False,
    replacement: bool = True,
    objective: str = "nll",
    tta: str = "none",
    batch_size: int = 256,
    precision: str = "fp32",
    data_dir=None,
    progress: bool = False,
) -> tuple[Ensemble, dict]:
    """Build, fit (on ``fit_split``) and evaluate (on ``split``) an ensemble; returns it and its report.

    ``members`` is the candidate pool (models or paths). ``greedy`` selects from it with
    :func:`greedy_select` on ``fit_split``; ``method='weighted'`` fits the weights there (:func:`fit_weights`).
    Every pool member is also scored on ``split``, so the report compares the ensemble with each of them.
    """
    from ..data import load_dataset
    from ..runtime.precision import resolve_precision

    method = canonical_method(method)
    pool = Ensemble(members)
    ds = load_dataset(dataset, data_dir)
    kw = {"tta": tta, "batch_size": batch_size, "progress": progress, "precision": precision}
    probs, secs, y, left_out = _member_scores(pool, ds, split, **kw)
    m = len(pool)
    selected, weights, selection, fit = list(range(m)), np.full(m, 1.0 / m), None, None
    if greedy or method == "weighted":
        fprobs, _, fy, _ = _member_scores(pool, ds, fit_split, **kw)
        if greedy:
            selection = greedy_select(fprobs, fy, method, replacement)
            selected, weights = selection["selected"], np.asarray(selection["weights"])
        if method == "weighted":
            weights = fit_weights(fprobs[selected], fy, objective)
        fit = {
            "split": fit_split,
            "objective": objective if method == "weighted" else None,
            "members_accuracy": [_acc_nll(p, fy)[0] for p in fprobs],
            "ensemble": _metrics(combine_probs(fprobs[selected], method, weights), fy, pool.classes),
        }
    ens = Ensemble([pool.members[i] for i in selected], method, weights, pool.classes,
                   [pool.names[i] for i in selected])  # fmt: skip
    t = time.perf_counter()
    eprobs = combine_probs(probs[selected], method, weights)
    combine_s = time.perf_counter() - t
    n = max(len(y), 1)
    full_w = np.zeros(m)
    full_w[selected] = ens.weights
    rows = []
    for i, (mod, name) in enumerate(zip(pool.members, pool.names)):
        rows.append({"index": i, "name": name, "model": getattr(mod, "model_name", type(mod).__name__),
                     "weight": float(full_w[i]), "params": sum(p.numel() for p in mod.parameters()),
                     "ms_per_image": 1000 * secs[i] / n, **_metrics(probs[i], y, pool.classes)})  # fmt: skip
    ens_row = {"name": f"ensemble ({method})", "model": "ensemble", "weight": 1.0, "params": ens.num_params,
               "ms_per_image": sum(rows[i]["ms_per_image"] for i in selected) + 1000 * combine_s / n,
               **_metrics(eprobs, y, pool.classes)}  # fmt: skip
    best = max(rows, key=lambda r: r["accuracy"])
    report = {
        "dataset": dataset,
        "split": split,
        "classes": list(pool.classes),
        "method": method,
        "tta": tta,
        "precision": resolve_precision(precision),
        "left_out_unknown_classes": left_out,
        "members": rows,
        "selected": selected,
        "weights": ens.weights.tolist(),
        "ensemble": ens_row,
        "gain": {
            "best_member": best["name"],
            "accuracy_vs_best_member": ens_row["accuracy"] - best["accuracy"],
            "accuracy_vs_mean_member": ens_row["accuracy"] - float(np.mean([r["accuracy"] for r in rows])),
            "params_ratio_vs_best_member": ens_row["params"] / max(best["params"], 1),
            "latency_ratio_vs_best_member": ens_row["ms_per_image"] / max(best["ms_per_image"], 1e-9),
        },
        "disagreement": disagreement_matrix(probs).tolist(),
        "selection": selection,
        "fit": fit,
    }
    return ens, report


def _ms(v: float) -> str:
    """ms/image, or '-' where not measured here (a cached score from another CPU or thread count)."""
    return "-" if v is None or not np.isfinite(v) else f"{v:.2f}"


def markdown_ensemble_report(r: dict) -> str:
    """The report as Markdown: member/ensemble table, gain against cost, disagreement matrix."""
    title = f"# Ensemble ({r['method']}) on {r['dataset']}/{r['split']} (TTA {r['tta']})"
    cells = [[f"m{row['index']}" if "index" in row else "**all**", row["name"], row["model"], f"{row['weight']:.3f}",
              f"{row['params']:,}", f"{row['ms_per_image']:.3f}", f"{100 * row['accuracy']:.2f}",
              f"{row['macro_f1']:.4f}", f"{row['nll']:.4f}", f"{row['ece']:.4f}"]
             for row in [*r["members"], r["ensemble"]]]  # fmt: skip
    lines = [title, "", markdown_table(["#", "member", "model", "weight", "params", "ms/image", "accuracy",
                                        "macro F1", "NLL", "ECE"], cells, "rllrrrrrrr")]  # fmt: skip
    g = r["gain"]
    lines += ["", f"- gain: {100 * g['accuracy_vs_best_member']:+.2f} pp accuracy over the best member "
              f"({g['best_member']}), {100 * g['accuracy_vs_mean_member']:+.2f} pp over the members' mean",
              f"- cost: {g['params_ratio_vs_best_member']:.2f}x the parameters and "
              f"{g['latency_ratio_vs_best_member']:.2f}x the latency of the best member (measured, batched)"]  # fmt: skip
    if r.get("selection"):
        s = r["selection"]
        lines.append(f"- greedy selection ({'with' if s['replacement'] else 'without'} replacement) on "
                     f"{r['fit']['split']}: picks {[f'm{i}' for i in s['bag']]}, validation accuracy "
                     f"{' -> '.join(f'{100 * a:.2f}' for a in s['history'])}")  # fmt: skip
    if r.get("fit"):
        f = r["fit"]
        what = f"weights fitted ({f['objective']})" if f["objective"] else "selection"
        lines.append(f"- {what} on {f['split']}: ensemble accuracy {100 * f['ensemble']['accuracy']:.2f}%, "
                     f"NLL {f['ensemble']['nll']:.4f}")  # fmt: skip
        if f["split"] == r["split"]:
            lines.append("- warning: fitted and evaluated on the same split (optimistic)")
    d = r["disagreement"]
    names = [f"m{i}" for i in range(len(d))]
    lines += ["", "Disagreement (fraction of images where two members' predictions differ)", "",
              markdown_table(["", *names], [[n, *(f"{v:.3f}" for v in row)] for n, row in zip(names, d)],
                             "l" + "r" * len(names))]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_disagreement(d, names, path: str | Path, title: str = "") -> Path:
    """The pairwise disagreement matrix as a PNG heat map."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    d = np.asarray(d)
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * k, 1.2 + 0.7 * k))
    im = ax.imshow(d, cmap="Oranges", vmin=0, vmax=max(float(d.max()), 1e-6))
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{d[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if d[i, j] > 0.6 * d.max() else "black")  # fmt: skip
    ax.set_xticks(range(k), names, rotation=45, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_title(title or "pairwise disagreement")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def write_ensemble_report(r: dict, out_dir: str | Path, stem: str = "ensemble") -> dict:
    """``<stem>.json``, ``<stem>.md`` and ``<stem>_disagreement.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(json.dumps(r, indent=1), out / f"{stem}.json")
    write_atomic(markdown_ensemble_report(r), out / f"{stem}.md")
    names = [f"m{i}" for i in range(len(r["disagreement"]))]
    png = plot_disagreement(r["disagreement"], names, out / f"{stem}_disagreement.png",
                            f"disagreement on {r['dataset']}/{r['split']}")  # fmt: skip
    return {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": png}


# -- the ensemble study ------------------------------------------------------------------------------------------
#: the combinations the study compares on every pool: (label, greedy selection first, fitted weights)
STUDY_COMBINATIONS = (("mean of all", False, False), ("weighted, all", False, True),
                      ("greedy, mean", True, False), ("greedy, weighted", True, True))  # fmt: skip


def ensemble_study(
    pools: dict,
    dataset: str = "fer2013",
    split: str = "test",
    fit_split: str = "val",
    objective: str = "nll",
    tta: str = "none",
    batch_size: int = 256,
    precision: str = "fp32",
    data_dir=None,
    progress: bool = False,
    cache_dir=None,
) -> dict:
    """Paper 004's ensemble study (Berindeie 2024): several pools of models, every model scored once.

    ``pools`` maps a pool's name to ``{member name: model or path}``; a model may be in several pools (e.g.
    the paper's members with and without ferlab's ``default``, or one run's snapshots) and is evaluated
    once. On each pool the study combines the probabilities of all members by their mean and with weights
    fitted on ``fit_split`` (``objective``), and after Caruana's greedy selection on ``fit_split`` (with
    replacement) by the picks' mean and with fitted weights (:data:`STUDY_COMBINATIONS`). Every
    combination is reported on ``split`` against the pool's best member (chosen on ``fit_split``, as a
    user without the test labels would; the best on ``split`` is given too). Nothing is fitted or selected
    on ``split``. Returns the report (members, combinations, the members' pairwise disagreement on ``split``).
    ``cache_dir``: every member's probabilities go through the content-addressed cache there
    (:mod:`ferlab.runtime.predcache`), so rerunning the study, or the zoo table before it, scores no model twice.
    """
    from ..data import load_dataset
    from ..runtime.precision import resolve_precision

    if not pools or not all(pools.values()):
        raise ConfigError("the ensemble study needs at least one pool with at least one member")
    names: list[str] = []
    refs: list = []
    for members in pools.values():
        for name, ref in members.items():
            if name in names:
                if refs[names.index(name)] is not ref and str(refs[names.index(name)]) != str(ref):
                    raise ConfigError(f"two different models are both named {name!r} in the ensemble study")
                continue
            names.append(name)
            refs.append(ref)
    everyone = Ensemble(refs, names=names)
    ds = load_dataset(dataset, data_dir)
    kw = {"tta": tta, "batch_size": batch_size, "progress": progress, "precision": precision,
          "cache_dir": cache_dir}  # fmt: skip
    probs, secs, y, left_out = _member_scores(everyone, ds, split, **kw)
    fprobs, _, fy, _ = _member_scores(everyone, ds, fit_split, **kw)
    n = max(len(y), 1)
    models = []
    for i, (mod, name) in enumerate(zip(everyone.members, names)):
        models.append({"name": name, "model": getattr(mod, "model_name", type(mod).__name__),
                       "params": sum(p.numel() for p in mod.parameters()), "ms_per_image": 1000 * secs[i] / n,
                       "fit_accuracy": _acc_nll(fprobs[i], fy)[0], **_metrics(probs[i], y, everyone.classes)})  # fmt: skip
    rows = []
    for pool_name, members in pools.items():
        idx = [names.index(m) for m in members]
        best_fit = max(idx, key=lambda i: models[i]["fit_accuracy"])
        best_test = max(idx, key=lambda i: models[i]["accuracy"])
        for label, greedy, weighted in STUDY_COMBINATIONS:
            chosen, w, picks = list(idx), np.full(len(idx), 1.0 / len(idx)), None
            if greedy:
                sel = greedy_select(fprobs[idx], fy, "mean", replacement=True)
                chosen, w, picks = [idx[i] for i in sel["selected"]], np.asarray(sel["weights"]), sel["bag"]
            if weighted and len(chosen) > 1:
                w = fit_weights(fprobs[chosen], fy, objective)
            p = combine_probs(probs[chosen], "mean", w)
            m = _metrics(p, y, everyone.classes)
            rows.append({
                "pool": pool_name, "combination": label, "members": [names[i] for i in chosen],
                "weights": [float(v) for v in w], "greedy_picks": None if picks is None else [names[idx[i]] for i in picks],
                "fit_accuracy": _acc_nll(combine_probs(fprobs[chosen], "mean", w), fy)[0],
                "params": sum(models[i]["params"] for i in chosen),
                "ms_per_image": sum(models[i]["ms_per_image"] for i in chosen), **m,
                "best_member": names[best_fit], "gain_vs_best_member": m["accuracy"] - models[best_fit]["accuracy"],
                "best_member_on_split": names[best_test],
                "gain_vs_best_member_on_split": m["accuracy"] - models[best_test]["accuracy"],
            })  # fmt: skip
    d = disagreement_matrix(probs)
    return {
        "dataset": dataset, "split": split, "fit_split": fit_split, "objective": objective, "tta": tta,
        "precision": resolve_precision(precision), "classes": list(everyone.classes),
        "left_out_unknown_classes": left_out, "pools": {k: list(v) for k, v in pools.items()},
        "models": models, "combinations": rows, "disagreement": d.tolist(),
    }  # fmt: skip


def markdown_ensemble_study(r: dict) -> str:
    """The study as Markdown: the models, every pool's combinations against its best member, disagreement."""

    def pct(v):
        return f"{100 * v:.2f} %"

    lines = [
        f"Models ({r['dataset']} {r['split']}; fit split: {r['fit_split']}; TTA {r['tta']}; {r['precision']})", "",
        markdown_table(["model", "architecture", "params", "ms/image", r["split"], r["fit_split"], "macro-F1", "NLL"],
                       [[m["name"], m["model"], f"{m['params'] / 1e6:.2f} M", _ms(m["ms_per_image"]),
                         pct(m["accuracy"]), pct(m["fit_accuracy"]), f"{m['macro_f1']:.3f}", f"{m['nll']:.3f}"]
                        for m in r["models"]], "llrrrrrr"),
        "", "Combinations (selected and weighted on the fit split, scored on the split; gain: accuracy minus the "
        "pool's best member, chosen on the fit split)", "",
    ]  # fmt: skip
    cells = []
    for c in r["combinations"]:
        who = ", ".join(f"{n} {w:.2f}" for n, w in zip(c["members"], c["weights"]))
        cells.append([c["pool"], c["combination"], who, pct(c["accuracy"]), pct(c["fit_accuracy"]), f"{c['macro_f1']:.3f}",
                      f"{c['nll']:.3f}", f"{100 * c['gain_vs_best_member']:+.2f} ({c['best_member']})",
                      f"{c['params'] / 1e6:.1f} M", _ms(c["ms_per_image"])])  # fmt: skip
    lines.append(markdown_table(["pool", "combination", "members and weights", r["split"], r["fit_split"], "macro-F1",
                                 "NLL", "gain (pp)", "params", "ms/image"], cells, "lllrrrrlrr"))  # fmt: skip
    d = np.asarray(r["disagreement"])
    names = [m["name"] for m in r["models"]]
    k = len(names)
    off = d[~np.eye(k, dtype=bool)] if k > 1 else np.zeros(1)
    lines += ["", f"Disagreement on {r['split']}: the fraction of faces two models label differently "
              f"(mean over pairs {off.mean():.3f})", "",
              markdown_table(["", *names], [[n, *(f"{v:.3f}" for v in row)] for n, row in zip(names, d)],
                             "l" + "r" * k)]  # fmt: skip
    return "\n".join(lines) + "\n"
