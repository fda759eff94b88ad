"""The one description of a model, travelling with every file it is written to.

A :class:`ModelSpec` says what a set of weights is: the registry architecture and its keyword arguments,
the input it takes (:class:`~ferlab.transforms.DataConfig`), the class names of its outputs, and the
face-crop rule its training images were made with (``crop``, a :class:`ferlab.faces.CropRule` as a dict;
``None`` when the dataset came as crops, e.g. FER2013). It is set on a model only by
:func:`ferlab.models.create_model` and by :func:`ferlab.runtime.files.load_model` (through
:func:`attach_spec`), and written into every format by one pair of functions: :meth:`ModelSpec.to_dict`
(plain values, for torch checkpoints and ensemble member lists) and :meth:`ModelSpec.to_meta` (JSON strings,
for safetensors and ONNX metadata), read back by :meth:`ModelSpec.from_dict` / :meth:`ModelSpec.from_meta`.

The file formats' names are here too, so every writer and reader agrees on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ..transforms.data_config import DataConfig

WEIGHTS_FORMAT = "ferlab-weights"  # .safetensors: one model's weights + its spec
CHECKPOINT_FORMAT = "ferlab-checkpoint"  # .pt training checkpoint (plain containers, weights_only loadable)
ENSEMBLE_FORMAT = "ferlab-ensemble"  # .safetensors: several members' weights + their specs
ONNX_FORMAT = "ferlab-onnx"  # .onnx graph with the spec in its metadata properties

_KEYS = ("model_name", "model_kwargs", "classes", "data_config")


@dataclass(frozen=True)
class ModelSpec:
    """What a model is: ``architecture`` (registry name), ``kwargs`` (its create_model arguments, including
    num_classes/in_chans/img_size), ``data_config``, ``classes`` (output order; empty when not known yet) and
    ``crop`` (the face-crop rule of its training data, or None)."""

    architecture: str
    kwargs: Mapping = field(default_factory=dict)
    data_config: DataConfig = field(default_factory=DataConfig)
    classes: tuple[str, ...] = ()
    crop: Mapping | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop", _checked_crop(self.crop))  # the whole rule, checked, as a plain dict

    def replace(self, **changes) -> ModelSpec:
        """A copy with ``changes`` (``classes`` given as any sequence)."""
        if "classes" in changes:
            changes["classes"] = tuple(changes["classes"] or ())
        return replace(self, **changes)

    # -- plain values (torch checkpoints, ensemble member lists) ----------------------------------------
    def to_dict(self) -> dict:
        d = {"model_name": self.architecture, "model_kwargs": dict(self.kwargs), "classes": list(self.classes),
             "data_config": self.data_config.to_dict()}  # fmt: skip
        if self.crop is not None:
            d["crop"] = dict(self.crop)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> ModelSpec:
        """From :meth:`to_dict`'s keys (missing ``data_config``: the registry default, resolved by the caller;
        raises KeyError/ValueError/TypeError on damaged values, which file readers turn into one-line errors)."""
        dc = d.get("data_config")
        return cls(
            architecture=str(d["model_name"]),
            kwargs=dict(d.get("model_kwargs") or {}),
            data_config=DataConfig.from_dict(dc) if dc else None,
            classes=tuple(str(c) for c in (d.get("classes") or ())),
            crop=d.get("crop") or None,
        )

    # -- JSON strings (safetensors and ONNX metadata) ----------------------------------------------------
    def to_meta(self) -> dict[str, str]:
        return {k: v if k == "model_name" else json.dumps(v) for k, v in self.to_dict().items()}

    @classmethod
    def from_meta(cls, meta: Mapping) -> ModelSpec:
        """From :meth:`to_meta`'s strings; every key but ``crop`` is required (KeyError otherwise, which the
        file readers turn into a one-line error naming the file)."""
        d = {k: (meta[k] if k == "model_name" else json.loads(meta[k])) for k in _KEYS}
        if "crop" in meta:
            d["crop"] = json.loads(meta["crop"])
        return cls.from_dict(d)


def _checked_crop(crop):
    """A recorded crop rule as a plain dict with every field, checked by the faces layer's reader."""
    if not crop:
        return None
    from ..errors import ConfigError
    from ..faces.crop import CropRule

    try:
        return CropRule.from_dict(dict(crop)).to_dict()
    except (ConfigError, TypeError, ValueError) as e:
        raise ConfigError(f"bad crop rule {dict(crop)!r}: {e}") from None


def attach_spec(model, spec: ModelSpec):
    """Set ``model.spec`` and the attributes the rest of ferlab reads from it (``model_name``,
    ``model_kwargs``, ``data_config``, ``classes`` when known). The only writer of those attributes."""
    model.spec = spec
    model.model_name = spec.architecture
    model.model_kwargs = dict(spec.kwargs)
    model.data_config = spec.data_config
    if spec.classes:
        model.classes = tuple(spec.classes)
    return model


def spec_of(model, classes=None) -> ModelSpec:
    """``model``'s spec (``classes`` filled in when given); models built outside ``create_model`` get one from
    their attributes."""
    spec = getattr(model, "spec", None)
    if spec is None:
        spec = ModelSpec(
            str(getattr(model, "model_name", type(model).__name__)),
            dict(getattr(model, "model_kwargs", {}) or {}),
            model.data_config,
            tuple(getattr(model, "classes", None) or ()),
        )
    if classes is None and not spec.classes and getattr(model, "classes", None):
        classes = model.classes  # set by hand on a model built without class names
    return spec.replace(classes=classes) if classes is not None else spec
