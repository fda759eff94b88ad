"""Checkpoints: atomic, self-describing, and loadable without unpickling arbitrary objects.

A training checkpoint (``last.pt``, ``best.pt``, ``epoch_XXX.pt``) is a ``torch.save`` of plain
containers of tensors and primitives only, so it loads with ``torch.load(weights_only=True)``::

    {"format": "ferlab-checkpoint", "version": 1, "model_name", "model_kwargs", "classes",
     "data_config", "config", "epoch", "step", "best_metric", "model", "optimizer", "scheduler",
     "aux_loss", "aux_optimizer", "ema", "torch_rng", "history", "metrics"}

Shipped weights are ``.safetensors`` files whose metadata holds the model name, kwargs, class names and
data config as JSON: :func:`load_model` builds the model from either kind.
Writes go to a temporary file in the same folder, then ``os.replace`` — a kill never leaves a torn file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..io import atomic_path
from ..models.spec import CHECKPOINT_FORMAT, WEIGHTS_FORMAT, ModelSpec, spec_of

if TYPE_CHECKING:  # annotations only; torch is imported where it runs
    import torch

FORMAT = CHECKPOINT_FORMAT  # the name the Trainer's checkpoints carry

#: ``.safetensors`` formats other than plain weights: ``metadata['format'] -> loader(path, metadata)`` returning
#: ``(model, classes, info)`` like :func:`load_model`. :mod:`ferlab.runtime.ensemble` registers ensembles.
_LOADERS: dict = {}


def register_loader(fmt: str, loader) -> None:
    """Let :func:`load_model` open ``.safetensors`` files whose metadata says ``format = fmt``."""
    if fmt in _LOADERS and _LOADERS[fmt] is not loader:
        raise ConfigError(f"a loader for model files of format {fmt!r} is already registered")
    _LOADERS[fmt] = loader


def atomic_save(obj, path: str | Path) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def run_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint a run folder stands for: ``best.pt`` (best validation metric), else ``last.pt``; None."""
    for name in ("best.pt", "last.pt"):
        if (Path(run_dir) / name).is_file():
            return Path(run_dir) / name
    return None


def snapshot_paths(run_dir: str | Path) -> dict[int, Path]:
    """A run's per-epoch snapshots ``epoch_XXX.pt`` (the ``snapshot_epochs`` option), by epoch number."""
    out = {}
    for p in Path(run_dir).glob("epoch_*.pt"):
        try:
            out[int(p.stem.split("_", 1)[1])] = p
        except ValueError:
            continue
    return dict(sorted(out.items()))


def load_checkpoint(path: str | Path) -> dict:
    """Load a ferlab training checkpoint safely (``weights_only=True``)."""
    import torch

    path = Path(path)
    if path.is_dir():
        found = run_checkpoint(path)
        if found is None:
            raise ConfigError(f"{path}: run folder holds no best.pt or last.pt")
        path = found
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} not found")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the same user error
        raise ConfigError(f"{path}: not a loadable ferlab checkpoint ({_first_sentence(e)})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a ferlab checkpoint (no '{FORMAT}' header)")
    ck["path"] = str(path)
    return ck


def _first_sentence(e: BaseException, limit: int = 160) -> str:
    """The first sentence of an exception's message, whole (never cut mid-word), for one-line errors."""
    text = " ".join(str(e).split()) or type(e).__name__
    first = text.split(". ")[0].rstrip(".")
    return first if len(first) <= limit else first[: first.rfind(" ", 0, limit)] + " ..."


def export_weights(
    model: torch.nn.Module, path: str | Path, classes=None, extra: dict | None = None, dtype=None
) -> Path:
    """Write ``model``'s weights and its spec (classes filled in when given) as ``.safetensors``, atomically.

    ``dtype`` (e.g. ``torch.float16``) stores the floating-point tensors in that type (half the bytes);
    :func:`load_model` builds the model in fp32 and the weights are cast back when they are loaded.
    """

    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": WEIGHTS_FORMAT, **spec_of(model, classes).to_meta(),
            **{k: json.dumps(v) for k, v in (extra or {}).items()}}  # fmt: skip
    sd = {k: v.detach().to(dtype if dtype is not None and v.is_floating_point() else v.dtype).contiguous().clone()
          for k, v in model.state_dict().items()}  # fmt: skip
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    return path


def build_model(spec: ModelSpec):
    """A fresh model for ``spec`` (a checkpoint's or file's description; no data config: the registry's)."""
    from ..models import create_model_from_spec, resolve_data_config

    if spec.data_config is None:
        spec = spec.replace(data_config=resolve_data_config(spec.architecture, spec.kwargs.get("in_chans"),
                                                            spec.kwargs.get("img_size")))  # fmt: skip
    return create_model_from_spec(spec)


def load_model(path: str | Path, use_ema: bool = True):
    """A model (eval mode) and its class names from a ``.safetensors`` export or a training checkpoint."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        if not path.is_file():
            raise ConfigError(f"weights file {path} not found")
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
        except Exception as e:  # noqa: BLE001 - safetensors' own error types for a damaged file
            raise ConfigError(f"{path}: not a readable safetensors file ({_first_sentence(e)})") from None
        if meta.get("format") in _LOADERS:  # other formats register here (an ensemble: runtime.ensemble)
            return _LOADERS[meta["format"]](path, meta)
        if meta.get("format") != WEIGHTS_FORMAT:
            raise ConfigError(f"{path}: safetensors file without ferlab metadata (model name, classes)")
        try:
            spec = ModelSpec.from_meta(meta)
            classes = spec.classes
            model = build_model(spec)
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(
                f"{path}: damaged ferlab metadata ({type(e).__name__}: {_first_sentence(e)})"
            ) from None
        except ConfigError as e:  # e.g. class names that do not match the classifier
            raise ConfigError(f"{path}: {_first_sentence(e)}") from None
        try:
            model.load_state_dict(load_file(str(path)))
        except Exception as e:  # noqa: BLE001 - shape/key mismatches and damaged tensors alike
            raise ConfigError(
                f"{path}: its tensors do not fit a {meta['model_name']} ({_first_sentence(e)})"
            ) from None
        info = {k: v for k, v in meta.items() if k not in ("model_kwargs", "data_config", "classes", "crop")}
    else:
        ck = load_checkpoint(path)
        try:
            spec = ModelSpec.from_dict(ck)
            model = build_model(spec)
        except (KeyError, ValueError, TypeError, ConfigError) as e:
            raise ConfigError(
                f"{path}: damaged ferlab checkpoint ({type(e).__name__}: {_first_sentence(e)})"
            ) from None
        sd = ck["ema"] if use_ema and ck.get("ema") else ck["model"]
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:
            raise ConfigError(
                f"{path}: its tensors do not fit a {ck['model_name']} ({_first_sentence(e)})"
            ) from None
        classes = spec.classes
        info = {"epoch": ck.get("epoch"), "path": ck["path"], "metrics": ck.get("metrics", {})}
    model.eval()
    return model, classes, info
