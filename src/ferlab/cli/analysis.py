"""``ferlab robustness | explain | report``: analyses of trained checkpoints and one page per run."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import FerlabError
from ._args import add_data_dir, add_precision


def _cmd_robustness(args) -> int:
    """Score checkpoints under graded corruptions (or merge earlier results) and write tables and a plot."""
    import json

    from ..analysis.robustness import merge_robustness, robustness_on_dataset, write_robustness

    if bool(args.checkpoint) == bool(args.merge):
        raise FerlabError(
            "give either --checkpoint (run the corruptions) or --merge (combine earlier results)"
        )
    if args.merge:
        if not args.out:
            raise FerlabError("--merge needs --out")
        results = []
        for f in args.merge:
            try:
                results.append(json.loads(Path(f).read_text()))
            except (OSError, ValueError) as e:
                raise FerlabError(f"{f}: not a readable robustness.json ({e})") from None
        res = merge_robustness(results)
        files = write_robustness(res, args.out)
    else:
        res, files = robustness_on_dataset(
            args.checkpoint, args.dataset, args.split, args.data_dir, args.limit, args.seed, args.corruptions,
            args.batch_size, args.precision, args.out, progress=True,
        )  # fmt: skip
    for label in res["checkpoints"]:
        bs = [b for b in res["buckets"] if b["checkpoint"] == label and b["bucket"] != "mean"]
        summary = ", ".join(f"{b['corruption']} {b['bucket']} {100 * b['accuracy']:.1f}%" for b in bs)
        print(
            f"{label}: clean {100 * res['clean'][label]['accuracy']:.2f}%"
            + (f"; {summary}" if summary else "")
        )
    print(f"{res['n']} images -> {files['md']}, {files['csv']}, {files['json']}, {files['png']}")
    return 0


def add_robustness(sub) -> None:
    """Add ``ferlab robustness``."""
    s = sub.add_parser(
        "robustness",
        help="accuracy under rotation, occlusion, brightness/contrast, blur and JPEG at graded severities",
        description="Apply seeded, deterministic corruptions to the same sample of face crops for every checkpoint "
        "and write robustness.md/.csv/.json and a line plot of accuracy against severity (see "
        "ferlab.analysis.corruptions for the grids; buckets: rotation within/beyond +-30 deg, brightness and "
        "contrast within +-30%% / beyond +-50%%).",
    )
    s.add_argument("--checkpoint", nargs="+", help="run folders, .pt or .safetensors (or globs)")
    s.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="instead of running: combine robustness.json files made on the same images into one table/plot",
    )
    s.add_argument("--dataset", default="fer2013")
    s.add_argument("--split", default="test")
    s.add_argument("--limit", type=int, help="a seeded random sample of N images (default: the whole split)")
    s.add_argument("--seed", type=int, default=0, help="sample and corruption seed (default 0)")
    s.add_argument("--corruptions", nargs="+", metavar="NAME", help="subset to run (default all)")
    s.add_argument("--batch-size", type=int, default=256)
    add_precision(s, "fp32")
    s.add_argument("--out", help="output folder (default: <run>/robustness)")
    add_data_dir(s)
    s.set_defaults(func=_cmd_robustness)


def _cmd_explain(args) -> int:
    """Write Grad-CAM heat maps of checkpoints on images or dataset samples, with a comparison grid."""
    from ..analysis.explain import explain, split_args

    ckpts, images = split_args(args.checkpoint, args.images)
    faces, files, skipped = explain(
        ckpts, images, args.out, args.method, args.target, not args.no_detect, args.dataset, args.split,
        args.data_dir, args.limit, args.seed, args.margin,
    )  # fmt: skip
    for s in skipped:
        print(f"skipped: {s}", file=sys.stderr)
    print(f"{len(faces)} face(s) x {len(faces[0].results)} checkpoint(s) -> {files['grid']}, {files['json']}")
    return 0


def add_explain(sub) -> None:
    """Add ``ferlab explain`` (its methods from :data:`ferlab.analysis.explain.METHODS`)."""
    from ..analysis.explain import METHODS

    s = sub.add_parser(
        "explain",
        help="Grad-CAM heat maps of checkpoints on photos, crops or dataset samples, with a comparison grid",
        description="Heat maps on each model's gradcam_layer (needs: pip install -e '.[explain]'). Checkpoints "
        "and images may follow --checkpoint in any order: image files (by extension) and folders without "
        "best.pt/last.pt are images. Writes overlays/, explain_grid.png (rows: faces; columns: the face, then "
        "one per checkpoint with its predicted label) and explain.json.",
    )
    s.add_argument("--checkpoint", nargs="+", required=True, metavar="PATH", help="checkpoints (and images)")
    s.add_argument("images", nargs="*", help="photos, face crops (--no-detect) or folders of them")
    s.add_argument("--out", default="explain", help="output folder (default ./explain)")
    s.add_argument("--method", choices=list(METHODS), default="gradcam")
    s.add_argument(
        "--class", dest="target", default="predicted", help="predicted (default), all, or a class name"
    )
    s.add_argument("--no-detect", action="store_true", help="the images are face crops: no face detection")
    s.add_argument("--margin", type=float, default=0.1, help="margin around a detected face (default 0.1)")
    s.add_argument("--dataset", help="explain dataset samples instead of image files")
    s.add_argument("--split", default="test")
    s.add_argument("--limit", type=int, help="faces to explain (default 8 dataset samples, all files)")
    s.add_argument("--seed", type=int, default=0, help="dataset sample seed")
    add_data_dir(s)
    s.set_defaults(func=_cmd_explain)


def _cmd_report(args) -> int:
    """Write one self-contained HTML page of a run."""
    from ..analysis.report import write_report

    path = write_report(args.run, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, self-contained)")
    return 0


def add_report(sub) -> None:
    """Add ``ferlab report``."""
    s = sub.add_parser(
        "report",
        help="one self-contained HTML page of a run: curves, evaluations, robustness, Grad-CAM grid",
    )
    s.add_argument("run", help="run folder (with metrics.csv, eval/, robustness/, explain/ ...)")
    s.add_argument("--out", help="HTML file (default: RUN/report.html)")
    s.set_defaults(func=_cmd_report)


COMMANDS = {
    "robustness": add_robustness,
    "explain": add_explain,
    "report": add_report,
}
