"""``ferlab bench train | predict | detect | compare | closeups``: benchmarks on this machine."""

from __future__ import annotations

import sys

from ..errors import FerlabError
from ._args import add_backend, add_data_dir, add_overwrite, add_precision, save_output

FER_HAAR = "haar:min_size=50,max_side=null"  # the settings the `fer` package uses (50 px, 1.1, 5 neighbours)


def _cmd_bench(args) -> int:
    """Run one benchmark: training speed, prediction speed, face detectors, ferlab vs fer, close-ups."""
    from ..analysis.bench import bench_train, format_rows
    from ..models import list_models

    if args.what == "closeups":
        return _cmd_bench_closeups(args)

    if args.what == "compare":
        return _cmd_bench_compare(args)
    if args.what == "predict":
        return _cmd_bench_predict(args)
    if args.what == "detect":
        return _cmd_bench_detect(args)
    if args.what != "train":
        raise FerlabError(f"unknown benchmark {args.what!r}; valid: train, predict, detect")
    names = []
    for pat in args.model or ["smallcnn"]:
        hits = list_models(pat)
        if not hits:
            raise FerlabError(f"no model matches {pat!r}")
        names += hits
    rows = []
    for threads in args.threads:
        for n in names:
            r = bench_train(
                n, args.batch_size, threads, args.precision, args.channels_last, img_size=args.img_size,
                min_time=args.min_time,
            )  # fmt: skip
            rows.append(r)
            print(format_rows([r]).splitlines()[-1], flush=True)
    table = format_rows(rows)
    print("\n" + table)
    if args.out:
        save_output(table, args.out, args.overwrite)
    return 0


def _cmd_bench_predict(args) -> int:
    """Benchmark faces/s and photos/s of shipped models or checkpoints per backend and thread count."""
    from ..analysis.bench import bench_predict, format_predict_rows

    faces = None
    try:  # real FER2013 PrivateTest crops when the data is there; random crops otherwise (said in the table)
        from ..data import load_dataset

        faces = load_dataset("fer2013", args.data_dir)["test"].images[:1024]
    except FerlabError as e:
        print(f"note: benchmarking on random crops ({e})", file=sys.stderr)
    rows = []
    args.batch_size = args.batch_size or 128
    for threads in args.threads:
        for model in args.model or ["default", "fast"]:
            for backend in args.backend or ["torch"]:
                r = bench_predict(
                    model, threads, backend, (args.detector or ["blazeface"])[0], args.batch_size,
                    args.precision, faces=faces,
                )  # fmt: skip
                rows.append(r)
                print(format_predict_rows([r]).splitlines()[-1], flush=True)
    table = format_predict_rows(rows)
    print("\n" + table)
    if args.out:
        save_output(table, args.out, args.overwrite)
    return 0


def _cmd_bench_detect(args) -> int:
    """Benchmark face detectors (time, recall, false faces) on synthetic photos with known faces."""
    from ..analysis.bench import bench_detect, detection_photos, format_detect_rows
    from ..data import load_dataset
    from ..faces.detect import create_detector

    faces = load_dataset("fer2013", args.data_dir)["test"].images
    specs = args.detector or [FER_HAAR, "haar", "haar-fast", "blazeface"]
    detectors = {s: create_detector(s) for s in specs}
    tables = []
    for w, h in ((640, 480), (1280, 720)):
        photos = detection_photos(faces, n=args.photos, size=(w, h), seed=args.seed)
        rows = []
        for threads in args.threads:
            rows += bench_detect(detectors, photos, threads=threads)
            print(format_detect_rows(rows[-len(detectors) :], f"{w}x{h}"), flush=True)
        n_faces = sum(len(b) for _, b in photos)
        tables.append(f"{len(photos)} photos {w}x{h}, {n_faces} faces (seed {args.seed}):\n\n"
                      + format_detect_rows(rows, f"{w}x{h}"))  # fmt: skip
    text = "\n\n".join(tables)
    print("\n" + text)
    if args.out:
        save_output(text, args.out, args.overwrite)
    return 0


