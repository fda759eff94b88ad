"""The ``ferlab`` command line: thin wrappers around library functions.

Every subcommand lives in a ``_cmd_<name>`` function that parses nothing itself and calls plain,
tested library code; user errors (:class:`ferlab.errors.FerlabError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import FerlabError

DATA_HELP = "data root (default: $FERLAB_DATA)"


def _cmd_datasets(args) -> int:
    from .data import find_datasets, load_dataset
    from .data.balance import count_table, format_table, plot_class_counts
    from .data.base import resolve_root

    root = resolve_root(args.data_dir)
    found = find_datasets(root)
    print(f"data root: {root}")
    if not found:
        print("no datasets found (layouts: see `ferlab datasets --help`)")
        return 0
    names = []
    for n in found:
        names += ["ferplus", "ferplus7"] if n == "ferplus" else [n]
    for n in names:
        ds = load_dataset(n, root)
        extra = f", mode={ds.info['mode']}, dropped {ds.info['dropped']}" if "mode" in ds.info else ""
        print(f"\n## {n}  ({found.get(n.rstrip('7'), '')}{extra})\n")
        print(format_table(*count_table(ds)))
        if args.plot:
            print(f"chart: {plot_class_counts(ds, Path(args.plot) / f'{n}_class_counts.png')}")
    return 0


def _cmd_balance(args) -> int:
    from .data import load_dataset
    from .data.balance import class_weights, deficit, format_table, plot_class_counts

    ds = load_dataset(args.dataset, args.data_dir)
    target = (
        args.target
        if args.target == "max"
        else (float(args.target) if "." in args.target else int(args.target))
    )
    rows = []
    for name in args.splits or [s for s in ds.splits if not s.endswith("_dedup")]:
        sp = ds.split(name)
        c = sp.class_counts()
        d = deficit(c, target)
        w_inv = class_weights(sp.labels, len(ds.classes), "inverse")
        w_eff = class_weights(sp.labels, len(ds.classes), "effective")
        for i, cls in enumerate(ds.classes):
            rows.append([name, cls, int(c[i]), int(d[i]), f"{w_inv[i]:.3f}", f"{w_eff[i]:.3f}"])
        rows.append([name, "TOTAL", int(c.sum()), int(d.sum()), "", ""])
    print(
        format_table(
            ["split", "class", "images", f"needed for {args.target}", "w_inverse", "w_effective"], rows
        )
    )
    if args.plot:
        print(f"chart: {plot_class_counts(ds, args.plot, args.splits)}")
    return 0


def _cmd_export_data(args) -> int:
    import time

    from .data import load_dataset
    from .data.cache import load_cached, save_dataset

    ds = load_dataset(args.dataset, args.data_dir)
    path = save_dataset(ds, args.out, splits=args.splits, size=args.size)
    t = time.perf_counter()
    back = load_cached(path)
    dt = time.perf_counter() - t
    sizes = ", ".join(f"{n} {len(s)}" for n, s in back.splits.items())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB: {sizes}); reloads in {dt:.2f} s")
    return 0


def _cmd_prepare(args) -> int:
    from .faces.pipeline import prepare_folder

    report = prepare_folder(
        args.src,
        args.out,
        detector=args.detector,
        margin=args.margin,
        size=args.size,
        grayscale=not args.rgb,
        align=not args.no_align,
        format=args.format,
        keep=args.keep,
    )
    print(report.summary())
    return 0


def _cmd_list_models(args) -> int:
    from .models import list_models
    from .models.profile import model_table

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}")
        return 1
    print(model_table(names, flops=not args.no_flops))
    return 0


def _cmd_train(args) -> int:
    from .engine import train

    summary = train(args.config, args.overrides)
    print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()})
    return 0


def _cmd_evaluate(args) -> int:
    import glob

    from .data import load_dataset
    from .engine.checkpoint import load_model
    from .engine.evaluate import evaluate_model, write_report

    paths = []
    for c in args.checkpoint:
        hits = sorted(glob.glob(c)) if any(ch in c for ch in "*?[") else [c]
        if not hits:
            raise FerlabError(f"no checkpoint matches {c!r}")
        paths += hits
    ds = load_dataset(args.dataset, args.data_dir)
    split = ds.split(args.split)
    rows = []
    for p in paths:
        model, classes, _info = load_model(p)
        sp = (
            split
            if split.in_memory
            else split.load(size=model.data_config.input_size[1], grayscale=model.data_config.color == "gray")
        )
        m = evaluate_model(
            model,
            sp,
            classes,
            tta=args.tta,
            batch_size=args.batch_size,
            progress=True,
            precision=args.precision,
        )
        out = Path(args.out) if args.out else (Path(p) if Path(p).is_dir() else Path(p).parent) / "eval"
        dname = Path(args.dataset.split(":", 1)[1]).name if ":" in args.dataset else args.dataset
        stem = f"{dname}_{args.split}" + ("" if args.tta == "none" else f"_{args.tta}")
        files = write_report(m, out, stem, f"{p} on {args.dataset}/{args.split} (TTA {args.tta})")
        rows.append((p, m))
        print(
            f"{p}: accuracy {100 * m['accuracy']:.2f}%, macro-F1 {m['macro_f1']:.4f}, ECE {m['ece']:.4f} -> {files['md']}"
        )
    if len(rows) > 1:
        print("\n| checkpoint | accuracy | macro F1 | weighted F1 | ECE |\n|---|---:|---:|---:|---:|")
        for p, m in rows:
            print(
                f"| {p} | {100 * m['accuracy']:.2f} | {m['macro_f1']:.4f} | {m['weighted_f1']:.4f} | {m['ece']:.4f} |"
            )
    return 0


def _cmd_bench(args) -> int:
    from .bench import bench_train, format_rows
    from .models import list_models

    if args.what != "train":
        raise FerlabError(f"unknown benchmark {args.what!r}; valid: train")
    names = []
    for pat in args.model:
        hits = list_models(pat)
        if not hits:
            raise FerlabError(f"no model matches {pat!r}")
        names += hits
    rows = []
    for threads in args.threads:
        for n in names:
            r = bench_train(n, args.batch_size, threads, args.amp, args.channels_last, img_size=args.img_size)
            rows.append(r)
            print(format_rows([r]).splitlines()[-1], flush=True)
    table = format_rows(rows)
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0


def _cmd_protocol(args) -> int:
    from .engine import protocols
    from .engine.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.kind == "kfold":
        res = protocols.run_kfold(cfg, k=args.k, group_key=args.group_key, split=args.split)
    elif args.kind == "repeats":
        res = protocols.run_repeats(cfg, n=args.n)
    elif args.kind == "transfer":
        if not args.finetune_config:
            raise FerlabError("transfer needs --finetune-config (the second stage's recipe)")
        res = protocols.run_transfer(cfg, load_config(args.finetune_config, args.overrides))
    else:
        if not args.switches:
            raise FerlabError("ablation needs --switches (the model's component switches)")
        res = protocols.run_ablation(cfg, args.switches)
    print(Path(res["dir"], "protocol.md").read_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ferlab",
        description="Facial expression recognition toolkit: datasets, face preprocessing, models, training, inference.",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"ferlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser(
        "datasets",
        help="list the datasets found under the data root with split sizes and class counts",
        description=(
            "List the datasets under the data root. Layouts looked for: fer2013/fer2013.npz|fer2013.csv|train/<class>/, "
            "fer2013/ferplus_votes.csv or ferplus/fer2013new.csv (FER+, needs FER2013 images), "
            "rafdb/EmoLabel/list_patition_label.txt + rafdb/Image/aligned/, affectnet/training.csv + validation.csv, "
            "ckplus/<class>/S###_*.png."
        ),
    )
    s.add_argument("--data-dir", help=DATA_HELP)
    s.add_argument("--plot", metavar="DIR", help="also write a class-count bar chart per dataset into DIR")
    s.set_defaults(func=_cmd_datasets)

    s = sub.add_parser(
        "balance", help="class counts, images needed for balance and class weights for a dataset"
    )
    s.add_argument("--dataset", default="fer2013", help="dataset name (default fer2013)")
    s.add_argument("--data-dir", help=DATA_HELP)
    s.add_argument("--splits", nargs="*", help="splits to report (default: all but *_dedup)")
    s.add_argument(
        "--target", default="max", help="'max', a count per class, or a ratio like 0.5 (default max)"
    )
    s.add_argument("--plot", metavar="PNG", help="write a bar chart of the class counts")
    s.set_defaults(func=_cmd_balance)

    s = sub.add_parser("export-data", help="write a dataset to HDF5 (.h5) or .npz for fast loading")
    s.add_argument("--dataset", required=True, help="dataset name, folder:PATH or cache:PATH")
    s.add_argument("--out", required=True, help="output file (.h5, .hdf5 or .npz)")
    s.add_argument("--splits", nargs="*", help="splits to write (default all)")
    s.add_argument("--size", type=int, help="resize path-based images to SIZE x SIZE grayscale")
    s.add_argument("--data-dir", help=DATA_HELP)
    s.set_defaults(func=_cmd_export_data)

    s = sub.add_parser(
        "prepare",
        help="detect, crop and resize faces in a folder of photos into a dataset",
        description="Run face detection + crop + resize over SRC (recursively; class sub-folders are kept) and write "
        "a dataset to OUT (a folder of PNGs, or an .h5 file). Reports images with no face, several faces, or unreadable.",
    )
    s.add_argument("src", help="folder of raw photos (optionally SRC/<class>/...)")
    s.add_argument("out", help="output folder, or .h5 file with --format hdf5")
    s.add_argument("--detector", default="haar", help="haar (default), mtcnn or mediapipe")
    s.add_argument("--size", type=int, default=48, help="output side in pixels (default 48)")
    s.add_argument(
        "--margin", type=float, default=0.2, help="margin around the face box, fraction of its side"
    )
    s.add_argument("--rgb", action="store_true", help="keep colour (default grayscale)")
    s.add_argument("--no-align", action="store_true", help="do not rotate faces to level the eyes")
    s.add_argument("--format", choices=["folder", "hdf5"], default="folder")
    s.add_argument(
        "--keep", choices=["largest", "all", "single"], default="largest", help="faces to keep per photo"
    )
    s.set_defaults(func=_cmd_prepare)

    s = sub.add_parser(
        "train",
        help="train a model from a YAML recipe (configs/<model>/<dataset>.yaml) with key=value overrides",
        description="Train with the one Trainer: typed defaults <- the YAML recipe <- key=value overrides "
        "(nested keys with dots, e.g. augment.hflip=0.3). Runs resume from RUN_DIR/last.pt automatically. "
        "Data-parallel: torchrun --nproc_per_node=N -m ferlab train --config ...",
    )
    s.add_argument("--config", help="YAML recipe (optional: defaults train smallcnn on fer2013)")
    s.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    s.set_defaults(func=_cmd_train)

    s = sub.add_parser(
        "evaluate",
        help="accuracy, F1, per-class table, confusion matrix and ECE of checkpoints on a dataset split",
    )
    s.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        help="run folders, .pt checkpoints, .safetensors files or globs",
    )
    s.add_argument("--dataset", default="fer2013")
    s.add_argument("--split", default="test")
    s.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none")
    s.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "auto"],
        default="fp32",
        help="fp32 is the exact reference; bf16/auto is the CPU fast path",
    )
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--out", help="report folder (default: <run>/eval)")
    s.add_argument("--data-dir", help=DATA_HELP)
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser(
        "protocol",
        help="the papers' protocols: kfold, repeats (Acc/Sta), transfer (pre-train + fine-tune), ablation",
        description="kfold: stratified k-fold CV, mean +- std (paper 000). repeats: N seeds, Acc = mean, Sta = "
        "population std (paper 002). transfer: --config pre-trains, --finetune-config fine-tunes from its weights "
        "(papers 000, 003). ablation: one run per on/off combination of --switches (tables of papers 000, 002, 003).",
    )
    s.add_argument("kind", choices=["kfold", "repeats", "transfer", "ablation"])
    s.add_argument("--config", required=True, help="YAML recipe")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.add_argument("--k", type=int, default=5, help="folds (kfold)")
    s.add_argument("--group-key", help="metadata key keeping groups (e.g. subject) within one fold (kfold)")
    s.add_argument("--split", help="split to cross-validate (default: the config's train split)")
    s.add_argument("--n", type=int, default=10, help="number of seeds (repeats)")
    s.add_argument("--finetune-config", help="second-stage recipe (transfer)")
    s.add_argument("--switches", nargs="*", help="model switches to ablate (ablation)")
    s.set_defaults(func=_cmd_protocol)

    s = sub.add_parser("bench", help="benchmarks on this machine: `ferlab bench train --model NAME`")
    s.add_argument("what", choices=["train"], help="what to benchmark")
    s.add_argument("--model", nargs="+", default=["smallcnn"], help="model names or patterns")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default 1 2)"
    )
    s.add_argument("--amp", action="store_true", help="bf16 autocast")
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--img-size", type=int, help="override the model's input side")
    s.add_argument("--out", help="also write the Markdown table here")
    s.set_defaults(func=_cmd_bench)

    s = sub.add_parser("list-models", help="the model zoo: name, paper, parameters, FLOPs, input")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default *)")
    s.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    s.set_defaults(func=_cmd_list_models)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except FerlabError as e:
        print(f"ferlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
