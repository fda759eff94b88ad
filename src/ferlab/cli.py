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
THREADS_HELP = "CPU threads for torch, ONNX Runtime and OpenCV (default: the cores this process may use, or $FERLAB_THREADS)"
BACKENDS = ("torch", "onnx", "onnx-int8")


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
        skipped = ds.info.get("skipped")
        if skipped is not None and skipped.total:
            skipped.announce(n, file=sys.stdout)
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

    out = Path(args.out)
    for src in _dataset_sources(args.dataset, args.data_dir):
        if out.resolve() == src.resolve() or (src.is_dir() and src.resolve() in out.resolve().parents):
            raise FerlabError(f"{out} is inside the data it is made from ({src}); write the cache elsewhere")
    if out.exists() and not args.overwrite:
        raise FerlabError(f"{out} exists; pass --overwrite to replace it")
    from .io import SkipReport

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
    from .data.base import resolve_root

    if ":" in name:
        return [Path(name.split(":", 1)[1])]
    try:
        root = resolve_root(data_dir)
    except FerlabError:
        return []
    base = name.rstrip("7")
    folders = {base, "fer2013"} if base == "ferplus" else {base}
    return [root / f for f in sorted(folders)]


def _cmd_export(args) -> int:
    import hashlib

    from .infer.onnx import (
        OnnxModel,
        calibration_faces,
        check_parity,
        export_onnx,
        parity_faces,
        quantize_int8,
    )  # fmt: skip
    from .infer.recognizer import PRETRAINED, pretrained_path, resolve_model
    from .io import write_atomic

    ref = args.checkpoint or args.model
    model = resolve_model(ref)
    stem = Path(str(ref).rstrip("/")).stem if args.checkpoint else str(ref)
    out = Path(args.out or f"{stem}{'.int8' if args.quantize else ''}.onnx")
    src = pretrained_path(ref) if args.model in PRETRAINED else Path(ref)
    if out.exists() and not args.overwrite:
        raise FerlabError(f"{out} exists; pass --overwrite to replace it")
    if src.is_file() and out.resolve() == src.resolve():
        raise FerlabError(f"{out} is the model being exported; choose another --out")
    if args.quantize:
        calib = calibration_faces(args.calib_faces, args.data_dir)
        meta = {"source_sha256": hashlib.sha256(src.read_bytes()).hexdigest()} if src.is_file() else {}
        meta["source"] = src.name if src.is_file() else str(ref)
        path = write_atomic(quantize_int8(model, calib, opset=args.opset, extra_meta=meta), out)
    else:
        path = export_onnx(model, out, opset=args.opset, dynamic_batch=not args.static_batch)
    onnx_model = OnnxModel.from_file(path)
    images, what = parity_faces(args.parity_faces, args.data_dir)
    diff = check_parity(model, onnx_model, images)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {onnx_model.model_name}, opset {args.opset}, "
        f"{'int8 (static, calibrated on ' + str(args.calib_faces) + ' FER2013 training faces)' if args.quantize else ''}"
        f"{'batch 1' if args.static_batch and not args.quantize else '' if args.quantize else 'dynamic batch'}, "
        f"classes: {', '.join(onnx_model.classes)})"
    )
    if args.quantize:
        from .runtime.predict import predict_probs

        agree = float(
            (predict_probs(model, images).argmax(1) == onnx_model.predict_probs(images).argmax(1)).mean()
        )
        print(f"INT8 vs PyTorch fp32 on {what}: top-1 agreement {100 * agree:.1f} %, max |dp| = {diff:.3f}")
        if agree < args.min_agreement:
            raise FerlabError(
                f"INT8 and fp32 agree on {100 * agree:.1f} % < {100 * args.min_agreement:.0f} % of faces"
            )
        return 0
    print(f"parity vs PyTorch fp32 on {what}: max |p_onnx - p_torch| = {diff:.2e}")
    if diff > args.tolerance:
        raise FerlabError(f"ONNX and PyTorch probabilities differ by {diff:.2e} > {args.tolerance:g}")
    return 0


