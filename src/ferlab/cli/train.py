"""``ferlab train | zoo | protocol``: training runs, the zoo's queue of recipes and the papers' protocols."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, FerlabError
from ._args import THREADS_HELP, add_data_dir, add_overwrite, add_threads

ZOO_QUEUE = "queues/zoo_fer2013_cpu.yaml"
ZOO_TABLE, ZOO_ENSEMBLE = "docs/zoo_fer2013.md", "docs/zoo_ensemble_fer2013.md"
#: what ``ferlab zoo`` does with its queue (handled by :func:`_cmd_zoo`)
ZOO_ACTIONS = ("train", "status", "table", "ship", "ensemble")


def _cmd_train(args) -> int:
    """Train one model from a YAML recipe with key=value overrides and print where the run is."""
    from ..engine import train

    overrides = list(args.overrides or []) + ([f"threads={args.threads}"] if args.threads else [])
    summary = train(args.config, overrides)
    print(format_train_summary(summary))
    return 0


def format_train_summary(s: dict) -> str:
    """The end of ``ferlab train``: where the run is, what stopped it, and a table of its test splits."""
    from ..data.balance import format_table

    best = next((k for k in s if k.startswith("best_")), None)
    why = ("its time budget" if s.get("budget_reached") else "early stopping" if s.get("stopped_early")
           else "its last epoch")  # fmt: skip
    lines = []
    if s.get("run_dir"):
        lines.append(f"run folder: {s['run_dir']} (model.safetensors, metrics.csv, curves.png, eval/)")
    lines.append(
        f"{s.get('epochs_run')} epochs in {s.get('train_time_s', 0) / 60:.1f} min, stopped by {why} "
        f"(precision {s.get('precision')}, {s.get('threads')} thread(s))"
        + (f"; best {best[5:]} {s[best]:.4f}" if best and isinstance(s.get(best), float) else "")
    )
    splits = sorted(
        {k[: -len("_acc")] for k in s if k.endswith("_acc") and not k.startswith(("best_", "train_"))}
    )
    if splits:
        rows = [
            [n, f"{100 * s[f'{n}_acc']:.2f} %", f"{s.get(f'{n}_macro_f1', float('nan')):.4f}"] for n in splits
        ]
        lines += ["", format_table(["test split", "accuracy", "macro-F1"], rows)]
    return "\n".join(lines)


def add_train(sub) -> None:
    """Add ``ferlab train``."""
    s = sub.add_parser(
        "train",
        help="train a model from a YAML recipe (configs/<model>/<dataset>.yaml) with key=value overrides",
        description="Train with the one Trainer: typed defaults <- the YAML recipe <- key=value overrides "
        "(nested keys with dots, e.g. augment.hflip=0.3). Runs resume from RUN_DIR/last.pt automatically. "
        "Data-parallel: torchrun --nproc_per_node=N -m ferlab train --config ...",
    )
    s.add_argument("--config", help="YAML recipe (optional: defaults train smallcnn on fer2013)")
    add_threads(s, THREADS_HELP + "; same as threads=N")
    s.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    s.set_defaults(func=_cmd_train)


def _cmd_zoo(args) -> int:
    """Train the zoo's queue of recipes (resumable), show its state, or write its results table."""
    from ..engine.queue import queue_status, run_queue

    overrides = list(args.overrides or [])
    if args.only:  # `--only a b key=value`: the key=value words after the names are overrides, not names
        overrides += [w for w in args.only if "=" in w]
        args.only = [w for w in args.only if "=" not in w]
        if not args.only:
            raise ConfigError("--only needs run or model names before any key=value override")
    if args.with_models:  # `--with default key=value`: likewise
        overrides += [w for w in args.with_models if "=" in w]
        args.with_models = [w for w in args.with_models if "=" not in w]
    if getattr(args, "threads", None):
        overrides.append(f"threads={args.threads}")
    if args.dataset != "fer2013" and args.action not in ("table", "ensemble"):
        raise ConfigError(
            f"--dataset is for 'zoo table' and 'zoo ensemble' (where runs are scored); 'zoo {args.action}' "
            "trains or reads each recipe's own dataset (override it with dataset=...)"
        )
    if args.action == "train":
        res = run_queue(args.queue, only=args.only, overrides=overrides)
        return 1 if any(r["status"] == "failed" for r in res) else 0
    if args.action == "status":
        from ..data.balance import format_table

        rows = queue_status(args.queue, overrides)
        print(format_table(
            ["run", "model", "state", "epochs", "train min", "budget min", "best val acc"],
            [[r["name"], r["model"], r["state"], r["epochs"] if r["epochs"] is not None else "?",
              f"{r['train_min']:.1f}" if r["train_min"] is not None else "?", r["budget_min"] or "-",
              f"{100 * r['best_val_acc']:.2f} %" if r["best_val_acc"] is not None else "-"] for r in rows],
        ))  # fmt: skip
        return 0
    if args.action == "ship":
        from ..analysis.zoo import ship_zoo
        from ..data.balance import format_table

        rows = ship_zoo(args.queue, args.ship_dir, args.max_mb, overrides, args.overwrite)
        print(format_table(["model", "run", "state", "fp16 MB", "shipped as"], [
            [r["model"], r["run"], r["state"], "-" if r["mb"] is None else f"{r['mb']:.1f}",
             f"zoo/{r['model']}" if r["shipped"] else ("over the limit" if r["mb"] else "-")] for r in rows]))  # fmt: skip
        return 0
    if args.action == "ensemble":
        from ..analysis.zoo import PAPER_004_MEMBERS, zoo_ensemble

        out = Path(args.out or ZOO_ENSEMBLE)
        r = zoo_ensemble(args.queue, out, args.only or PAPER_004_MEMBERS, args.with_models, args.snapshots,
                         overrides, args.data_dir, "flip" if args.tta else "none", args.overwrite, progress=True,
                         cache=not args.no_cache, dataset=args.dataset)  # fmt: skip
        for c in r["combinations"]:
            print(f"{c['pool']:28s} {c['combination']:18s} {100 * c['accuracy']:6.2f} %  "
                  f"gain {100 * c['gain_vs_best_member']:+.2f} pp over {c['best_member']}")  # fmt: skip
        print(f"wrote {out}")
        return 0
    from ..analysis.zoo import zoo_table

    out = zoo_table(
        args.queue,
        args.out or ZOO_TABLE,
        overrides=overrides,
        data_dir=args.data_dir,
        tta=not args.no_tta,
        cache=not args.no_cache,
        dataset=args.dataset,
    )
    print(f"wrote {out}")
    return 0


