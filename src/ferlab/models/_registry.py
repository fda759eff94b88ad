"""The one model registry: ``@register_model`` entrypoints, ``create_model`` and ``list_models``.

An entrypoint is a small function ``fn(num_classes=7, in_chans=..., img_size=..., **switches) -> FERModel``
decorated with ``@register_model(paper=..., input_size=..., ...)``. The decorator records the model's
default data config (input size, channels, mean/std, whether it takes an LBP channel) which the data
layer's transform factory reads, so training, evaluation and inference always preprocess alike.
A duplicate name is an error; unknown names or switches get an error listing the valid ones.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ConfigError, unknown_name
from ..transforms.data_config import IMAGENET_MEAN, IMAGENET_STD, DataConfig
from .spec import ModelSpec, attach_spec


@dataclass
class ModelInfo:
    name: str
    fn: Callable
    paper: str
    data: DataConfig
    description: str = ""
    switches: tuple[str, ...] = field(default_factory=tuple)
    test_size: int | None = None  # smallest input side the unit tests use (None: the native size)


_MODELS: dict[str, ModelInfo] = {}


def register_model(
    paper: str = "",
    input_size: tuple[int, int, int] = (1, 48, 48),
    color: str | None = None,
    lbp: bool = False,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    name: str | None = None,
    test_size: int | None = None,
):
    """Decorator registering an entrypoint under its function name (or ``name``)."""

    def deco(fn: Callable) -> Callable:
        key = name or fn.__name__
        if key in _MODELS:
            raise ConfigError(f"model name {key!r} is already registered (by {_MODELS[key].fn.__module__})")
        c = input_size[0] - (1 if lbp else 0)
        col = color or ("gray" if c == 1 else "rgb")
        n = input_size[0]
        m = (
            mean
            if mean is not None
            else ((0.5,) * n if col == "gray" else (*IMAGENET_MEAN, *((0.5,) if lbp else ())))
        )
        s = (
            std
            if std is not None
            else ((0.5,) * n if col == "gray" else (*IMAGENET_STD, *((0.5,) if lbp else ())))
        )
        sig = inspect.signature(fn)
        switches = tuple(
            p for p, v in sig.parameters.items()
            if p not in ("num_classes", "in_chans", "img_size", "kwargs") and v.kind is not v.VAR_KEYWORD
        )  # fmt: skip
        doc = (inspect.getdoc(fn) or "").splitlines()
        _MODELS[key] = ModelInfo(
            key,
            fn,
            paper,
            DataConfig(tuple(input_size), col, lbp, tuple(m), tuple(s)),
            doc[0] if doc else "",
            switches,
            test_size,
        )
        return fn

    return deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch ``pattern`` (sorted)."""
    _import_all()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    _import_all()
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    return _MODELS[name]


def resolve_data_config(name: str, in_chans: int | None = None, img_size: int | None = None) -> DataConfig:
    """The input a registered model takes at ``in_chans``/``img_size`` (defaults: its registered input).

    Pure: reads the registry entry only, builds nothing. Another channel count than the registered one
    drops the LBP channel and picks gray (1) or RGB (3+), keeping the registered mean/std where they apply.
    """
    d = model_info(name).data
    c = in_chans if in_chans is not None else d.input_size[0]
    side = img_size if img_size is not None else d.input_size[1]
    if c == d.input_size[0] and side == d.input_size[1]:
        return d
    col, lbp = d.color, d.lbp
    if c != d.input_size[0]:
        lbp = False
        col = "gray" if c == 1 else "rgb"
    mean = d.mean[:1] * c if col == "gray" else (d.mean + (0.5,) * c)[:c]
    std = d.std[:1] * c if col == "gray" else (d.std + (0.5,) * c)[:c]
    return DataConfig((c, side, side), col, lbp, tuple(mean), tuple(std))


