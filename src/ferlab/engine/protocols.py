"""The papers' evaluation protocols, each one function (and one ``ferlab protocol ...`` command).

* :func:`run_kfold` — stratified (optionally subject-grouped) k-fold cross-validation, mean ± std (Wang 2024 (AEMT): 5-fold).
* :func:`run_repeats` — N runs with different seeds; Acc = mean and Sta = population std (Chen & Chen 2024 (VGG16 + GCCA) eq. 8-9, N=10).
* :func:`run_transfer` — pre-train on one dataset, fine-tune on another with a new head (Wang 2024 (AEMT):
  AffectNet -> RAF-DB; Chen et al. 2024 (GCLENet): fine-tune at lr 0.01).
* :func:`run_ablation` — one run per combination of a model's component switches, as an ablation table
  (Wang 2024 (AEMT) table 5, Chen & Chen 2024 (VGG16 + GCCA) table 1, Chen et al. 2024 (GCLENet) table 5).

Each writes ``<output_dir>/<name>/protocol.json`` and ``protocol.md`` and returns the rows.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..io import atomic_path, write_atomic
from ..runtime.metrics import acc_sta
from ..tables import markdown_table
from .config import TrainConfig, validate

#: the protocols, in the order ``ferlab protocol --help`` lists them
KINDS = ("kfold", "repeats", "transfer", "ablation")


def _sub(cfg: TrainConfig, name: str, **changes) -> TrainConfig:
    c = copy.deepcopy(cfg)
    c.output_dir = str(cfg.run_dir)
    c.name = name
    for k, v in changes.items():
        setattr(c, k, v)
    validate(c)
    return c


def _write(cfg: TrainConfig, kind: str, rows: list[dict], summary: dict, columns: list[str]) -> dict:
    out = cfg.run_dir
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(
        json.dumps({"protocol": kind, "rows": rows, "summary": summary}, indent=1), out / "protocol.json"
    )
    lines = [f"# {kind}: {cfg.run_name}", ""]
    if summary.get("scaling"):
        lines += [f"Scale: {summary['scaling']}", ""]
    lines.append(markdown_table(columns, [[_fmt(r.get(c, "")) for c in columns] for r in rows]))
    lines += ["", *(f"- {k}: {_fmt(v)}" for k, v in summary.items())]
    write_atomic("\n".join(lines) + "\n", out / "protocol.md")
    return {"rows": rows, "summary": summary, "dir": str(out)}


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _fit(cfg: TrainConfig, splits=None, classes=None, info=None) -> dict:
    from .trainer import Trainer

    return Trainer(cfg, splits, classes, info).fit()


def run_kfold(cfg: TrainConfig, k: int = 5, group_key: str | None = None, split: str | None = None) -> dict:
    """k folds of the training split (or ``split``), selected honestly.

    Each fold trains on k-1 folds minus an inner validation part (``cfg.val_fraction`` of them, stratified,
    and subject-grouped with ``group_key``), picks its epoch and early-stops on that inner part, and only then
    is scored once on the held-out fold, which never influences training or selection. With ``group_key``
    (e.g. ``'subject'`` for CK+) no group appears in two of the three parts.
    """
    from ..data import load_dataset
    from ..data.splits import inner_split, kfold
    from ..models import resolve_data_config

    ds = load_dataset(cfg.dataset, cfg.data_dir, **cfg.dataset_kwargs)
    dc = resolve_data_config(cfg.model, cfg.in_chans, cfg.img_size)
    sp = ds.split(split or cfg.train_split)
    if not sp.in_memory:
        sp = sp.load(size=dc.input_size[1], grayscale=dc.color == "gray")
    rows = []
    for i, (tr, te) in enumerate(kfold(sp, k=k, seed=cfg.seed, group_key=group_key)):
        tr, val = inner_split(tr, cfg.val_fraction, seed=cfg.seed + i, group_key=group_key)
        tr.name = "train"
        s = _fit(_sub(cfg, f"fold{i}"), {"train": tr, "val": val, "test:fold": te}, ds.classes, ds.info)
        rows.append(
            {
                "fold": i,
                "train": len(tr),
                "val": len(val),
                "test": len(te),
                "accuracy": s.get("fold_acc"),
                "macro_f1": s.get("fold_macro_f1"),
            }
        )
    acc = [r["accuracy"] for r in rows]
    f1 = [r["macro_f1"] for r in rows]
    summary = {"k": k, "accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
               "macro_f1_mean": float(np.mean(f1)), "macro_f1_std": float(np.std(f1))}  # fmt: skip
    summary["selection"] = f"inner validation ({cfg.val_fraction:g} of the training folds" + (
        f", grouped by {group_key})" if group_key else ")"
    )
    return _write(
        cfg,
        f"{k}-fold cross-validation",
        rows,
        summary,
        ["fold", "train", "val", "test", "accuracy", "macro_f1"],
    )


def run_repeats(
    cfg: TrainConfig, n: int = 10, seeds=None, test_split: str | None = None, group_key: str | None = None,
    test_fraction: float = 0.2,
) -> dict:  # fmt: skip
    """N runs differing only in the seed; Acc/Sta of the test accuracy (Chen & Chen 2024).

    A dataset without a test split (CK+) gets one: ``test_fraction`` of its training split, stratified (and
    grouped by ``group_key``, e.g. ``'subject'``), carved once with the config's seed and held out from every
    run; each run then selects on its own validation part of the rest.
    """
    seeds = list(seeds) if seeds is not None else [cfg.seed + i for i in range(n)]
    t = test_split or (cfg.test_splits[0] if cfg.test_splits else None)
    splits = classes = None
    info = None  # the dataset's info when the splits are carved here (its crop rule)
    if t is None:
        from ..data import load_dataset
        from ..data.splits import inner_split
        from ..models import resolve_data_config

        ds = load_dataset(cfg.dataset, cfg.data_dir, **cfg.dataset_kwargs)
        dc = resolve_data_config(cfg.model, cfg.in_chans, cfg.img_size)
        sp = ds.split(cfg.train_split)
        if not sp.in_memory:
            sp = sp.load(size=dc.input_size[1], grayscale=dc.color == "gray")
        rest, held = inner_split(
            sp, test_fraction, seed=cfg.seed, group_key=group_key, names=("train", "heldout")
        )
        t, classes, info = "heldout", ds.classes, ds.info
    rows = []
    for s in seeds:
        if classes is not None:
            from ..data.splits import inner_split

            tr, val = inner_split(rest, cfg.val_fraction, seed=s, group_key=group_key)
            tr.name = "train"
            splits = {"train": tr, "val": val, "test:heldout": held}
        summ = _fit(_sub(cfg, f"seed{s}", seed=s, test_splits=[t]), splits, classes, info)
        rows.append(
            {
                "seed": s,
                "accuracy": summ[f"{t}_acc"],
                "macro_f1": summ[f"{t}_macro_f1"],
                "epochs": summ["epochs_run"],
            }
        )
    acc, sta = acc_sta([r["accuracy"] for r in rows])
    return _write(cfg, f"{len(seeds)} repeated runs", rows, {"Acc": acc, "Sta": sta, "test_split": t},
                  ["seed", "accuracy", "macro_f1", "epochs"])  # fmt: skip


def run_transfer(pre: TrainConfig, fine: TrainConfig, reinit_head: bool = True) -> dict:
    """Stage 1 trains ``pre``; stage 2 trains ``fine`` starting from stage 1's weights.

    The classifier head is re-initialised for stage 2 when ``reinit_head`` (the default; the backbone is
    transferred, the head learns the new task from scratch), or whenever the class counts differ (it cannot
    be carried over then). With ``reinit_head=False`` and the same classes the trained head is kept too.
    """
    if pre.model != fine.model:
        raise ConfigError(f"transfer needs one model; pre-training {pre.model!r}, fine-tuning {fine.model!r}")
    s1 = _fit(_sub(pre, "stage1_pretrain"))
    weights = Path(pre.run_dir) / "stage1_pretrain" / "model.safetensors"
    if reinit_head:
        weights = _without_head(weights)
    s2 = _fit(_sub(fine, "stage2_finetune", pretrained=str(weights), output_dir=str(pre.run_dir)))
    rows = [
        {"stage": "pre-train", "dataset": pre.dataset, **s1},
        {"stage": "fine-tune", "dataset": fine.dataset, **s2},
    ]
    cols = ["stage", "dataset", "epochs_run", *sorted({k for r in rows for k in r if k.endswith("_acc")})]
    return _write(pre, "two-stage transfer", rows, {"weights": str(weights), "head": "re-initialised" if reinit_head
                  else "carried over when the classes match"}, cols)  # fmt: skip


def _without_head(weights: Path) -> Path:
    """A copy of a ``.safetensors`` export without the classifier's tensors (so the next stage starts its
    head from scratch); the keys are those ``reset_classifier`` re-creates."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ..runtime.files import load_model

    model, _, _ = load_model(weights)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_classifier(model.num_classes)
    after = model.state_dict()
    head = {
        k
        for k in before
        if k in after and (before[k].shape != after[k].shape or not bool((before[k] == after[k]).all()))
    }
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if k not in head}  # noqa: SIM118
    out = weights.with_name("model_without_head.safetensors")
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return out


