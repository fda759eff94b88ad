"""``ferlab list-models | export | profile``: the model zoo, ONNX export and complexity on this machine."""

from __future__ import annotations

from pathlib import Path

from ..errors import FerlabError
from ._args import add_data_dir, add_overwrite, add_precision, add_threads, save_output, shipped_names


def _cmd_list_models(args) -> int:
    """Print the model zoo (name, paper, parameters, FLOPs, input) and the shipped trained weights."""
    from ..models import list_models
    from ..models.profile import model_table

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
    from ..models import create_model
    from ..models.profile import count_flops

    m = create_model("gclenet").eval()
    train_p = sum(p.numel() for p in m.parameters())
    train_f = count_flops(m, (3, 224, 224)) / 1e9 if flops else None
    m.fuse()
    fused_p = sum(p.numel() for p in m.parameters())
    fused_f = count_flops(m, (3, 224, 224)) / 1e9 if flops else None
    f = (lambda v: f", {v:.3f} GFLOPs") if flops else (lambda v: "")
    return (f"gclenet forms: training {train_p:,} params{f(train_f)}; fused for testing (GCLENet.fuse(), each "
            f"asymmetric conv block folded into one 3x3 conv) {fused_p:,} params{f(fused_f)}. Chen et al. 2024 (GCLENet) reports "
            "the fused form (ResNet34 21.29 M, +LFA 21.58 M).")  # fmt: skip


def shipped_table() -> str:
    """The trained weights that load by name (``--model NAME``), with their architecture and classes."""
    import json

    from safetensors import safe_open

    from ..data.balance import format_table
    from ..infer.recognizer import list_pretrained, pretrained_int8_path, pretrained_path
    from ..runtime.weights import list_zoo, zoo_path

    rows = []
    for name in list_pretrained(available_only=True):
        with safe_open(str(pretrained_path(name)), "pt") as f:
            meta = f.metadata() or {}
        classes = json.loads(meta.get("classes", "[]"))
        rows.append(
            [name, meta.get("model_name", "?"), len(classes), "yes" if pretrained_int8_path(name) else "no"]
        )
    for name in list_zoo():  # zoo runs shipped by `ferlab zoo ship` (fp16)
        with safe_open(str(zoo_path(name)), "pt") as f:
            meta = f.metadata() or {}
        rows.append([name, meta.get("model_name", "?"), len(json.loads(meta.get("classes", "[]"))), "no"])
    head = (
        "Trained weights shipped with ferlab (--model NAME, Recognizer(NAME)); architectures above have none:"
    )
    return (
        head + "\n\n" + format_table(["name", "architecture", "classes", "INT8 (--backend onnx-int8)"], rows)
    )


def add_list_models(sub) -> None:
    """Add ``ferlab list-models``."""
    s = sub.add_parser("list-models", help="the model zoo: name, paper, parameters, FLOPs, input")
    s.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern (default *)")
    s.add_argument("--no-flops", action="store_true", help="skip the FLOP count (faster)")
    s.set_defaults(func=_cmd_list_models)