def _cmd_serve(args) -> int:
    from .infer.serve import run

    run(
        args.host,
        args.port,
        model=args.model,
        detector=args.detector,
        backend=args.backend,
        threads=args.threads,
        max_pixels=args.max_pixels,
        docs=args.docs,
    )
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
        overwrite=args.overwrite,
    )
    print(report.summary())
    report.skips.announce("prepare", Path(f"{str(report.output).rstrip('/')}.skipped.txt"))
    return 0


def _cmd_list_models(args) -> int:
    from .models import list_models
    from .models.profile import model_table

    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}")
        return 1
    print(model_table(names, flops=not args.no_flops))
    if "gclenet" in names:
        print("\n" + gclenet_forms(flops=not args.no_flops))
    print("\n" + shipped_table())
    return 0


def gclenet_forms(flops: bool = True) -> str:
    """GCLENet's training and fused (test-time) forms side by side: the paper reports the fused one."""
    from .models import create_model
    from .models.profile import count_flops

    m = create_model("gclenet").eval()
    train_p = sum(p.numel() for p in m.parameters())
    train_f = count_flops(m, (3, 224, 224)) / 1e9 if flops else None
    m.fuse()
    fused_p = sum(p.numel() for p in m.parameters())
    fused_f = count_flops(m, (3, 224, 224)) / 1e9 if flops else None
    f = (lambda v: f", {v:.3f} GFLOPs") if flops else (lambda v: "")
    return (f"gclenet forms: training {train_p:,} params{f(train_f)}; fused for testing (GCLENet.fuse(), each "
            f"asymmetric conv block folded into one 3x3 conv) {fused_p:,} params{f(fused_f)}. Paper 003 reports "
            "the fused form (ResNet34 21.29 M, +LFA 21.58 M).")  # fmt: skip


def shipped_table() -> str:
    """The trained weights that load by name (``--model NAME``), with their architecture and classes."""
    import json

    from safetensors import safe_open

    from .data.balance import format_table
    from .infer.recognizer import list_pretrained, pretrained_int8_path, pretrained_path

    rows = []
    for name in list_pretrained(available_only=True):
        with safe_open(str(pretrained_path(name)), "pt") as f:
            meta = f.metadata() or {}
        classes = json.loads(meta.get("classes", "[]"))
        rows.append(
            [name, meta.get("model_name", "?"), len(classes), "yes" if pretrained_int8_path(name) else "no"]
        )
    head = (
        "Trained weights shipped with ferlab (--model NAME, Recognizer(NAME)); architectures above have none:"
    )
    return (
        head + "\n\n" + format_table(["name", "architecture", "classes", "INT8 (--backend onnx-int8)"], rows)
    )


def _cmd_train(args) -> int:
    from .engine import train

    overrides = list(args.overrides or []) + ([f"threads={args.threads}"] if args.threads else [])
    summary = train(args.config, overrides)
    print(format_train_summary(summary))
    return 0


def format_train_summary(s: dict) -> str:
    """The end of ``ferlab train``: where the run is, what stopped it, and a table of its test splits."""
    from .data.balance import format_table

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


ZOO_QUEUE = "queues/zoo_fer2013_cpu.yaml"


def _cmd_zoo(args) -> int:
    from .engine.queue import queue_status, run_queue

    overrides = list(args.overrides or [])
    if getattr(args, "threads", None):
        overrides.append(f"threads={args.threads}")
    if args.action == "train":
        res = run_queue(args.queue, only=args.only, overrides=overrides)
        return 1 if any(r["status"] == "failed" for r in res) else 0
    if args.action == "status":
        from .data.balance import format_table

        rows = queue_status(args.queue, overrides)
        print(format_table(
            ["run", "model", "state", "epochs", "train min", "budget min", "best val acc"],
            [[r["name"], r["model"], r["state"], r["epochs"] if r["epochs"] is not None else "?",
              f"{r['train_min']:.1f}" if r["train_min"] is not None else "?", r["budget_min"] or "-",
              f"{100 * r['best_val_acc']:.2f} %" if r["best_val_acc"] is not None else "-"] for r in rows],
        ))  # fmt: skip
        return 0
    from .analysis.zoo import zoo_table

    out = zoo_table(args.queue, args.out, overrides=overrides, data_dir=args.data_dir, tta=not args.no_tta)
    print(f"wrote {out}")
    return 0