def _apply(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """``cfg`` with ``overrides`` (config keys, dotted keys such as ``model_kwargs.gcca``, or bare model
    switches such as ``gcca``) applied and validated."""
    from ..models import model_info
    from .config import from_dict, merge

    switches = set(model_info(overrides.get("model", cfg.model)).switches)
    nested: dict = {}
    for k, v in overrides.items():
        if k in switches and k not in TrainConfig.__dataclass_fields__:
            k = f"model_kwargs.{k}"
        d = nested
        parts = k.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return from_dict(merge(cfg.to_dict(), nested))


def ablation_settings(cfg: TrainConfig, table: str | None = None, switches=None) -> tuple[dict, dict]:
    """``({row: overrides}, {row: paper figures})`` of a named table of ``cfg.ablation``, or every on/off
    combination of ``switches`` (model switches)."""
    from ..models import model_info

    if table is not None:
        if table not in cfg.ablation:
            raise ConfigError(
                f"no ablation table {table!r} in the config; tables: {', '.join(cfg.ablation) or '(none)'}"
            )
        rows = {k: dict(v) for k, v in cfg.ablation[table].items() if not k.startswith("_")}
        paper = {k: rows[k].pop("paper", None) for k in rows}
        return rows, paper
    valid = model_info(cfg.model).switches
    switches = list(switches or [])
    bad = sorted(set(switches) - set(valid))
    if bad or not switches:
        raise ConfigError(f"model {cfg.model!r} has no switch(es) {bad}; valid: {', '.join(valid)}")
    settings = {"".join("+" + s if on else "" for s, on in zip(switches, combo)) or "baseline": dict(zip(switches, combo))
                for combo in itertools.product([False, True], repeat=len(switches))}  # fmt: skip
    return settings, dict.fromkeys(settings)


def _best_val_acc(summary: dict) -> float | None:
    """The best validation accuracy of a run, whatever it monitored (its ``metrics.csv``)."""
    if summary.get("best_val_acc") is not None:
        return summary["best_val_acc"]
    from .history import best_val_acc

    return best_val_acc(summary.get("run_dir", ""))


def _shown(v) -> str:
    return "✓" if v is True else "✗" if v is False else str(v)


def run_ablation(
    cfg: TrainConfig, switches=None, settings: dict | None = None, table: str | None = None, repeats: int = 1,
) -> dict:  # fmt: skip
    """The paper's ablation table: one row per setting, ``repeats`` runs each (seeds ``seed .. seed+N-1``).

    Settings come from ``settings`` (``{row: overrides}``), a named table of the config's ``ablation:``
    block (``table``; rows may carry the paper's figures under ``paper: {acc, sta}``), or every on/off
    combination of model ``switches``. Any config key can be a setting (``loss: island``, ``lr``, dotted
    ``model_kwargs.gcca``); bare model switches go to ``model_kwargs``. Per row: mean test accuracy (Acc),
    its population standard deviation over the repeats (Sta, Chen & Chen 2024 (VGG16 + GCCA) eq. 9), mean over the runs of each one's best validation accuracy (max over its epochs, whatever it monitored),
    parameters, and the paper's figures beside them. Finished runs are reused on a rerun.
    """
    from ..models import create_model
    from ..models.profile import count_params

    if int(repeats) < 1:
        raise ConfigError(f"repeats must be >= 1, got {repeats}")
    paper: dict = {}
    if settings is None:
        settings, paper = ablation_settings(cfg, table, switches)
    keys = list(dict.fromkeys(k for ov in settings.values() for k in ov))
    t = cfg.test_splits[0] if cfg.test_splits else None
    rows = []
    for label, ov in settings.items():
        run_cfg = _apply(cfg, ov)
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label.replace("+", "p_"))
        accs, vals, runs = [], [], []
        for r in range(int(repeats)):
            seed = cfg.seed + r
            summ = _fit(
                _sub(run_cfg, f"ablation_{safe}_seed{seed}" if repeats > 1 else f"ablation_{safe}", seed=seed)
            )
            runs.append(summ)
            vals.append(_best_val_acc(summ))
            if t:
                accs.append(summ.get(f"{t}_acc"))
        acc, sta = acc_sta(accs) if accs else (None, None)  # in %, as the papers report them
        acc, sta = (None, None) if acc is None else (100 * acc, 100 * sta)
        nc = next((s["num_classes"] for s in runs if s.get("num_classes")), 2)  # as trained (older runs: 2)
        params = count_params(create_model(run_cfg.model, num_classes=nc, img_size=run_cfg.img_size,
                                           in_chans=run_cfg.in_chans, **run_cfg.model_kwargs))  # fmt: skip
        p = paper.get(label) or {}
        rows.append({"setting": label, **{k: _shown(ov.get(k, "")) for k in keys}, "params": params,
                     "runs": len(runs), "val_acc": float(np.mean([v for v in vals if v is not None])) if vals else None,
                     "Acc": acc, "Sta": sta, "accs": accs, "paper_Acc": p.get("acc"), "paper_Sta": p.get("sta")})  # fmt: skip
    summary = {"model": cfg.model, "dataset": cfg.dataset, "test_split": t, "img_size": cfg.img_size,
               "epochs": cfg.epochs, "repeats": int(repeats),
               "scaling": (cfg.ablation.get(table, {}).get("_scaling") if table else None) or "as the config"}  # fmt: skip
    cols = ["setting", *keys, "params", "runs", "val_acc", "Acc", "Sta"]  # Acc, Sta in % of the test split
    if any(r["paper_Acc"] is not None for r in rows):
        cols += ["paper_Acc", "paper_Sta"]
    title = f"ablation {table}" if table else f"ablation of {', '.join(keys)}"
    return _write(cfg, title, rows, summary, cols)
