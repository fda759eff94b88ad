"""Text-to-image generation with a Stable Diffusion 1.5-class pipeline from Hugging Face ``diffusers``.

Needs the optional extra: ``pip install 'ferlab[generate]'``. The model is whatever the user gives: a
local diffusers folder (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``), loaded with ``local_files_only``, or a hub id, which diffusers downloads on the user's
request. Berindeie 2024 (FER ensembles) used Realistic Vision v6 at 512x512, 40 steps, guidance 5.5 (the defaults here).

Output layout of ``generate_images(jobs, out, ...)``::

    out/generation.json          settings of the run (model, steps, guidance, size); checked on resume
    out/manifest.jsonl           one record per image: file, emotion, index, seed, prompt,
                                 negative_prompt, slots, model, steps, guidance, width, height, ...
    out/images/<emotion>/<emotion>_<index>_s<seed>.png

Runs are resumable: images whose file exists are skipped (and get a manifest record if one is missing),
so a second run with the same jobs generates nothing. Every image has its own ``torch.Generator`` on the
CPU seeded with its job's seed, so an image does not depend on the batch it was made in.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, FerlabError
from ..io import atomic_path, write_atomic
from .prompts import PromptJob

INSTALL = "pip install 'ferlab[generate]'"
#: the pipeline dtypes :class:`GenerationSettings` accepts (``auto``: float16 on CUDA, else float32)
DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class GenerationSettings:
    """What the pipeline is asked for (Berindeie's (2024) values by default)."""

    model: str
    width: int = 512
    height: int = 512
    steps: int = 40
    guidance: float = 5.5
    batch_size: int = 4
    device: str = "auto"
    dtype: str = "auto"

    def check(self) -> None:
        for k in ("width", "height"):
            v = getattr(self, k)
            if v < 8 or v % 8:
                raise ConfigError(
                    f"{k} {v}: must be a positive multiple of 8 (Stable Diffusion's VAE factor)"
                )
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be >= 1")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")

    def key(self) -> dict:
        """The settings that change the images (a resumed run must use the same ones)."""
        return {k: getattr(self, k) for k in ("model", "width", "height", "steps", "guidance")}


@dataclass
class GenerationReport:
    """What :func:`generate_images` did."""

    out: Path
    requested: int = 0
    generated: int = 0
    existing: int = 0
    flagged_nsfw: int = 0
    truncated: int = 0
    seconds: float = 0.0
    files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = f", {self.seconds / self.generated:.2f} s/image" if self.generated else ""
        nsfw = f"; {self.flagged_nsfw} flagged by the safety checker" if self.flagged_nsfw else ""
        trunc = (
            f"; {self.truncated} prompts longer than the text encoder's limit were truncated by the pipeline"
            if self.truncated
            else ""
        )
        return (
            f"{self.requested} images requested: {self.generated} generated, {self.existing} already there "
            f"(in {self.out}, {self.seconds:.1f} s{rate}){nsfw}{trunc}"
        )


def require_diffusers():
    """Import diffusers or raise one line saying how to install it."""
    try:
        import diffusers
    except ImportError as e:
        raise FerlabError(f"image generation needs diffusers ({e.name or e}); run: {INSTALL}") from None
    return diffusers


def resolve_device(device: str = "auto") -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def check_model(model: str | Path) -> bool:
    """True if ``model`` is a local diffusers folder, False for a hub id; raises for any other path."""
    path = Path(model).expanduser()
    if not path.exists():
        return False
    if not (path / "model_index.json").is_file():
        raise DataError(
            f"{path}: not a diffusers pipeline folder (no model_index.json); convert a single .safetensors "
            "checkpoint once with StableDiffusionPipeline.from_single_file(...).save_pretrained(folder)"
        )
    return True


