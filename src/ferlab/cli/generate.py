"""``ferlab generate plan | prompts | images | merge``: the Berindeie 2024 (FER ensembles) balancing pipeline.

Thin wrappers around the library functions of :mod:`ferlab.generate`; :func:`add_generate` adds the
subcommand with its four actions to ``ferlab``'s parser.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError
from ..io import write_atomic
from ._args import add_data_dir, dataset_help


def _counts(items) -> dict[str, int]:
    """``["disgust=100", "fear=20"]`` -> {'disgust': 100, 'fear': 20} (canonical class names)."""
    from .. import labels as L

    out = {}
    for it in items or []:
        for part in it.split(","):
            if not part.strip():
                continue
            name, sep, n = part.partition("=")
            if not sep or not n.strip().isdigit():
                raise ConfigError(f"--counts {part!r}: use CLASS=N, e.g. disgust=100")
            out[L.canonical_name(name)] = int(n)
    return out


def _jobs(args):
    """Prompt jobs from --prompts FILE, --plan FILE, --counts or --emotion/--n."""
    from ..generate.planner import GenerationPlan
    from ..generate.prompts import PromptGenerator, read_jobs

    if getattr(args, "prompts", None):
        return read_jobs(args.prompts)
    gen = PromptGenerator(args.pools, start_seed=args.seed)
    if args.plan:
        counts = GenerationPlan.load(args.plan).generate
    elif args.counts:
        counts = _counts(args.counts)
    elif args.emotion:
        if args.n is None:
            raise ConfigError("--emotion needs --n (number of images)")
        counts = {args.emotion: args.n}
    else:
        raise ConfigError("say what to generate: --plan FILE, --counts CLASS=N ..., or --emotion NAME --n N")
    return gen.jobs_for_counts(counts)


def _dataset_path(name: str, data_dir) -> Path | None:
    """The file or folder a dataset name reads (``cache:P``/``folder:P`` -> P), to keep it untouched."""
    from ..data.base import resolve_root
    from ..data.registry import locate

    if ":" in name:
        return Path(name.split(":", 1)[1])
    return locate(name.rstrip("7"), resolve_root(data_dir))


def _cmd_plan(args) -> int:
    """Print the images each class needs to reach the target (training split only); optionally save the plan."""
    from ..data import load_dataset
    from ..generate.planner import plan_generation

    ds = load_dataset(args.dataset, args.data_dir)
    plan = plan_generation(ds, args.target, args.splits, args.train_split, args.overshoot)
    print(f"## {ds.name}: images needed to balance every class to {plan.target!r}\n")
    print(plan.table())
    print()
    for line in plan.notes():
        print(line)
    if args.out:
        print(f"plan: {plan.save(args.out)} (use with `ferlab generate prompts|images --plan`)")
    return 0


def _cmd_prompts(args) -> int:
    """Write Berindeie's (2024) dynamic prompts with their seeds as JSON lines."""
    from ..generate.prompts import write_jobs

    jobs = _jobs(args)
    if args.out:
        write_jobs(jobs, args.out)
        print(f"wrote {len(jobs)} prompts to {args.out}")
    else:
        for j in jobs:
            sys.stdout.write(json.dumps(j.to_dict()) + "\n")
    return 0


def _cmd_images(args) -> int:
    """Generate the prompts' images with a local Stable Diffusion model (resumable)."""
    from ..generate.backend import GenerationSettings, generate_images

    settings = GenerationSettings(
        model=args.model,
        width=args.width or args.size,
        height=args.height or args.size,
        steps=args.steps,
        guidance=args.guidance,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
    )
    report = generate_images(_jobs(args), args.out, settings, limit=args.limit, progress=not args.quiet)
    print(report.summary())
    print(
        f"manifest: {Path(args.out) / 'manifest.jsonl'}; next: ferlab generate merge --generated {args.out}"
    )
    return 0


def _cmd_merge(args) -> int:
    """Post-process generated images and write a new dataset version whose training split holds them."""
    from ..data import load_dataset
    from ..data.balance import format_table
    from ..generate.merge import merge_synthetic, sidecar_path, write_dataset
    from ..generate.postprocess import postprocess_generated

    ds = load_dataset(args.dataset, args.data_dir)
    real = ds.split(args.split)
    if not real.in_memory:
        raise ConfigError(
            f"split {args.split!r} holds file paths; export it first (ferlab export-data --size N)"
        )
    shape = real.images.shape[1:]
    faces, report = postprocess_generated(
        args.generated,
        size=tuple(shape[:2]),
        grayscale=len(shape) == 2,
        faces_out=args.faces,
        progress=not args.quiet,
        detector=args.detector,
        min_face=args.min_face,
    )
    print(f"post-processing: {report.summary()}")
    cap = None if args.no_cap else args.target
    merged = merge_synthetic(ds, faces, split=args.split, cap=cap)
    out = write_dataset(merged, args.out, protect=[_dataset_path(args.dataset, args.data_dir)])
    info = merged.info["synthetic"]
    before, after = real.class_counts(), merged.split(args.split).class_counts()
    rows = [[c, int(b), info["added"][c], int(a)] for c, b, a in zip(ds.classes, before, after)]
    rows.append(["TOTAL", int(before.sum()), info["total"], int(after.sum())])
    print(format_table(["class", f"{args.split} (real)", "synthetic added", f"{args.split} (merged)"], rows))
    report_path = sidecar_path(out).with_name(sidecar_path(out).name.replace(".jsonl", ".report.json"))
    write_atomic(
        json.dumps({"postprocess": report.to_dict(), "added": info["added"]}, indent=2) + "\n", report_path
    )
    kind = "folder:" if out.suffix.lower() not in (".h5", ".hdf5", ".npz") else "cache:"
    print(
        f"wrote {out} (original {ds.source or ds.name} untouched; only {args.split!r} holds synthetic images); "
        f"provenance: {sidecar_path(out)}; train with: ferlab train ... dataset={kind}{out}"
    )
    return 0