def add_zoo(sub) -> None:
    """Add ``ferlab zoo``."""
    s = sub.add_parser(
        "zoo",
        help="train the zoo's queue of paper recipes (resumable), show its state, write its results table, or ship "
        "its small trained weights (fp16, zoo/<model>)",
    )
    s.add_argument("action", choices=list(ZOO_ACTIONS))
    s.add_argument("--queue", default=ZOO_QUEUE, help=f"queue file (default {ZOO_QUEUE})")
    s.add_argument(
        "--only",
        nargs="+",
        help="train: only these run or model names; ensemble: the members "
        "(default: paper 004's resemotenet pattlite resmasking emonext_tiny cbam_resnet50)",
    )
    s.add_argument(
        "--with",
        dest="with_models",
        nargs="*",
        default=["default"],
        metavar="MODEL",
        help="ensemble: models added to the members as a second pool (default: default; none: --with)",
    )
    s.add_argument(
        "--snapshots", metavar="RUN", help="ensemble: a run folder whose snapshots form one more pool"
    )
    s.add_argument("--tta", action="store_true", help="ensemble: average each face with its mirror")
    add_threads(s, "train: threads per run (overrides the recipes' value)")
    s.add_argument("--out", help=f"table: Markdown file, a PNG of curves beside it (default {ZOO_TABLE}); "
                   f"ensemble: Markdown report, its JSON and PNG beside it (default {ZOO_ENSEMBLE})")  # fmt: skip
    s.add_argument("--no-tta", action="store_true", help="table: skip the flip-TTA evaluation")
    s.add_argument("--no-cache", action="store_true",
                   help="table, ensemble: score every model afresh instead of through the probability cache "
                   "(<runs>/.cache/probs, keyed by weights + images + settings, so it is never stale)")  # fmt: skip
    s.add_argument("--dataset", default="fer2013",
                   help="table, ensemble: where the runs are scored (its test split; ensemble: val to fit, test to "
                   "report), e.g. a cache:<file>.npz sample (default fer2013: PublicTest / PrivateTest)")  # fmt: skip
    s.add_argument("--ship-dir", default="src/ferlab/weights/zoo", help="ship: where the fp16 weights go")
    s.add_argument(
        "--max-mb", type=float, default=20.0, help="ship: largest fp16 file to ship (default 20 MB)"
    )
    add_overwrite(s, "ship: replace shipped weights; ensemble: replace --out")
    add_data_dir(s)
    s.add_argument("overrides", nargs="*", help="key=value applied to every run's config")
    s.set_defaults(func=_cmd_zoo)