def _cmd_evaluate(args) -> int:
    import glob

    from .data import load_dataset
    from .hardware import configure_threads
    from .infer.recognizer import PRETRAINED, resolve_model
    from .runtime.evaluate import evaluate_model, write_report

    configure_threads(args.threads)
    paths = []
    for c in args.checkpoint:
        hits = sorted(glob.glob(c)) if any(ch in c for ch in "*?[") else [c]
        if not hits:
            raise FerlabError(f"no checkpoint matches {c!r}")
        paths += hits
    ds = load_dataset(args.dataset, args.data_dir)
    from .data.synthetic import mark_synthetic

    split = mark_synthetic(ds).split(args.split).real_only()  # evaluation scores real faces only
    rows = []
    for p in paths:
        model = resolve_model(p, args.threads)  # shipped names, run folders, .pt, .safetensors, .onnx alike
        classes = tuple(model.classes)
        if p in PRETRAINED and not args.out:
            raise FerlabError(
                f"{p} is a shipped model: give --out for its report (the package folder is not one)"
            )
        from .io import SkipReport

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
        print("\n| checkpoint | accuracy | macro F1 | weighted F1 | ECE |\n|---|---:|---:|---:|---:|")
        for p, m in rows:
            print(
                f"| {p} | {100 * m['accuracy']:.2f} | {m['macro_f1']:.4f} | {m['weighted_f1']:.4f} | {m['ece']:.4f} |"
            )
    return 0


def _cmd_bench_predict(args) -> int:
    from .analysis.bench import bench_predict, format_predict_rows

    faces = None
    try:  # real FER2013 PrivateTest crops when the data is there; random crops otherwise (said in the table)
        from .data import load_dataset

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
        Path(args.out).write_text(table + "\n")
    return 0


FER_HAAR = "haar:min_size=50,max_side=null"  # the settings the `fer` package uses (50 px, 1.1, 5 neighbours)


def _cmd_bench_detect(args) -> int:
    from .analysis.bench import bench_detect, detection_photos, format_detect_rows
    from .data import load_dataset
    from .faces.detect import create_detector

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
        Path(args.out).write_text(text + "\n")
    return 0


def _cmd_bench_compare(args) -> int:
    import os

    from .analysis.compare import bench_compare, format_compare
    from .data import load_dataset
    from .hardware import cpu_info

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
        from .io import write_atomic

        write_atomic((text + "\n").encode(), args.out)
    return 0


def _cmd_bench_closeups(args) -> int:
    from .analysis.bench import bench_closeups, closeup_photos, format_closeup_rows
    from .data import load_dataset
    from .faces.detect import create_detector
    from .hardware import configure_threads

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
        from .io import write_atomic

        write_atomic(text + "\n", args.out)
    return 0


def _cmd_bench(args) -> int:
    from .analysis.bench import bench_train, format_rows
    from .models import list_models

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
        Path(args.out).write_text(table + "\n")
    return 0


def _cmd_protocol(args) -> int:
    from .engine import protocols
    from .engine.config import load_config

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