def _job_args(s, with_prompts: bool = False) -> None:
    """The options that say what to generate (a plan, counts, one class, or a prompts file) and the seed."""
    g = s.add_argument_group("what to generate (one of)")
    g.add_argument("--plan", help="plan JSON from `ferlab generate plan --out` (its 'generate' counts)")
    g.add_argument(
        "--counts", nargs="+", metavar="CLASS=N", help="images per class, e.g. disgust=100 fear=20"
    )
    g.add_argument("--emotion", help="one class ...")
    g.add_argument("--n", type=int, help="... and how many images")
    if with_prompts:
        g.add_argument("--prompts", help="prompts JSONL from `ferlab generate prompts --out`")
    s.add_argument("--seed", type=int, default=0, help="start seed (default 0; +200 per image)")
    s.add_argument(
        "--pools", help="YAML overriding the shipped prompt pools (ferlab/generate/prompt_pools.yaml)"
    )


def add_generate(sub) -> None:
    """Add ``ferlab generate`` with its four actions (dtypes from :data:`ferlab.generate.backend.DTYPES`)."""
    from ..generate.backend import DTYPES

    p = sub.add_parser(
        "generate",
        help="balance a dataset with Stable Diffusion faces (Berindeie 2024): plan, prompts, images, merge",
        description="1) plan: images each class needs (training split only). 2) prompts: Berindeie's (2024) dynamic "
        "prompts. 3) images: generate with a local Stable Diffusion 1.5-class model (pip install "
        "'ferlab[generate]'), resumable. 4) merge: face-detect, crop, grayscale, resize, reject no-face / several "
        "faces / blank images, and write a new dataset version whose training split holds the accepted faces.",
    )
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    s = acts.add_parser("plan", help="deficit table: images per class to reach the target (train only)")
    s.add_argument("--dataset", default="fer2013", help=dataset_help("fer2013"))
    add_data_dir(s)
    s.add_argument(
        "--target", default="max", help="'max' (largest class), a count per class, or a ratio like 0.8"
    )
    s.add_argument("--splits", nargs="*", help="splits to show (default: all but *_dedup)")
    s.add_argument("--train-split", default="train", help="the split to generate for (default train)")
    s.add_argument(
        "--overshoot",
        type=float,
        default=1.0,
        help="generate this factor more to cover rejections (e.g. 1.2)",
    )
    s.add_argument("--out", help="also write the plan as JSON")
    s.set_defaults(func=_cmd_plan)

    s = acts.add_parser("prompts", help="dynamic prompts with seeds, as JSON lines")
    _job_args(s)
    s.add_argument("--out", help="JSONL file (default: stdout)")
    s.set_defaults(func=_cmd_prompts)

    s = acts.add_parser("images", help="generate images with a local diffusers model (resumable)")
    s.add_argument(
        "--model", required=True, help="diffusers folder (offline) or hub id of an SD 1.5-class model"
    )
    s.add_argument("--out", required=True, help="output folder (images/, manifest.jsonl)")
    _job_args(s, with_prompts=True)
    s.add_argument("--size", type=int, default=512, help="width and height (default 512, Berindeie 2024)")
    s.add_argument("--width", type=int, help="override the width")
    s.add_argument("--height", type=int, help="override the height")
    s.add_argument("--steps", type=int, default=40, help="inference steps (default 40, Berindeie 2024)")
    s.add_argument(
        "--guidance",
        type=float,
        default=5.5,
        help="guidance scale (default 5.5, Berindeie 2024)",
    )
    s.add_argument("--batch-size", type=int, default=4, help="images per pipeline call (default 4)")
    s.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cuda, cuda:N, mps or cpu")
    s.add_argument("--dtype", default="auto", choices=list(DTYPES))
    s.add_argument("--limit", type=int, help="generate at most N new images in this run")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_images)

    s = acts.add_parser(
        "merge", help="post-process generated images and add them to a new training-set version"
    )
    s.add_argument("--generated", required=True, help="folder written by `ferlab generate images`")
    s.add_argument("--dataset", default="fer2013", help=dataset_help("fer2013") + "; the one to extend")
    add_data_dir(s)
    s.add_argument("--out", required=True, help="new version: .h5/.hdf5/.npz file, or a folder of PNGs")
    s.add_argument("--split", default="train", help="training split to extend (default train)")
    s.add_argument(
        "--target", default="max", help="add at most the deficit to this target per class (default max)"
    )
    s.add_argument("--no-cap", action="store_true", help="add every accepted image")
    s.add_argument(
        "--detector",
        default="haar",
        help="face detector (default haar, as in Berindeie 2024)",
    )
    s.add_argument("--min-face", type=int, default=40, help="smallest face side in generated pixels (40)")
    s.add_argument("--faces", metavar="DIR", help="also write accepted crops and per-image decisions here")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_merge)


COMMANDS = {"generate": add_generate}
