"""The zoo table: every run of a training queue measured the same way (``ferlab zoo table``).

For each run of the queue (``queues/zoo_fer2013_cpu.yaml``) that has finished: FER2013 PrivateTest accuracy
plain and with flip TTA (fp32, the exported best-epoch weights), macro-F1, per-class recall, parameters,
GFLOPs at the input it was trained at, training images/s (median over epochs), CPU-minutes (training wall
minutes x threads), epochs and FER2013-epoch equivalents, whether the time budget stopped it, and the
paper's figure beside it. Runs still training or not started get a row that says so. One figure holds all
validation curves against training minutes. Everything is read from the run folders; nothing is trained.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..tables import markdown_table

FER2013_TRAIN = 28_709


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def run_row(cfg, paper: dict, test, tta: bool = True, cache_dir=None) -> dict:
    """The table row of one run (``test``: the FER2013 PrivateTest split, or None to skip evaluation;
    ``cache_dir``: score through the probability cache there, :mod:`ferlab.runtime.predcache`)."""
    from ..engine.history import read_metrics
    from ..engine.queue import run_state
    from ..models.profile import count_flops
    from ..runtime.files import load_model
    from ..runtime.metrics import classification_metrics
    from ..runtime.predcache import cached_predict_probs

    st = run_state(cfg)
    rows = read_metrics(cfg.run_dir)
    row = {"run": cfg.run_name, "model": cfg.model, "state": st["state"], "input": None, "paper": paper,
           "epochs": st.get("epochs"), "train_min": st.get("train_min"), "threads": cfg.threads or 1,
           "budget_min": cfg.max_cpu_minutes or cfg.max_minutes, "best_val_acc": max((_num(r["val_acc"]) for r in rows), default=None)}  # fmt: skip
    row["curve"] = _curve(rows)
    ips = [_num(r.get("img_per_s")) for r in rows]
    row["img_per_s"] = float(np.nanmedian(ips)) if ips else None
    steps = (cfg.limit_train_batches or FER2013_TRAIN // cfg.batch_size) * cfg.batch_size
    # images seen, from metrics.csv (a sub-epoch cut short by the budget saw fewer; older rows: full ones)
    seen = [_num(r.get("train_images")) for r in rows[: st.get("epochs") or 0]]
    row["fer_epochs"] = sum(steps if np.isnan(n) else n for n in seen) / FER2013_TRAIN
    if st["state"] != "done":
        return row
    s = st["summary"]
    row.update(
        budget_reached=bool(s.get("budget_reached")),
        stopped_early=bool(s.get("stopped_early")),
        precision=s.get("precision"),
        cpu=s.get("cpu"),
    )  # fmt: skip  (runs from before it was recorded: None)
    # CPU minutes of the process when recorded; older runs: wall minutes x threads (an upper bound)
    row["cpu_min"] = (
        s["cpu_time_s"] / 60
        if "cpu_time_s" in s
        else (row["train_min"] or 0) * (s.get("threads") or row["threads"])
    )
    weights = cfg.run_dir / "model.safetensors"
    model, classes, info = load_model(weights)
    row["best_epoch"] = (
        int(info.get("epoch", 0)) if str(info.get("epoch", "")).isdigit() else info.get("epoch")
    )
    row["params"] = sum(p.numel() for p in model.parameters())
    row["input"] = "x".join(map(str, model.data_config.input_size))
    row["gflops"] = count_flops(model, model.data_config.input_size) / 1e9
    row["weights_mb"] = weights.stat().st_size / 1e6
    if test is not None:
        y = test.labels
        p = cached_predict_probs(model, test.images, cache_dir, precision="fp32")[0]
        m = classification_metrics(y, p, classes)
        row.update(acc=m["accuracy"], macro_f1=m["macro_f1"],
                   recall={c: d["recall"] for c, d in m["per_class"].items()})  # fmt: skip
        if tta:
            pf = cached_predict_probs(model, test.images, cache_dir, tta="flip", precision="fp32")[0]
            row["acc_flip"] = float((pf.argmax(1) == y).mean())
    return row


def _curve(metrics: list[dict]) -> list[list[float]]:
    """[training minutes, validation accuracy] per epoch (kept in the table's JSON, so it outlives the run)."""
    if not metrics:
        return []
    minutes = [_num(x.get("train_time_total")) / 60 for x in metrics]
    if any(np.isnan(minutes)):  # older runs: cumulative epoch times
        minutes = list(np.cumsum([_num(x.get("epoch_time")) / 60 for x in metrics]))
    return [[round(float(t), 3), _num(x["val_acc"])] for t, x in zip(minutes, metrics)]


def plot_zoo_curves(rows: list[dict], path: str | Path) -> Path:
    """Validation accuracy against training minutes, one line per run (from each row's ``curve``)."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 5))
    for r in rows:
        c = r.get("curve") or []
        if not c:
            continue
        ax.plot([t for t, _ in c], [100 * a for _, a in c], marker="o", ms=3, label=r["model"])
    ax.set_xlabel("training minutes (wall, 1 thread)")
    ax.set_ylabel("PublicTest accuracy (%)")
    ax.set_title("ferlab zoo on FER2013, CPU scale: validation curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return save_figure(fig, path)


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def format_zoo(rows: list[dict], classes) -> str:
    head = ["model", "input", "params", "GFLOPs", "PrivateTest", "flip", "macro-F1", *classes, "train img/s", "CPU-min",
            "epochs (FER2013 equiv.)", "stopped by", "trained on", "paper", "paper dataset, input"]  # fmt: skip
    cells = []
    for r in rows:
        p = r["paper"] or {}
        paper = _fmt(p.get("accuracy"), ".2f") + (" %" if p.get("accuracy") is not None else "")
        pdata = f"{p.get('dataset', '?')}, {p.get('input', '?')}"
        if r["state"] != "done":
            best = r["best_val_acc"]
            state = f"**{r['state']}**" + (f" (best val {100 * best:.2f} % so far)" if best else "")
            cells.append([r["model"], "-", "-", "-", state, "", "", *("" for _ in classes), _fmt(r["img_per_s"], ".0f"),
                          _fmt(r["train_min"], ".0f"), f"{r['epochs'] or 0} ({r['fer_epochs']:.1f})", "", "", paper, pdata])  # fmt: skip
            continue
        why = "budget" if r.get("budget_reached") else "early stop" if r.get("stopped_early") else "epochs"
        rec = [_fmt(100 * r["recall"][c], ".1f") if c in r.get("recall", {}) else "-" for c in classes]
        cells.append([r["model"], r["input"], f"{r['params'] / 1e6:.2f} M", f"{r['gflops']:.3f}",
                      f"{_fmt(100 * r['acc'], '.2f')} %", _fmt(100 * r.get("acc_flip", float("nan")), ".2f", "-") + (" %" if r.get("acc_flip") is not None else ""),
                      f"{r['macro_f1']:.3f}", *rec, _fmt(r["img_per_s"], ".0f"), f"{r['cpu_min']:.0f}",
                      f"{r['epochs']} ({r['fer_epochs']:.1f})", why, _trained_on(r), paper, pdata])  # fmt: skip
    return markdown_table(head, cells, "llrrrrr" + "r" * len(classes) + "rrrllrl")


def _trained_on(row: dict) -> str:
    """'AMD EPYC, fp32' from the row's CPU line and precision; '*' marks a row kept from an earlier table."""
    cpu = (row.get("cpu") or "?").split(" [")[0].replace("(R)", "").replace(" Processor", "")
    return f"{cpu}, {row.get('precision') or '?'}" + (" *" if row.get("kept") else "")


def probs_cache_dir(cfg) -> Path:
    """Where the zoo keeps its content-addressed probabilities (:mod:`ferlab.runtime.predcache`): beside the
    run folders, ``<output_dir>/.cache/probs``; delete it to reclaim the disk, nothing else refers to it."""
    return cfg.run_dir.parent / ".cache" / "probs"


def zoo_table(queue: str | Path, out: str | Path, overrides=None, data_dir=None, tta: bool = True,
              cache: bool = True, dataset: str = "fer2013") -> Path:  # fmt: skip
    """Write the Markdown table (``out``), its rows as JSON and the curves PNG beside it. ``cache``: score
    the runs' models through the probability cache beside the runs (:func:`probs_cache_dir`), so a table made
    again, or the ensemble study after it, does not score an unchanged model twice. ``dataset``: where the
    runs are scored (its ``test`` split; FER2013's PrivateTest for the zoo, a ``cache:`` sample in tests)."""
    from ..data import load_dataset
    from ..engine.queue import load_queue, run_state
    from ..hardware import cpu_info

    entries = load_queue(queue)
    cfgs = [(e.train_config(overrides), e.paper) for e in entries]
    out = Path(out)
    earlier = {}  # finished rows of an earlier table whose run folders are not on this machine: kept, marked
    if out.with_suffix(".json").is_file():
        try:
            earlier = {
                r["run"]: r
                for r in json.loads(out.with_suffix(".json").read_text())
                if isinstance(r, dict)
                and r.get("state") == "done"
                and "run" in r
                and r.get("dataset", "fer2013") == dataset
            }  # fmt: skip  (rows scored elsewhere: not kept)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{out.with_suffix('.json')}: not a zoo table's JSON ({e})") from None
    if not any(c.run_dir.is_dir() or c.run_name in earlier for c, _ in cfgs):
        raise ConfigError(f"no run of {queue} has started yet (run: ferlab zoo train --queue {queue})")
    test = load_dataset(dataset, data_dir)["test"]
    rows = []
    for c, p in cfgs:
        if c.run_name in earlier and run_state(c)["state"] != "done":  # finished elsewhere, not (yet) here
            rows.append({**earlier[c.run_name], "paper": p, "kept": True})
        else:
            rows.append(
                {**run_row(c, p, test, tta, probs_cache_dir(c) if cache else None), "dataset": dataset}
            )
    png = plot_zoo_curves(rows, out.with_name(out.stem + "_curves.png"))
    done = sum(r["state"] == "done" for r in rows)
    text = [
        "# The ferlab zoo on FER2013 (CPU scale)",
        "",
        f"Made by `ferlab zoo table --queue {queue}` from the run folders of `ferlab zoo train`; {done} of "
        f"{len(rows)} runs finished. Made on: {cpu_info().summary()}. 'trained on': the CPU and precision of",
        "each run (bf16 only on CPUs with fast bf16); * marks a row kept from this table's earlier version",
        "(its JSON) because its run folder is not on this machine: measured then, not re-evaluated now.",
        "",
        "**CPU-scale results**: each model trained for about 1 CPU-hour at FER2013's own resolution (48 px, 64 px",
        "where the architecture needs it), from random weights, with its paper's recipe compressed into that",
        "budget (each recipe's header, `configs/<model>/fer2013_cpu.yaml`, lists every difference). The papers",
        "trained at 224 px for tens of epochs on a GPU, most from ImageNet or other pre-trained weights; the gap",
        "to their figures is mostly that budget (column 'epochs': FER2013-epoch equivalents seen in training).",
        "",
        f"Accuracy: {'FER2013 PrivateTest' if dataset == 'fer2013' else dataset + ' test'} ({len(test):,} faces), fp32, the best PublicTest epoch's weights; 'flip' averages",
        "each face with its mirror. Recall per class in %. CPU-min: the training process's CPU time (runs from",
        "before it was recorded: wall minutes x threads, an upper bound).",
        "",
        format_zoo(rows, test.classes),
        "",
        f"![validation curves]({png.name})",
        "",
    ]
    from ..io import write_atomic

    write_atomic("\n".join(text).encode(), out)
    write_atomic(json.dumps(rows, indent=1, default=str).encode(), out.with_suffix(".json"))
    return out


def ship_zoo(queue: str | Path, out_dir: str | Path, max_mb: float = 20.0, overrides=None,
             overwrite: bool = False) -> list[dict]:  # fmt: skip
    """Copy the finished runs' weights whose fp16 form fits ``max_mb`` into ``out_dir`` as ``<model>.safetensors``
    (fp16, the spec and the run's test accuracy in the metadata), so they load by name as ``zoo/<model>``.
    Larger ones are listed, not written. An existing file is replaced only with ``overwrite``."""
    import torch

    from ..engine.queue import load_queue, run_state
    from ..runtime.files import export_weights, load_model

    rows = []
    for e in load_queue(queue):
        cfg = e.train_config(overrides)
        row = {
            "model": cfg.model,
            "run": cfg.run_name,
            "state": run_state(cfg)["state"],
            "mb": None,
            "shipped": None,
        }
        rows.append(row)
        weights = cfg.run_dir / "model.safetensors"
        if row["state"] != "done" or not weights.is_file():
            continue
        model, classes, _ = load_model(weights)
        row["mb"] = sum(t.numel() * (2 if t.is_floating_point() else t.element_size())
                        for t in model.state_dict().values()) / 1e6  # fmt: skip
        if row["mb"] > max_mb:
            continue
        dest = Path(out_dir) / f"{cfg.model}.safetensors"
        if dest.exists() and not overwrite:
            raise ConfigError(f"{dest} exists; pass overwrite=True (--overwrite) to replace it")
        summary = json.loads((cfg.run_dir / "summary.json").read_text())
        extra = {"run": cfg.run_name, "recipe": e.config, "stored": "fp16",
                 **{k: v for k, v in summary.items() if k.endswith("_acc") and isinstance(v, float)}}  # fmt: skip
        row["shipped"] = str(export_weights(model, dest, classes, extra, dtype=torch.float16))
    return rows


#: paper 004's ensemble members among the zoo's models (Berindeie 2024)
PAPER_004_MEMBERS = ("resemotenet", "pattlite", "resmasking", "emonext_tiny", "cbam_resnet50")


def zoo_ensemble(queue: str | Path, out: str | Path, members=PAPER_004_MEMBERS, extras=("default",),
                 snapshots: str | Path | None = None, overrides=None, data_dir=None, tta: str = "none",
                 overwrite: bool = False, progress: bool = False, dataset: str = "fer2013",
                 cache: bool = True) -> dict:  # fmt: skip
    """Paper 004's ensemble study on the zoo's finished runs (:func:`ferlab.infer.ensemble.ensemble_study`).

    Pools: the ``members`` (model or run names of the queue) whose runs are done; the same with ``extras``
    (references such as ferlab's ``default``); and, given ``snapshots`` (a run folder trained with
    ``snapshot_epochs``), that run's snapshots. Members whose runs are not done are skipped and named in the
    report. Writes ``out`` (Markdown), its JSON and a disagreement PNG beside it; an existing ``out`` is
    replaced only with ``overwrite``. ``dataset``: where the runs are scored (its ``val`` and ``test`` splits;
    FER2013 for the zoo). ``cache``: score through the probability cache the zoo table fills
    (:func:`probs_cache_dir`). Returns the report.
    """
    from ..engine.queue import load_queue, run_state
    from ..infer.ensemble import ensemble_study, markdown_ensemble_study, plot_disagreement, snapshot_members
    from ..io import write_atomic

    out = Path(out)
    if out.suffix != ".md":
        raise ConfigError(
            f"--out {out}: the study's report is Markdown (.md); its .json and PNG go beside it"
        )
    outputs = (out, out.with_suffix(".json"), out.with_name(out.stem + "_disagreement.png"))
    if not overwrite and any(f.exists() for f in outputs):
        raise ConfigError(f"{', '.join(str(f) for f in outputs if f.exists())} exists; pass overwrite=True "
                          "(--overwrite) to replace the report")  # fmt: skip
    cfgs = [e.train_config(overrides) for e in load_queue(queue)]
    chosen = []
    for m in members:  # a run name picks that run; a model name every run of that model
        hits = [c for c in cfgs if c.run_name == m] or [c for c in cfgs if c.model == m]
        if not hits:
            raise ConfigError(f"ensemble member {m}: not a run or model of {queue}")
        chosen += [c for c in hits if c not in chosen]
    models = [c.model for c in chosen]
    found, missing = {}, []
    for cfg in chosen:
        label = cfg.model if models.count(cfg.model) == 1 else cfg.run_name
        weights = cfg.run_dir / "model.safetensors"
        state = run_state(cfg)["state"]
        if state == "done" and weights.is_file():
            found[label] = str(weights)
        else:
            missing.append(f"{label} ({state})")
    named = {}
    for x in extras or ():
        p = Path(str(x))
        name = (p.parent.name if p.stem in ("model", "best", "last") else p.stem) if p.suffix else str(x)
        if name in named or name in found:
            raise ConfigError(f"two ensemble models would both be named {name!r} ({x}); pass distinct files")
        named[name] = str(x)
    pools = {}
    if found:
        pools["paper 004 members" if tuple(members) == PAPER_004_MEMBERS else "members"] = dict(found)
        if named:
            pools[f"members + {', '.join(named)}"] = {**found, **named}
    if snapshots is not None:
        run = Path(snapshots)
        pools[f"snapshots of {run.name}"] = {f"{run.name}/{p.name}": str(p) for p in snapshot_members(run)}
    if not pools:
        raise ConfigError(f"no finished run among {', '.join(members)} and no snapshots: nothing to combine")
    cache_dir = probs_cache_dir(cfgs[0]) if cache and cfgs else None
    report = ensemble_study(
        pools, dataset, data_dir=data_dir, tta=tta, progress=progress, cache_dir=cache_dir
    )
    report["missing_members"] = missing
    text = [
        f"# Paper 004's ensemble study on the zoo ({'FER2013' if dataset == 'fer2013' else dataset}, CPU scale)", "",
        f"Made by `ferlab zoo ensemble --queue {queue}` from the zoo's finished runs; members: "
        f"{', '.join(found) or 'none'}" + (f"; not finished, left out: {', '.join(missing)}" if missing else "") + ".",
        "Each member is the CPU-scale run of the zoo table (about 1 CPU-hour, read its row); the paper's members "
        "were trained on a GPU at 224 px.", "", markdown_ensemble_study(report),
        f"![disagreement]({out.with_name(out.stem + '_disagreement.png').name})", "",
    ]  # fmt: skip
    write_atomic("\n".join(text).encode(), outputs[0])
    write_atomic(json.dumps(report, indent=1, default=str).encode(), outputs[1])
    plot_disagreement(report["disagreement"], [m["name"] for m in report["models"]], outputs[2],
                      "pairwise disagreement on FER2013 PrivateTest")  # fmt: skip
    return report