def _cmd_protocol(args) -> int:
    """Run one of the papers' protocols (k-fold, repeats, transfer, ablation) and print its table."""
    from ..engine import protocols
    from ..engine.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.kind == "kfold":
        res = protocols.run_kfold(cfg, k=args.k, group_key=args.group_key, split=args.split)
    elif args.kind == "repeats":
        res = protocols.run_repeats(cfg, n=args.n, group_key=args.group_key)
    elif args.kind == "transfer":
        if not args.finetune_config:
            raise FerlabError("transfer needs --finetune-config (the second stage's recipe)")
        res = protocols.run_transfer(cfg, load_config(args.finetune_config, args.overrides))
    else:
        if not args.switches and not args.table:
            tables = ", ".join(cfg.ablation) or "none in this config"
            raise FerlabError(f"ablation needs --table NAME (the config's tables: {tables}) or --switches")
        res = protocols.run_ablation(cfg, args.switches, table=args.table, repeats=args.repeats)
    print(Path(res["dir"], "protocol.md").read_text())
    return 0


def add_protocol(sub) -> None:
    """Add ``ferlab protocol`` (its kinds from :data:`ferlab.engine.protocols.KINDS`)."""
    from ..engine.protocols import KINDS

    s = sub.add_parser(
        "protocol",
        help="the papers' protocols: kfold, repeats (Acc/Sta), transfer (pre-train + fine-tune), ablation",
        description="kfold: stratified k-fold CV, mean +- std (Wang 2024). repeats: N seeds, Acc = mean, Sta = "
        "population std (Chen & Chen 2024). transfer: --config pre-trains, --finetune-config fine-tunes from its weights "
        "(Wang 2024, Chen et al. 2024). ablation: one run per on/off combination of --switches (tables of Wang 2024, Chen & Chen 2024, Chen et al. 2024).",
    )
    s.add_argument("kind", choices=list(KINDS))
    s.add_argument("--config", required=True, help="YAML recipe")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.add_argument("--k", type=int, default=5, help="folds (kfold)")
    s.add_argument("--group-key", help="metadata key keeping groups (e.g. subject) apart: kfold folds, and the "
                   "held-out part repeats carve from data without a test split")  # fmt: skip
    s.add_argument("--split", help="split to cross-validate (default: the config's train split)")
    s.add_argument("--n", type=int, default=10, help="number of seeds (repeats)")
    s.add_argument("--finetune-config", help="second-stage recipe (transfer)")
    s.add_argument(
        "--switches", nargs="*", help="model switches to ablate, every on/off combination (ablation)"
    )
    s.add_argument("--table", help="a named table of the config's ablation: block, e.g. table1 (ablation)")
    s.add_argument(
        "--repeats", type=int, default=1, help="runs per row, seeds seed..seed+N-1: Acc and Sta (ablation)"
    )
    s.set_defaults(func=_cmd_protocol)


COMMANDS = {
    "train": add_train,
    "protocol": add_protocol,
    "zoo": add_zoo,
}