def _cmd_export(args) -> int:
    """Export a model to ONNX (fp32 or INT8) and check its probabilities against PyTorch."""
    import hashlib

    from ..infer.onnx import (
        OnnxModel,
        calibration_faces,
        check_parity,
        export_onnx,
        parity_faces,
        quantize_int8,
    )  # fmt: skip
    from ..infer.recognizer import PRETRAINED, pretrained_path, resolve_model
    from ..io import write_atomic

    ref = args.checkpoint or args.model
    model = resolve_model(ref)
    stem = Path(str(ref).rstrip("/")).stem if args.checkpoint else str(ref)
    out = Path(args.out or f"{stem}{'.int8' if args.quantize else ''}.onnx")
    src = pretrained_path(ref) if args.model in PRETRAINED else Path(ref)
    if out.exists() and not args.overwrite:
        raise FerlabError(f"{out} exists; pass --overwrite to replace it")
    if src.is_file() and out.resolve() == src.resolve():
        raise FerlabError(f"{out} is the model being exported; choose another --out")
    images, what = parity_faces(args.parity_faces or (512 if args.quantize else 64), args.data_dir)
    if args.quantize:
        from ..runtime.predict import predict_probs

        calib = calibration_faces(args.calib_faces, args.data_dir)
        meta = {"source_sha256": hashlib.sha256(src.read_bytes()).hexdigest()} if src.is_file() else {}
        meta["source"] = src.name if src.is_file() else str(ref)
        q = quantize_int8(model, calib, opset=args.opset, extra_meta=meta)
        onnx_model = OnnxModel(q, source=str(out))
        diff = check_parity(model, onnx_model, images)
        agree = float(
            (predict_probs(model, images).argmax(1) == onnx_model.predict_probs(images).argmax(1)).mean()
        )
        print(f"INT8 vs PyTorch fp32 on {what}: top-1 agreement {100 * agree:.1f} %, max |dp| = {diff:.3f}")
        if agree < args.min_agreement:  # checked before anything is written
            raise FerlabError(f"INT8 and fp32 agree on {100 * agree:.1f} % < {100 * args.min_agreement:.0f} % "
                              f"of faces; {out} not written")  # fmt: skip
        path = write_atomic(q, out)
    else:
        path = export_onnx(model, out, opset=args.opset, dynamic_batch=not args.static_batch)
        onnx_model = OnnxModel.from_file(path)
        diff = check_parity(model, onnx_model, images)
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {onnx_model.model_name}, opset {args.opset}, "
        f"{'int8 (static, calibrated on ' + str(args.calib_faces) + ' FER2013 training faces)' if args.quantize else ''}"
        f"{'batch 1' if args.static_batch and not args.quantize else '' if args.quantize else 'dynamic batch'}, "
        f"classes: {', '.join(onnx_model.classes)})"
    )
    if args.quantize:
        return 0
    print(f"parity vs PyTorch fp32 on {what}: max |p_onnx - p_torch| = {diff:.2e}")
    if diff > args.tolerance:
        raise FerlabError(f"ONNX and PyTorch probabilities differ by {diff:.2e} > {args.tolerance:g}")
    return 0


def add_export(sub) -> None:
    """Add ``ferlab export`` (formats and quantizations from :mod:`ferlab.infer.onnx`)."""
    from ..infer.onnx import EXPORT_FORMATS, QUANTIZATIONS

    s = sub.add_parser(
        "export",
        help="export a model to ONNX (class names and data config inside) and check it against PyTorch",
        description="Write the model as a self-describing ONNX file and print the largest probability "
        "difference to PyTorch fp32 on real FER2013 test faces ($FERLAB_DATA), or on random crops without data.",
    )
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="run folder, .pt checkpoint or .safetensors file")
    g.add_argument("--model", help=f"shipped model name ({shipped_names()})")
    s.add_argument("--format", choices=list(EXPORT_FORMATS), default="onnx", help="export format (onnx)")
    s.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    s.add_argument("--static-batch", action="store_true", help="fix the batch size to 1 (default dynamic)")
    s.add_argument("--out", help="file to write (default: NAME.onnx or NAME.int8.onnx here)")
    add_overwrite(s)
    s.add_argument("--quantize", choices=list(QUANTIZATIONS), help="INT8 static quantization (ONNX Runtime)")
    s.add_argument(
        "--calib-faces", type=int, default=512, help="FER2013 training faces that calibrate INT8 (512)"
    )
    s.add_argument("--min-agreement", type=float, default=0.95,
                   help="INT8: fail below this top-1 agreement with fp32 on the parity faces (0.95)")  # fmt: skip
    s.add_argument("--parity-faces", type=int, default=None,
                   help="FER2013 test faces for the parity check (default 64; INT8: 512, its agreement is a rate)")  # fmt: skip
    s.add_argument(
        "--tolerance", type=float, default=1e-4, help="fail if the parity difference exceeds it (1e-4)"
    )
    add_data_dir(s)
    s.set_defaults(func=_cmd_export)


def _cmd_profile(args) -> int:
    """Measure parameters, FLOPs, peak memory, latency and throughput of models on this machine."""
    from ..analysis.complexity import format_table, profile_models
    from ..models import list_models

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

        out, js = save_output(table, args.out, args.overwrite, {".json": json.dumps(rows, indent=1)})
        print(f"wrote {out} and {js}")
    return 0


def add_profile(sub) -> None:
    """Add ``ferlab profile``."""
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
    add_precision(s, exclude=("fp16", "auto"), many=True)  # the two CPU precisions, both by default
    s.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (default 10)")
    s.add_argument("--max-seconds", type=float, default=20.0, help="time cap per measurement (default 20)")
    add_threads(s, "torch threads (default: torch's default)")
    s.add_argument(
        "--in-process", action="store_true", help="measure in this process (peak memory less exact)"
    )
    s.add_argument("--out", help="write the Markdown table here (and the rows as JSON beside it)")
    add_overwrite(s)
    s.set_defaults(func=_cmd_profile)


COMMANDS = {
    "export": add_export,
    "profile": add_profile,
    "list-models": add_list_models,
}
