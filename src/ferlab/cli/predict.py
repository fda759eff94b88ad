"""``ferlab predict | serve``: expressions in photos, videos and camera frames, and the web service."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import FerlabError
from ._args import (
    add_backend,
    add_overwrite,
    add_precision,
    add_threads,
    add_tta,
    detector_names,
    shipped_names,
)


def _cmd_predict(args) -> int:
    """Recognise the expressions of every face in images, videos or a camera; write JSON lines, CSV, images."""
    from contextlib import ExitStack

    from tqdm.auto import tqdm

    from ..infer.predict import (
        AnnotationWriter,
        CsvWriter,
        JsonlWriter,
        PredictionRecord,
        PredictSummary,
        predict_paths,
        predict_video,
    )
    from ..infer.recognizer import Recognizer

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


def add_predict(sub) -> None:
    """Add ``ferlab predict``."""
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
    s.add_argument(
        "--model", default="default", help=f"a shipped model ({shipped_names()}) or a checkpoint path"
    )
    s.add_argument(
        "--detector",
        default=None,
        help=f"face detector: {detector_names()}, options after a colon (default: the detector the model's "
        "training crops were made with, else blazeface)",
    )
    s.add_argument("--no-detect", action="store_true", help="inputs are face crops: classify each as a whole")
    s.add_argument("--output", metavar="FILE.jsonl", help="write the JSON lines here instead of stdout")
    s.add_argument("--csv", metavar="FILE", help="also write one CSV row per face")
    add_overwrite(s, "replace --output/--csv files that exist")
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
    add_threads(s)
    add_tta(s)
    add_backend(s)
    add_precision(s, "auto")
    s.add_argument(
        "--margin",
        type=float,
        default=None,
        help="margin around each face box, fraction of its side (default: the model's crop rule, else 0.1)",
    )
    s.add_argument(
        "--min-face",
        type=int,
        help="smallest face side in pixels (default: the detector's, 30 for blazeface)",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_predict)


def _cmd_serve(args) -> int:
    """Serve the web API and demo page (POST /predict, GET /health, GET /models, /)."""
    from ..infer.serve import run

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


def add_serve(sub) -> None:
    """Add ``ferlab serve``."""
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
        default=None,
        help=f"face detector: {detector_names()} (default: the model's crop rule, else blazeface)",
    )
    add_backend(s, help="inference backend")
    add_threads(s)
    s.add_argument(
        "--max-pixels", type=int, default=16_000_000, help="largest image in pixels (413 above; 16 Mpx)"
    )
    s.add_argument("--docs", action="store_true", help="also serve FastAPI's /docs and /openapi.json")
    s.set_defaults(func=_cmd_serve)


COMMANDS = {
    "serve": add_serve,
    "predict": add_predict,
}
