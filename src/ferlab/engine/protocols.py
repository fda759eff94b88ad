"""The papers' evaluation protocols, each one function (and one ``ferlab protocol ...`` command).

* :func:`run_kfold` — stratified (optionally subject-grouped) k-fold cross-validation, mean ± std (paper 000: 5-fold).
* :func:`run_repeats` — N runs with different seeds; Acc = mean and Sta = population std (paper 002 eq. 8-9, N=10).
* :func:`run_transfer` — pre-train on one dataset, fine-tune on another with a new head (paper 000:
  AffectNet -> RAF-DB; paper 003: fine-tune at lr 0.01).
* :func:`run_ablation` — one run per combination of a model's component switches, as an ablation table
  (paper 000 table 5, paper 002 table 1, paper 003 table 5).

Each writes ``<output_dir>/<name>/protocol.json`` and ``protocol.md`` and returns the rows.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .config import TrainConfig, validate
from .metrics import acc_sta


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
    (out / "protocol.json").write_text(
        json.dumps({"protocol": kind, "rows": rows, "summary": summary}, indent=1)
    )
    lines = [f"# {kind}: {cfg.run_name}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    lines += ["", *(f"- {k}: {_fmt(v)}" for k, v in summary.items())]
    (out / "protocol.md").write_text("\n".join(lines) + "\n")
    return {"rows": rows, "summary": summary, "dir": str(out)}


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _fit(cfg: TrainConfig, splits=None, classes=None) -> dict:
    from .trainer import Trainer

    return Trainer(cfg, splits, classes).fit()


def run_kfold(cfg: TrainConfig, k: int = 5, group_key: str | None = None, split: str | None = None) -> dict:
    """k folds of the training split (or ``split``): train on k-1 folds, validate and test on the held-out one."""
    from ..data import load_dataset
    from ..data.splits import kfold
    from ..models import create_model

    ds = load_dataset(cfg.dataset, cfg.data_dir, **cfg.dataset_kwargs)
    dc = create_model(
        cfg.model, num_classes=2, in_chans=cfg.in_chans, img_size=cfg.img_size, **cfg.model_kwargs
    ).data_config
    sp = ds.split(split or cfg.train_split)
    if not sp.in_memory:
        sp = sp.load(size=dc.input_size[1], grayscale=dc.color == "gray")
    rows = []
    for i, (tr, te) in enumerate(kfold(sp, k=k, seed=cfg.seed, group_key=group_key)):
        tr.name = "train"
        s = _fit(_sub(cfg, f"fold{i}"), {"train": tr, "val": te, "test:fold": te}, ds.classes)
        rows.append(
            {
                "fold": i,
                "train": len(tr),
                "test": len(te),
                "accuracy": s.get("fold_acc"),
                "macro_f1": s.get("fold_macro_f1"),
            }
        )
    acc = [r["accuracy"] for r in rows]
    f1 = [r["macro_f1"] for r in rows]
    summary = {"k": k, "accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
               "macro_f1_mean": float(np.mean(f1)), "macro_f1_std": float(np.std(f1))}  # fmt: skip
    return _write(
        cfg, f"{k}-fold cross-validation", rows, summary, ["fold", "train", "test", "accuracy", "macro_f1"]
    )


def run_repeats(cfg: TrainConfig, n: int = 10, seeds=None, test_split: str | None = None) -> dict:
    """N runs differing only in the seed; Acc/Sta of the test accuracy (paper 002)."""
    seeds = list(seeds) if seeds is not None else [cfg.seed + i for i in range(n)]
    t = test_split or (cfg.test_splits[0] if cfg.test_splits else None)
    if t is None:
        raise ConfigError("repeated runs need a test split (test_splits in the config)")
    rows = []
    for s in seeds:
        summ = _fit(_sub(cfg, f"seed{s}", seed=s, test_splits=[t]))
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


def run_transfer(pre: TrainConfig, fine: TrainConfig) -> dict:
    """Stage 1 trains ``pre``; stage 2 trains ``fine`` from stage 1's weights (head re-initialised)."""
    if pre.model != fine.model:
        raise ConfigError(f"transfer needs one model; pre-training {pre.model!r}, fine-tuning {fine.model!r}")
    s1 = _fit(_sub(pre, "stage1_pretrain"))
    weights = Path(pre.run_dir) / "stage1_pretrain" / "model.safetensors"
    s2 = _fit(_sub(fine, "stage2_finetune", pretrained=str(weights), output_dir=str(pre.run_dir)))
    rows = [
        {"stage": "pre-train", "dataset": pre.dataset, **s1},
        {"stage": "fine-tune", "dataset": fine.dataset, **s2},
    ]
    cols = ["stage", "dataset", "epochs_run", *sorted({k for r in rows for k in r if k.endswith("_acc")})]
    return _write(pre, "two-stage transfer", rows, {"weights": str(weights)}, cols)


def run_ablation(cfg: TrainConfig, switches: list[str], settings: dict[str, dict] | None = None) -> dict:
    """One run per setting: ``settings`` maps a label to switch values; default: every on/off combination."""
    from ..models import model_info

    valid = model_info(cfg.model).switches
    bad = sorted(set(switches) - set(valid))
    if bad:
        raise ConfigError(f"model {cfg.model!r} has no switch(es) {bad}; valid: {', '.join(valid)}")
    if settings is None:
        settings = {"".join("+" + s if on else "" for s, on in zip(switches, combo)) or "baseline": dict(zip(switches, combo))
                    for combo in itertools.product([False, True], repeat=len(switches))}  # fmt: skip
    t = cfg.test_splits[0] if cfg.test_splits else None
    rows = []
    for label, sw in settings.items():
        kw = {**cfg.model_kwargs, **sw}
        safe = label.replace("+", "p_").replace(" ", "_")
        summ = _fit(_sub(cfg, f"ablation_{safe}", model_kwargs=kw))
        from ..models import create_model
        from ..models.profile import count_params

        params = count_params(
            create_model(cfg.model, num_classes=2, img_size=cfg.img_size, in_chans=cfg.in_chans, **kw)
        )
        rows.append({"setting": label, **{s: "✓" if kw.get(s) else "✗" for s in switches}, "params": params,
                     "val_acc": summ.get("best_val_acc"), "test_acc": summ.get(f"{t}_acc") if t else None})  # fmt: skip
    return _write(cfg, f"ablation of {', '.join(switches)}", rows, {"model": cfg.model, "test_split": t},
                  ["setting", *switches, "params", "val_acc", "test_acc"])  # fmt: skip
