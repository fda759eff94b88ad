"""``ferlab evaluate | ensemble``: scores of checkpoints and of their ensembles on a dataset split."""

from __future__ import annotations

from pathlib import Path

from ..errors import FerlabError
from ..io import expand_globs
from ..tables import markdown_table
from ._args import add_data_dir, add_precision, add_threads, add_tta


def _cmd_evaluate(args) -> int:
    """Evaluate checkpoints on a dataset split: accuracy, F1, per-class table, confusion matrix, ECE."""

    from ..data import load_dataset
    from ..hardware import configure_threads
    from ..infer.recognizer import PRETRAINED, resolve_model
    from ..runtime.evaluate import evaluate_model, write_report

    configure_threads(args.threads)
    paths = expand_globs(args.checkpoint, "checkpoint")
    ds = load_dataset(args.dataset, args.data_dir)
    from ..data.synthetic import mark_synthetic

    split = mark_synthetic(ds).split(args.split).real_only()  # evaluation scores real faces only
    rows = []
    for p in paths:
        model = resolve_model(p, args.threads)  # shipped names, run folders, .pt, .safetensors, .onnx alike
        classes = tuple(model.classes)
        if p in PRETRAINED and not args.out:
            raise FerlabError(
                f"{p} is a shipped model: give --out for its report (the package folder is not one)"
            )
        from ..io import SkipReport

        skipped = SkipReport().merge(ds.info.get("skipped"))
        sp = (
            split
            if split.in_memory
            else split.load(
                size=model.data_config.input_size[1],
                grayscale=model.data_config.color == "gray",
                report=skipped,
            )
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
        skipped.announce(f"{args.dataset}/{args.split}", out / f"{stem}_skipped.txt")
        rows.append((p, m))
        print(
            f"{p}: accuracy {100 * m['accuracy']:.2f}%, macro-F1 {m['macro_f1']:.4f}, ECE {m['ece']:.4f} -> {files['md']}"
        )
    if len(rows) > 1:
        cells = [[p, f"{100 * m['accuracy']:.2f}", f"{m['macro_f1']:.4f}", f"{m['weighted_f1']:.4f}", f"{m['ece']:.4f}"]
                 for p, m in rows]  # fmt: skip
        print(
            "\n"
            + markdown_table(["checkpoint", "accuracy", "macro F1", "weighted F1", "ECE"], cells, "lrrrr")
        )
    return 0


def add_evaluate(sub) -> None:
    """Add ``ferlab evaluate``."""
    s = sub.add_parser(
        "evaluate",
        help="accuracy, F1, per-class table, confusion matrix and ECE of checkpoints on a dataset split",
    )
    s.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        help="run folders, .pt checkpoints, .safetensors files, exported .onnx files (INT8 too) or globs",
    )
    s.add_argument("--dataset", default="fer2013")
    s.add_argument("--split", default="test")
    add_tta(s)
    add_precision(s, "fp32", help="fp32 is the exact reference; bf16/auto is the CPU fast path")
    s.add_argument("--batch-size", type=int, default=256)
    add_threads(s)
    s.add_argument("--out", help="report folder (default: <run>/eval)")
    add_data_dir(s)
    s.set_defaults(func=_cmd_evaluate)


def _cmd_ensemble(args) -> int:
    """Combine checkpoints into an ensemble, compare it with its members on a split, optionally save it."""

    from ..infer.ensemble import run_ensemble, save_ensemble, snapshot_members, write_ensemble_report

    members = expand_globs(args.members or [], "checkpoint")
    for run in args.snapshots or []:
        members += [str(p) for p in snapshot_members(run)]
    if not members:
        raise FerlabError("give the members: --members PATH ... and/or --snapshots RUN_DIR ...")
    ens, report = run_ensemble(
        members, args.dataset, args.split, args.fit_on, args.method, args.greedy, not args.no_replacement,
        args.objective, args.tta, args.batch_size, args.precision, args.data_dir, progress=True,
    )  # fmt: skip
    files = write_ensemble_report(report, args.out)
    print(files["md"].read_text())
    print(f"report: {files['md']}, {files['json']}, {files['png']}")
    if args.save:
        print(f"saved ensemble: {save_ensemble(ens, args.save)}")
    return 0


def add_ensemble(sub) -> None:
    """Add ``ferlab ensemble`` (methods and objectives from :mod:`ferlab.runtime.ensemble`)."""
    from ..runtime.combine import METHODS, OBJECTIVES

    s = sub.add_parser(
        "ensemble",
        help="combine checkpoints (mean, logit, vote, fitted weights, greedy selection), evaluate and save",
        description="Evaluate an ensemble of checkpoints on --split and compare it with every member: accuracy, "
        "pairwise disagreement, parameters and latency (Markdown + JSON + PNG in --out). --method weighted fits "
        "the weights on --fit-on (default val); --greedy selects members there (Caruana). --save writes one "
        ".safetensors that evaluate, predict and Recognizer load like any model.",
    )
    s.add_argument("--members", nargs="+", help="run folders, .pt checkpoints, .safetensors files or globs")
    s.add_argument(
        "--snapshots", nargs="+", metavar="RUN", help="add a run's epoch_*.pt snapshots and best.pt"
    )
    s.add_argument("--method", choices=list(METHODS), default="mean")
    s.add_argument("--fit-on", default="val", help="split for weights and greedy selection (default val)")
    s.add_argument("--objective", choices=list(OBJECTIVES), default="nll", help="weight fitting objective")
    s.add_argument("--greedy", action="store_true", help="greedy forward selection from the members")
    s.add_argument("--no-replacement", action="store_true", help="greedy: pick each member at most once")
    s.add_argument("--dataset", default="fer2013")
    s.add_argument("--split", default="test")
    add_tta(s)
    add_precision(s, "fp32")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--out", required=True, help="report folder")
    s.add_argument("--save", metavar="FILE", help="write the ensemble to FILE (.safetensors)")
    add_data_dir(s)
    s.set_defaults(func=_cmd_ensemble)


COMMANDS = {
    "evaluate": add_evaluate,
    "ensemble": add_ensemble,
}