def _cmd_predict(args) -> int:
    from contextlib import ExitStack

    from tqdm.auto import tqdm

    from .infer.predict import (
        AnnotationWriter,
        CsvWriter,
        JsonlWriter,
        PredictionRecord,
        PredictSummary,
        predict_paths,
        predict_video,
    )
    from .infer.recognizer import Recognizer

    if not args.inputs and args.camera is None:
        raise FerlabError("nothing to predict: give image/video files, folders or patterns, or --camera N")
    rec = Recognizer(
        args.model,
        detector=args.detector,
        device=args.device,
        tta=args.tta,
        batch_size=args.batch_size,
        precision=args.precision,
        backend=args.backend,
        margin=args.margin,
        min_face=args.min_face,
        threads=args.threads,
    )
    opts = dict(
        detect=not args.no_detect,
        every=args.every,
        smooth=args.smooth,
        max_frames=args.max_frames,
        progress=not args.quiet,
        keep_images=args.annotate is not None,
    )
    summary = PredictSummary()
    for target in (args.output, args.csv):
        if target not in (None, "-") and Path(target).exists() and not args.overwrite:
            raise FerlabError(f"{target} exists; pass --overwrite to replace it")
    with ExitStack() as stack:
        out = args.output if args.output not in (None, "-") else sys.stdout
        writers = [stack.enter_context(JsonlWriter(out))]
        if args.csv:
            writers.append(stack.enter_context(CsvWriter(args.csv, rec.classes)))
        if args.annotate is not None:
            writers.append(stack.enter_context(AnnotationWriter(args.annotate)))

        def records():
            yield from predict_paths(rec, args.inputs, **opts)
            if args.camera is not None:
                try:
                    yield from predict_video(rec, int(args.camera), **opts)
                except FerlabError as e:
                    yield PredictionRecord(f"camera:{args.camera}", error=str(e))

        try:
            for r in records():
                summary.add(r)
                if not r.ok:
                    tqdm.write(f"ferlab predict: skipped {r.error}", file=sys.stderr)
                for w in writers:
                    w.write(r)
        except KeyboardInterrupt:  # stopping a camera or a long video keeps what was written
            print("interrupted", file=sys.stderr)
    print(f"ferlab predict: {summary}", file=sys.stderr)
    if summary.no_face and not args.no_detect:
        print(f"ferlab predict: hint: {summary.no_face} image(s) without a face found; if they are already face "
              "crops, pass --no-detect", file=sys.stderr)  # fmt: skip
    if args.annotate is not None:
        print(f"ferlab predict: annotated output in {args.annotate}", file=sys.stderr)
    if summary.read == 0:
        raise FerlabError(f"no image or video frame could be read ({summary.unreadable} unreadable)")
    return 0


def _cmd_ensemble(args) -> int:
    import glob

    from .infer.ensemble import run_ensemble, save_ensemble, snapshot_members, write_ensemble_report

    members = []
    for c in args.members or []:
        hits = sorted(glob.glob(c)) if any(ch in c for ch in "*?[") else [c]
        if not hits:
            raise FerlabError(f"no checkpoint matches {c!r}")
        members += hits
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


def _cmd_robustness(args) -> int:
    import json

    from .analysis.robustness import merge_robustness, robustness_on_dataset, write_robustness

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


def _cmd_explain(args) -> int:
    from .analysis.explain import explain, split_args

    ckpts, images = split_args(args.checkpoint, args.images)
    faces, files, skipped = explain(
        ckpts, images, args.out, args.method, args.target, not args.no_detect, args.dataset, args.split,
        args.data_dir, args.limit, args.seed, args.margin,
    )  # fmt: skip
    for s in skipped:
        print(f"skipped: {s}", file=sys.stderr)
    print(f"{len(faces)} face(s) x {len(faces[0].results)} checkpoint(s) -> {files['grid']}, {files['json']}")
    return 0


def _cmd_profile(args) -> int:
    from .analysis.complexity import format_table, profile_models
    from .models import list_models

    if args.all:
        names = list_models()
    else:
        if not args.model:
            raise FerlabError("give --model NAME [NAME ...] or --all")
        names = []
        for pat in args.model:
            hits = list_models(pat)
            if not hits:
                raise FerlabError(f"no model matches {pat!r}")
            names += hits
    rows = profile_models(
        names, input_size=args.input_size, batch=args.batch, precisions=args.precision, repeats=args.repeats,
        max_seconds=args.max_seconds, threads=args.threads, isolate=not args.in_process, progress=True,
    )  # fmt: skip
    table = format_table(rows)
    print("\n" + table)
    if args.out:
        import json

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


