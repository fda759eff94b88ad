"""``ferlab datasets | balance | export-data | prepare``: what a data root holds, and making datasets."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import FerlabError
from ._args import add_data_dir, add_overwrite, dataset_help, detector_names


def _cmd_datasets(args) -> int:
    """List the datasets under the data root with their split sizes and class counts."""
    from ..data import find_datasets, load_dataset
    from ..data.balance import count_table, format_table, plot_class_counts
    from ..data.base import resolve_root

    root = resolve_root(args.data_dir)
    found = find_datasets(root)
    print(f"data root: {root}")
    if not found:
        print("no datasets found (layouts: see `ferlab datasets --help`)")
        return 0
    for n in found:
        ds = load_dataset(n, root)
        extra = f", mode={ds.info['mode']}, dropped {ds.info['dropped']}" if "mode" in ds.info else ""
        print(f"\n## {n}  ({found[n]}{extra})\n")
        print(format_table(*count_table(ds)))
        skipped = ds.info.get("skipped")
        if skipped is not None and skipped.total:
            skipped.announce(n, file=sys.stdout)
        if args.plot:
            print(f"chart: {plot_class_counts(ds, Path(args.plot) / f'{n}_class_counts.png')}")
    return 0


def add_datasets(sub) -> None:
    """Add ``ferlab datasets``."""
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
    add_data_dir(s)
    s.add_argument("--plot", metavar="DIR", help="also write a class-count bar chart per dataset into DIR")
    s.set_defaults(func=_cmd_datasets)


def _cmd_balance(args) -> int:
    """Print class counts, the images each class needs for balance, and class weights of a dataset."""
    from ..data import load_dataset
    from ..data.balance import class_weights, deficit, format_table, plot_class_counts

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


def add_balance(sub) -> None:
    """Add ``ferlab balance``."""
    s = sub.add_parser(
        "balance", help="class counts, images needed for balance and class weights for a dataset"
    )
    s.add_argument("--dataset", default="fer2013", help=dataset_help("fer2013"))
    add_data_dir(s)
    s.add_argument("--splits", nargs="*", help="splits to report (default: all but *_dedup)")
    s.add_argument(
        "--target", default="max", help="'max', a count per class, or a ratio like 0.5 (default max)"
    )
    s.add_argument("--plot", metavar="PNG", help="write a bar chart of the class counts")
    s.set_defaults(func=_cmd_balance)


def _cmd_export_data(args) -> int:
    """Write a dataset to one HDF5 or npz file and time reloading it."""
    import time

    from ..data import load_dataset
    from ..data.cache import load_cached, save_dataset

    out = Path(args.out)
    for src in _dataset_sources(args.dataset, args.data_dir):
        if out.resolve() == src.resolve() or (src.is_dir() and src.resolve() in out.resolve().parents):
            raise FerlabError(f"{out} is inside the data it is made from ({src}); write the cache elsewhere")
    if out.exists() and not args.overwrite:
        raise FerlabError(f"{out} exists; pass --overwrite to replace it")
    from ..io import SkipReport

    ds = load_dataset(args.dataset, args.data_dir)
    skipped = SkipReport().merge(ds.info.get("skipped"))
    path = save_dataset(ds, out, splits=args.splits, size=args.size, report=skipped)
    skipped.announce(f"{args.dataset}", Path(f"{path}.skipped.txt"))
    t = time.perf_counter()
    back = load_cached(path)
    dt = time.perf_counter() - t
    sizes = ", ".join(f"{n} {len(s)}" for n, s in back.splits.items())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB: {sizes}); reloads in {dt:.2f} s")
    return 0


def _dataset_sources(name: str, data_dir) -> list[Path]:
    """Files and folders a dataset reference reads (an export must never write onto them)."""
    from ..data.base import resolve_root

    if ":" in name:
        return [Path(name.split(":", 1)[1])]
    try:
        root = resolve_root(data_dir)
    except FerlabError:
        return []
    base = name.rstrip("7")
    folders = {base, "fer2013"} if base == "ferplus" else {base}
    return [root / f for f in sorted(folders)]


def add_export_data(sub) -> None:
    """Add ``ferlab export-data``."""
    s = sub.add_parser("export-data", help="write a dataset to HDF5 (.h5) or .npz for fast loading")
    s.add_argument("--dataset", required=True, help=dataset_help())
    s.add_argument("--out", required=True, help="output file (.h5, .hdf5 or .npz)")
    s.add_argument("--splits", nargs="*", help="splits to write (default all)")
    s.add_argument("--size", type=int, help="resize path-based images to SIZE x SIZE grayscale")
    add_overwrite(s, "replace --out if it exists (never a source file)")
    add_data_dir(s)
    s.set_defaults(func=_cmd_export_data)


def _cmd_prepare(args) -> int:
    """Detect, align, crop and resize the faces of a folder of photos into a dataset."""
    from ..faces.pipeline import prepare_folder

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
        overwrite=args.overwrite,
    )
    print(report.summary())
    report.skips.announce("prepare", Path(f"{str(report.output).rstrip('/')}.skipped.txt"))
    return 0


def add_prepare(sub) -> None:
    """Add ``ferlab prepare`` (output formats and keep modes from :mod:`ferlab.faces.pipeline`)."""
    from ..faces.pipeline import FORMATS, KEEP_MODES

    s = sub.add_parser(
        "prepare",
        help="detect, crop and resize faces in a folder of photos into a dataset",
        description="Run face detection + crop + resize over SRC (recursively; class sub-folders are kept) and write "
        "a dataset to OUT (a folder of PNGs, or an .h5 file). Reports images with no face, several faces, or unreadable.",
    )
    s.add_argument("src", help="folder of raw photos (optionally SRC/<class>/...)")
    s.add_argument("out", help="output folder, or .h5 file with --format hdf5")
    s.add_argument("--detector", default="haar", help=f"face detector: {detector_names()} (default haar)")
    s.add_argument("--size", type=int, default=48, help="output side in pixels (default 48)")
    s.add_argument(
        "--margin", type=float, default=0.2, help="margin around the face box, fraction of its side"
    )
    s.add_argument("--rgb", action="store_true", help="keep colour (default grayscale)")
    s.add_argument("--no-align", action="store_true", help="do not rotate faces to level the eyes")
    s.add_argument("--format", choices=list(FORMATS), default="folder")
    add_overwrite(s, "replace an existing .h5 / add to a non-empty folder")
    s.add_argument("--keep", choices=list(KEEP_MODES), default="largest", help="faces to keep per photo")
    s.set_defaults(func=_cmd_prepare)


COMMANDS = {
    "datasets": add_datasets,
    "balance": add_balance,
    "export-data": add_export_data,
    "prepare": add_prepare,
}