def load_pipeline(model: str | Path, device: str = "auto", dtype: str = "auto", progress: bool = True):
    """A ``StableDiffusionPipeline`` from a local diffusers folder (offline) or a hub id, on ``device``.

    ``dtype='auto'`` is float16 on CUDA and float32 elsewhere. The pipeline's own safety checker (if the
    model has one) stays on: the black images it returns are rejected by post-processing, as in Berindeie 2024 (FER ensembles).
    """
    import warnings

    import torch

    diffusers = require_diffusers()
    from diffusers import StableDiffusionPipeline

    device = resolve_device(device)
    if dtype == "auto":
        dtype = "float16" if device.startswith("cuda") else "float32"
    local = check_model(model)
    if not progress:
        diffusers.utils.logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():  # newer diffusers renamed torch_dtype to dtype; older ones need it
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipe = StableDiffusionPipeline.from_pretrained(
                str(Path(model).expanduser()) if local else str(model),
                torch_dtype=getattr(torch, dtype),
                local_files_only=local,
            )
    except (OSError, ValueError, TypeError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FerlabError(f"could not load a Stable Diffusion pipeline from {model!r}: {first}") from None
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _read_manifest(path: Path) -> dict[str, dict]:
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:  # a line cut by a crash: the image is re-recorded below
                    continue
                out[rec.get("file")] = rec
    return out


def read_manifest(out: str | Path) -> list[dict]:
    """The records of a generation folder, in file order (one per image)."""
    out = Path(out)
    path = out / "manifest.jsonl"
    if not path.is_file():
        raise DataError(f"{out}: no manifest.jsonl (not a `ferlab generate images` output folder)")
    return list(_read_manifest(path).values())


def _check_settings(out: Path, settings: GenerationSettings) -> None:
    path = out / "generation.json"
    key = settings.key()
    if path.is_file():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), v) for k, v in key.items() if old.get(k) != v}
        if diff:
            what = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(
                f"{out} holds images made with other settings ({what}); use a new output folder"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(json.dumps(key, indent=2) + "\n", path)


def _record(job: PromptJob, settings: GenerationSettings, scheduler: str, **extra) -> dict:
    from .._version import __version__

    return {
        **job.to_dict(),
        "model": settings.model,
        "steps": settings.steps,
        "guidance": settings.guidance,
        "width": settings.width,
        "height": settings.height,
        "scheduler": scheduler,
        "ferlab": __version__,
        **extra,
    }


def generate_images(
    jobs: list[PromptJob],
    out: str | Path,
    settings: GenerationSettings,
    pipeline=None,
    limit: int | None = None,
    progress: bool = True,
) -> GenerationReport:
    """Generate the images of ``jobs`` into ``out`` (resumable; see the module doc for the layout).

    Args:
        jobs: prompt jobs (:class:`~ferlab.generate.prompts.PromptGenerator`).
        out: output folder.
        settings: model, size, steps, guidance, batch size, device, dtype.
        pipeline: an already loaded pipeline (else one is loaded from ``settings.model`` when there is
            anything to generate).
        limit: generate at most this many new images in this run.
        progress: tqdm progress bar.
    """
    import torch
    from tqdm.auto import tqdm

    settings.check()
    if pipeline is None:
        check_model(settings.model)
    out = Path(out)
    _check_settings(out, settings)
    manifest_path = out / "manifest.jsonl"
    recorded = _read_manifest(manifest_path)
    files = [j.file for j in jobs]
    if len(set(files)) != len(files):
        raise ConfigError("the jobs name the same image file twice (repeated emotion/index/seed)")
    report = GenerationReport(out=out, requested=len(jobs), files=files)
    todo = []
    with open(manifest_path, "a") as mf:
        for j in jobs:
            if (out / "images" / j.file).is_file():
                report.existing += 1
                if j.file not in recorded:  # the image was written but the run stopped before its record
                    mf.write(json.dumps(_record(j, settings, "unknown", recovered=True)) + "\n")
            else:
                todo.append(j)
    if limit is not None:
        todo = todo[: max(0, int(limit))]
    if not todo:
        return report
    if pipeline is None:
        pipeline = load_pipeline(settings.model, settings.device, settings.dtype, progress)
    pipe = pipeline
    scheduler = type(pipe.scheduler).__name__
    limit_tokens = getattr(pipe.tokenizer, "model_max_length", None)
    for name in (
        "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
        "transformers.tokenization_utils_base",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)  # truncation is recorded per image instead
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc="generate", unit="img", disable=not progress)
    try:
        with open(manifest_path, "a") as mf:
            for b in range(0, len(todo), settings.batch_size):
                batch = todo[b : b + settings.batch_size]
                t = time.perf_counter()
                with torch.inference_mode():
                    res = pipe(
                        prompt=[j.prompt for j in batch],
                        negative_prompt=[j.negative_prompt for j in batch],
                        num_inference_steps=settings.steps,
                        guidance_scale=settings.guidance,
                        height=settings.height,
                        width=settings.width,
                        generator=[torch.Generator("cpu").manual_seed(j.seed) for j in batch],
                        output_type="pil",
                    )
                dt = (time.perf_counter() - t) / len(batch)
                nsfw = res.nsfw_content_detected or [None] * len(batch)
                for j, img, flag in zip(batch, res.images, nsfw):
                    dest = out / "images" / j.file
                    with atomic_path(dest, keep_suffix=True) as tmp:
                        img.save(tmp)
                    extra = {
                        "seconds": round(dt, 3),
                        "mean_intensity": round(float(np.asarray(img).mean()), 2),
                    }
                    if (
                        limit_tokens
                    ):  # CLIP reads at most 77 tokens; the pipeline drops the rest of the prompt
                        n_tok = len(pipe.tokenizer(j.prompt).input_ids)
                        extra.update(tokens=n_tok, truncated=n_tok > limit_tokens)
                        report.truncated += n_tok > limit_tokens
                    if flag is not None:
                        extra["nsfw"] = bool(flag)
                        report.flagged_nsfw += bool(flag)
                    mf.write(json.dumps(_record(j, settings, scheduler, **extra)) + "\n")
                    mf.flush()
                    report.generated += 1
                    bar.update(1)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0
    return report