def create_model(
    name: str,
    num_classes: int = 7,
    in_chans: int | None = None,
    img_size: int | None = None,
    pretrained: str | Path | None = None,
    classes=None,
    data_config: DataConfig | None = None,
    crop=None,
    **switches,
):
    """Build a registered model, with its :class:`~ferlab.models.spec.ModelSpec` attached (``model.spec``).

    Args:
        name: registry name (see :func:`list_models`).
        num_classes: classifier width (7 or 8 for the canonical label sets; any positive number works).
        in_chans: input channels; defaults to the model's data config.
        img_size: square input side; defaults to the model's data config.
        pretrained: path to backbone/full weights (safetensors or a ``weights_only`` torch file); loaded
            non-strictly with classifier-shape mismatches dropped and reported.
        classes: the class names of the outputs, when known (recorded in the spec and in every file).
        data_config: the input description, when a file records one (default: :func:`resolve_data_config`).
        crop: the face-crop rule of the training data (a dict, recorded in the spec), when known.
        **switches: the model's own options (ablation switches); unknown ones are an error.
    """
    info = model_info(name)
    unknown = sorted(set(switches) - set(info.switches))
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; valid: {', '.join(info.switches) or '(none)'}"
        )
    if num_classes < 1:
        raise ConfigError(f"num_classes={num_classes} must be >= 1")
    if classes is not None and len(classes) != num_classes:
        raise ConfigError(f"{len(classes)} class names for num_classes={num_classes}")
    kw = dict(switches)
    kw["num_classes"] = num_classes
    kw["in_chans"] = in_chans if in_chans is not None else info.data.input_size[0]
    kw["img_size"] = img_size if img_size is not None else info.data.input_size[1]
    model = info.fn(**kw)
    dc = data_config or resolve_data_config(name, kw["in_chans"], kw["img_size"])
    attach_spec(model, ModelSpec(name, dict(kw), dc, tuple(classes or ()), dict(crop) if crop else None))
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def create_model_from_spec(spec):
    """The model a :class:`~ferlab.models.spec.ModelSpec` describes (fresh weights; load them next)."""
    return create_model(spec.architecture, **spec.kwargs, classes=spec.classes or None,
                        data_config=spec.data_config, crop=spec.crop)  # fmt: skip


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a torch file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"weights file {path} not found (ferlab never downloads weights; pass a local file)"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"{path}: not a safe weights file ({str(e).splitlines()[0][:200]})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return obj


def load_pretrained(model: torch.nn.Module, path: str | Path, prefix: str = "") -> dict:
    """Load weights non-strictly into ``model`` (or its submodule at ``prefix``); returns what was skipped.

    A first convolution trained on RGB is adapted to the model's input channels with timm's
    ``adapt_input_conv`` (summed for 1-channel grayscale faces, repeated and rescaled for 4), so ImageNet
    weights help 48x48 grayscale models too. Other keys whose shapes differ (a classifier with another class
    count) are skipped and listed under ``mismatched``; keys the model does not have under ``unexpected``.
    """
    from timm.models import adapt_input_conv

    sd = load_state_file(path)
    target = model.get_submodule(prefix) if prefix else model
    own = target.state_dict()
    load, mismatched, adapted = {}, [], []
    for k, v in sd.items():
        if k in own and own[k].shape == v.shape:
            load[k] = v
        elif (
            k in own
            and v.ndim == 4
            and own[k].ndim == 4
            and v.shape[0] == own[k].shape[0]
            and v.shape[2:] == own[k].shape[2:]
            and v.shape[1] == 3
        ):
            load[k] = adapt_input_conv(own[k].shape[1], v.float()).to(own[k].dtype)
            adapted.append(k)
        elif k in own:
            mismatched.append(k)
    if not load:
        raise ConfigError(
            f"{path}: no parameter matches model {getattr(model, 'model_name', type(model).__name__)}"
        )
    res = target.load_state_dict(load, strict=False)
    unexpected = [k for k in sd if k not in own]
    return {"loaded": len(load), "missing": list(res.missing_keys), "mismatched": mismatched, "adapted": adapted,
            "unexpected": unexpected}  # fmt: skip


def _import_all() -> None:
    from . import _zoo  # noqa: F401  (imports every model module so they register)