def _cmd_report(args) -> int:
    from .analysis.report import write_report

    path = write_report(args.run, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, self-contained)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .infer.recognizer import PRETRAINED

    shipped = ", ".join(PRETRAINED)
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

    from .generate.cli import add_generate_parser

    add_generate_parser(sub)

    s = sub.add_parser("export-data", help="write a dataset to HDF5 (.h5) or .npz for fast loading")
    s.add_argument("--dataset", required=True, help="dataset name, folder:PATH or cache:PATH")
    s.add_argument("--out", required=True, help="output file (.h5, .hdf5 or .npz)")
    s.add_argument("--splits", nargs="*", help="splits to write (default all)")
    s.add_argument("--size", type=int, help="resize path-based images to SIZE x SIZE grayscale")
    s.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (never a source file)"
    )
    s.add_argument("--data-dir", help=DATA_HELP)
    s.set_defaults(func=_cmd_export_data)

    s = sub.add_parser(
        "export",
        help="export a model to ONNX (class names and data config inside) and check it against PyTorch",
        description="Write the model as a self-describing ONNX file and print the largest probability "
        "difference to PyTorch fp32 on real FER2013 test faces ($FERLAB_DATA), or on random crops without data.",
    )
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="run folder, .pt checkpoint or .safetensors file")
    g.add_argument("--model", help=f"shipped model name ({shipped})")
    s.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    s.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    s.add_argument("--static-batch", action="store_true", help="fix the batch size to 1 (default dynamic)")
    s.add_argument("--out", help="file to write (default: NAME.onnx or NAME.int8.onnx here)")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s.add_argument("--quantize", choices=["int8"], help="INT8 static quantization (ONNX Runtime)")
    s.add_argument(
        "--calib-faces", type=int, default=512, help="FER2013 training faces that calibrate INT8 (512)"
    )
    s.add_argument("--min-agreement", type=float, default=0.95,
                   help="INT8: fail below this top-1 agreement with fp32 on the parity faces (0.95)")  # fmt: skip
    s.add_argument("--parity-faces", type=int, default=64, help="faces for the parity check (default 64)")
    s.add_argument(
        "--tolerance", type=float, default=1e-4, help="fail if the parity difference exceeds it (1e-4)"
    )
    s.add_argument("--data-dir", help=DATA_HELP)
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser(
        "serve",
        help="web service and demo page: upload a photo, see faces and expression probabilities",
        description="Serve POST /predict (multipart image -> JSON), GET /health, GET /models and a demo page "
        "at / (upload or webcam snapshot). Needs the web extra: pip install 'ferlab[web]'.",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument(
        "--model", default="default", help="shipped model name, checkpoint or .safetensors (default: default)"
    )
    s.add_argument(
        "--detector",
        default="blazeface",
        help="face detector: blazeface (default), haar-fast, haar, mtcnn, mediapipe",
    )
    s.add_argument("--backend", choices=list(BACKENDS), default="torch", help="inference backend")
    s.add_argument("--threads", type=int, help=THREADS_HELP)
    s.add_argument(
        "--max-pixels", type=int, default=16_000_000, help="largest image in pixels (413 above; 16 Mpx)"
    )
    s.add_argument("--docs", action="store_true", help="also serve FastAPI's /docs and /openapi.json")
    s.set_defaults(func=_cmd_serve)

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
        "--overwrite", action="store_true", help="replace an existing .h5 / add to a non-empty folder"
    )
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
    s.add_argument("--threads", type=int, help=THREADS_HELP + "; same as threads=N")
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
        help="run folders, .pt checkpoints, .safetensors files, exported .onnx files (INT8 too) or globs",
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
    s.add_argument("--threads", type=int, help=THREADS_HELP)
    s.add_argument("--out", help="report folder (default: <run>/eval)")
    s.add_argument("--data-dir", help=DATA_HELP)
    s.set_defaults(func=_cmd_evaluate)

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
    s.add_argument("--method", choices=["mean", "logit", "vote", "weighted"], default="mean")
    s.add_argument("--fit-on", default="val", help="split for weights and greedy selection (default val)")
    s.add_argument("--objective", choices=["nll", "accuracy"], default="nll", help="weight fitting objective")
    s.add_argument("--greedy", action="store_true", help="greedy forward selection from the members")
    s.add_argument("--no-replacement", action="store_true", help="greedy: pick each member at most once")
    s.add_argument("--dataset", default="fer2013")
    s.add_argument("--split", default="test")
    s.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none")
    s.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"], default="fp32")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--out", required=True, help="report folder")
    s.add_argument("--save", metavar="FILE", help="write the ensemble to FILE (.safetensors)")
    s.add_argument("--data-dir", help=DATA_HELP)
    s.set_defaults(func=_cmd_ensemble)

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

    s = sub.add_parser(
        "bench",
        help="benchmarks on this machine: `ferlab bench train --model NAME`, `ferlab bench predict --model default`, "
        "`ferlab bench detect`, `ferlab bench compare` (against the fer package, side by side)",
        description="train: training images/s and share of the matmul peak; predict: faces/s and photos/s of "
        "shipped models; detect: ms/photo, recall and false faces of face detectors on synthetic photos with "
        "known faces (FER2013 PrivateTest crops pasted on scikit-image scenes).",
    )
    s.add_argument(
        "what", choices=["train", "predict", "detect", "compare", "closeups"], help="what to benchmark"
    )
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
    s.add_argument("--backend", nargs="+", default=None, choices=["torch", "onnx", "onnx-int8"],
                   help="predict (default torch) and compare (default: all three)")  # fmt: skip
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
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="train and predict (auto: bf16 only on CPUs with fast bf16)")  # fmt: skip
    s.add_argument("--data-dir", help="data root for real FER2013 crops (default $FERLAB_DATA)")
    s.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default 1 2)"
    )
    s.add_argument("--channels-last", action="store_true")
    s.add_argument("--img-size", type=int, help="override the model's input side")
    s.add_argument("--out", help="also write the Markdown table here")
    s.set_defaults(func=_cmd_bench)

    s = sub.add_parser(
        "predict",
        help="recognise expressions in photos, folders, globs, videos or a camera: JSON lines, CSV, annotated images",
        description="Detect every face (largest first) and print one JSON line per image or video frame with each "
        "face's box, label and the probability of every class. Folders are searched recursively; videos "
        "(mp4/avi/mov/...) give one record per processed frame with its index and time. An image without a face "
        "gets an empty face list; unreadable files are reported on stderr and skipped; a summary ends the run.",
    )
    s.add_argument("inputs", nargs="*", help="image or video files, folders, glob patterns (quote them)")
    s.add_argument(
        "--camera", type=int, metavar="N", help="also read camera N (until Ctrl-C or --max-frames)"
    )
    s.add_argument("--model", default="default", help=f"a shipped model ({shipped}) or a checkpoint path")
    s.add_argument(
        "--detector",
        default="blazeface",
        help="face detector: blazeface (default), haar-fast, haar, mtcnn or mediapipe; options after a colon",
    )
    s.add_argument("--no-detect", action="store_true", help="inputs are face crops: classify each as a whole")
    s.add_argument("--output", metavar="FILE.jsonl", help="write the JSON lines here instead of stdout")
    s.add_argument("--csv", metavar="FILE", help="also write one CSV row per face")
    s.add_argument("--overwrite", action="store_true", help="replace --output/--csv files that exist")
    s.add_argument("--annotate", metavar="DIR", help="write images/videos with boxes, labels and bar charts")
    s.add_argument("--every", type=int, default=1, metavar="N", help="video: process every N-th frame")
    s.add_argument(
        "--smooth",
        type=float,
        metavar="ALPHA",
        help="video: moving average of each face's probabilities over frames; weight of the newest in (0, 1]",
    )
    s.add_argument("--max-frames", type=int, metavar="N", help="video/camera: stop after N processed frames")
    s.add_argument("--device", default="cpu", help="cpu (default), cuda or mps")
    s.add_argument("--batch-size", type=int, default=128, help="face crops per forward pass (default 128)")
    s.add_argument("--threads", type=int, help=THREADS_HELP)
    s.add_argument("--tta", choices=["none", "flip", "tencrop"], default="none")
    s.add_argument("--backend", choices=list(BACKENDS), default="torch")
    s.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], default="auto")
    s.add_argument(
        "--margin", type=float, default=0.1, help="margin around each face box, fraction of its side"
    )
    s.add_argument(
        "--min-face",
        type=int,
        help="smallest face side in pixels (default: the detector's, 30 for blazeface)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_predict)

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
    s.add_argument("--precision", choices=["fp32", "bf16", "fp16", "auto"], default="fp32")
    s.add_argument("--out", help="output folder (default: <run>/robustness)")
    s.add_argument("--data-dir", help=DATA_HELP)
    s.set_defaults(func=_cmd_robustness)

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
    s.add_argument("--method", choices=["gradcam", "gradcam++", "scorecam"], default="gradcam")
    s.add_argument(
        "--class", dest="target", default="predicted", help="predicted (default), all, or a class name"
    )
    s.add_argument("--no-detect", action="store_true", help="the images are face crops: no face detection")
    s.add_argument("--margin", type=float, default=0.1, help="margin around a detected face (default 0.1)")
    s.add_argument("--dataset", help="explain dataset samples instead of image files")
    s.add_argument("--split", default="test")
    s.add_argument("--limit", type=int, help="faces to explain (default 8 dataset samples, all files)")
    s.add_argument("--seed", type=int, default=0, help="dataset sample seed")
    s.add_argument("--data-dir", help=DATA_HELP)
    s.set_defaults(func=_cmd_explain)

    s = sub.add_parser(
        "profile",
        help="parameters, FLOPs, peak memory, latency (batch 1) and throughput (batch 64), fp32 and bf16",
        description="Complexity of models on this machine (CPU, and CUDA when present). FLOPs from "
        "torch.utils.flop_counter (one multiply-add = 2 FLOPs). Latency: median of timed runs after warm-up. "
        "Peak memory: on CPU the resident-set high-water mark above the loaded model during one forward, in a "
        "fresh process per model; on CUDA torch.cuda.max_memory_allocated (see ferlab.analysis.complexity).",
    )
    s.add_argument("--model", nargs="+", help="model names or fnmatch patterns")
    s.add_argument("--all", action="store_true", help="every registered model (slow: run on an idle machine)")
    s.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: native)")
    s.add_argument("--batch", type=int, default=64, help="throughput batch size (default 64)")
    s.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    s.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (default 10)")
    s.add_argument("--max-seconds", type=float, default=20.0, help="time cap per measurement (default 20)")
    s.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    s.add_argument(
        "--in-process", action="store_true", help="measure in this process (peak memory less exact)"
    )
    s.add_argument("--out", help="write the Markdown table here (and the rows as JSON beside it)")
    s.set_defaults(func=_cmd_profile)

    s = sub.add_parser(
        "report",
        help="one self-contained HTML page of a run: curves, evaluations, robustness, Grad-CAM grid",
    )
    s.add_argument("run", help="run folder (with metrics.csv, eval/, robustness/, explain/ ...)")
    s.add_argument("--out", help="HTML file (default: RUN/report.html)")
    s.set_defaults(func=_cmd_report)

    s = sub.add_parser(
        "zoo",
        help="train the zoo's queue of paper recipes (resumable), show its state, or write its results table",
    )
    s.add_argument("action", choices=["train", "status", "table"])
    s.add_argument("--queue", default=ZOO_QUEUE, help=f"queue file (default {ZOO_QUEUE})")
    s.add_argument("--only", nargs="+", help="train: only these run or model names")
    s.add_argument("--threads", type=int, help="train: threads per run (overrides the recipes' value)")
    s.add_argument(
        "--out", default="docs/zoo_fer2013.md", help="table: Markdown file (a PNG of curves beside it)"
    )
    s.add_argument("--no-tta", action="store_true", help="table: skip the flip-TTA evaluation")
    s.add_argument("--data-dir", help=DATA_HELP)
    s.add_argument("overrides", nargs="*", help="key=value applied to every run's config")
    s.set_defaults(func=_cmd_zoo)

    s = sub.add_parser("list-models", help="the model zoo: name, paper, parameters, FLOPs, input")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default *)")
    s.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    s.set_defaults(func=_cmd_list_models)
    return p


def main(argv: list[str] | None = None) -> int:
    import os

    # OpenMP threads that spin while they wait steal the core the detector (ONNX Runtime) or a second process
    # needs; read by the OpenMP runtime when torch loads, so set before any command imports torch
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for stream in (sys.stdout, sys.stderr):  # file names that are not valid UTF-8 print escaped, never crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides after an option (`ferlab zoo train --threads 2 epochs=3`): argparse has already
    # closed the positional list by then, so they come back as unknown; they belong to it
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*(args.overrides or []), *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