def _cmd_bench_compare(args) -> int:
    """Benchmark ferlab against the fer package on FER2013 PrivateTest, side by side."""
    import os

    from ..analysis.compare import bench_compare, format_compare
    from ..data import load_dataset
    from ..hardware import cpu_info

    test = load_dataset("fer2013", args.data_dir)["test"]
    env = " ".join(f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "FERLAB_NO_FAST_BF16")
                   if os.environ.get(k))  # fmt: skip
    head = f"CPU: {cpu_info().summary()}" + (f"; environment: {env}" if env else "")
    print(head, flush=True)
    rows = bench_compare(
        args.model or ["fast", "default"], args.backend or ["torch", "onnx", "onnx-int8"], args.threads,
        test.images, test.labels, n_time=args.faces, rounds=args.rounds,
    )  # fmt: skip
    text = (f"{head}\n\nFER2013 PrivateTest ({len(test)} faces; {args.faces} timed per round, {args.rounds} interleaved "
            f"rounds, medians):\n\n{format_compare(rows)}")  # fmt: skip
    print("\n" + text)
    if args.out:
        save_output(text, args.out, args.overwrite)
    return 0


def _cmd_bench_closeups(args) -> int:
    """Benchmark face detectors on close-ups (a face filling most of the frame)."""
    from ..analysis.bench import bench_closeups, closeup_photos, format_closeup_rows
    from ..data import load_dataset
    from ..faces.detect import create_detector
    from ..hardware import configure_threads

    configure_threads(args.threads[0])
    faces = load_dataset("fer2013", args.data_dir)["test"].images
    photos = closeup_photos(faces, n=args.photos, seed=args.seed)
    dets = {}
    for spec in args.detector or ["haar", "haar-fast", "blazeface"]:
        dets[f"{spec} (no second look)"] = create_detector(spec, pad_retry=0)
        dets[f"{spec}"] = create_detector(spec)
    rows = bench_closeups(dets, photos)
    text = (f"{len(photos)} close-ups (FER2013 PrivateTest crops at 200-400 px filling 70-110 % of the frame, seed "
            f"{args.seed}), {args.threads[0]} thread(s):\n\n{format_closeup_rows(rows)}")  # fmt: skip
    print(text)
    if args.out:
        save_output(text, args.out, args.overwrite)
    return 0


def add_bench(sub) -> None:
    """Add ``ferlab bench`` (its kinds from :data:`ferlab.analysis.bench.BENCHMARKS`)."""
    from ..analysis.bench import BENCHMARKS

    s = sub.add_parser(
        "bench",
        help="benchmarks on this machine: `ferlab bench train --model NAME`, `ferlab bench predict --model default`, "
        "`ferlab bench detect`, `ferlab bench compare` (against the fer package, side by side)",
        description="train: training images/s and share of the matmul peak; predict: faces/s and photos/s of "
        "shipped models; detect: ms/photo, recall and false faces of face detectors on synthetic photos with "
        "known faces (FER2013 PrivateTest crops pasted on scikit-image scenes).",
    )
    s.add_argument("what", choices=list(BENCHMARKS), help="what to benchmark")
    s.add_argument(
        "--model",
        nargs="+",
        default=None,
        help="train: model names or patterns (default smallcnn); predict: shipped names or checkpoints "
        "(default: default fast)",
    )
    s.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="train: default by model size (64 up to 1 GFLOP/image, 16 up to 10, else 8); predict: default 128",
    )
    s.add_argument("--min-time", type=float, default=2.0, help="train: seconds per timed repeat (>= 1 step)")
    add_backend(s, many=True, help="predict (default torch) and compare (default: all three)")
    s.add_argument("--faces", type=int, default=512, help="compare: PrivateTest crops timed per round (512)")
    s.add_argument("--rounds", type=int, default=7, help="compare: interleaved rounds (7)")
    s.add_argument(
        "--detector",
        nargs="+",
        default=None,
        help="predict: the photo pipeline's detector (default blazeface); detect: detectors to compare, "
        "options after a colon, e.g. 'haar:min_size=50,max_side=null' (default: fer's Haar settings, haar, "
        "haar-fast, blazeface)",
    )
    s.add_argument("--photos", type=int, default=100, help="detect: synthetic photos per size (default 100)")
    s.add_argument("--seed", type=int, default=3, help="detect: seed of the synthetic photos (default 3)")
    # the CPU precisions (fp16 is CUDA's), auto first
    add_precision(
        s, "auto", exclude=("fp16",), help="train and predict (auto: bf16 only on CPUs with fast bf16)"
    )
    add_data_dir(s, "data root for real FER2013 crops (default $FERLAB_DATA)")
    s.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default 1 2)"
    )
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--img-size", type=int, help="override the model's input side")
    s.add_argument("--out", help="also write the Markdown table here")
    add_overwrite(s)
    s.set_defaults(func=_cmd_bench)


COMMANDS = {"bench": add_bench}
