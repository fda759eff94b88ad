"""The shipped models and the model files a reference names, for every layer above the models.

``PRETRAINED`` lists the weights inside the package (``ferlab/weights``, described by its MODEL_CARD.md);
:func:`load_reference` turns a shipped name, a run folder, a ``.pt`` checkpoint or a ``.safetensors`` file
(weights or an ensemble) into a model. :func:`ferlab.infer.resolve_model` adds ONNX files on top.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

#: Shipped models: name -> file inside ``ferlab/weights`` (MODEL_CARD.md describes each). ``default`` and ``fast``
#: predict FER2013's seven classes, ``ferplus`` FER+'s eight (the seven and contempt).
PRETRAINED = {"default": "default.safetensors", "fast": "fast.safetensors", "ferplus": "ferplus.safetensors"}
WEIGHTS_DIR = Path(__file__).parent.parent / "weights"


def list_pretrained(available_only: bool = False) -> list[str]:
    """Names of the shipped models (only those whose weights are in this installation if asked)."""
    return [n for n, f in PRETRAINED.items() if not available_only or (WEIGHTS_DIR / f).is_file()]


def pretrained_path(name: str) -> Path:
    """The weights file of a shipped model."""
    if name not in PRETRAINED:
        raise ConfigError(f"unknown shipped model {name!r}; valid: {', '.join(PRETRAINED)}")
    path = WEIGHTS_DIR / PRETRAINED[name]
    if not path.is_file():
        have = ", ".join(list_pretrained(True)) or "none"
        raise ConfigError(
            f"shipped model {name!r} is not in this installation ({path} missing); shipped here: {have}"
        )
    return path


def pretrained_int8_path(name: str) -> Path | None:
    """The shipped INT8 ONNX file of a shipped model (``weights/<name>.int8.onnx``), or None."""
    path = WEIGHTS_DIR / f"{name}.int8.onnx"
    return path if name in PRETRAINED and path.is_file() else None


def load_default(name: str = "default"):
    """The shipped model ``name`` (eval mode, ``.classes`` set), loaded from safetensors without pickle."""
    from .files import load_model

    return load_model(pretrained_path(name))[0]


#: Zoo weights trained by ``ferlab zoo train`` and shipped when small (``ferlab zoo ship``: fp16, <= 20 MB):
#: ``zoo/<model>`` names ``weights/zoo/<model>.safetensors``.
ZOO_DIR = WEIGHTS_DIR / "zoo"


def list_zoo() -> list[str]:
    """The shipped zoo weights, as references (``zoo/pattlite`` ...)."""
    return sorted(f"zoo/{p.stem}" for p in ZOO_DIR.glob("*.safetensors")) if ZOO_DIR.is_dir() else []


def zoo_path(ref: str) -> Path:
    """The file of a ``zoo/<model>`` reference (an error listing what is shipped when it is not)."""
    path = ZOO_DIR / f"{str(ref)[4:]}.safetensors"
    if not path.is_file():
        raise ConfigError(
            f"{ref!r} is not shipped (shipped zoo weights: {', '.join(list_zoo()) or 'none'}); the zoo's weights "
            "over 20 MB are not committed: train it with `ferlab zoo train --only <model>` and pass its run folder"
        )
    return path


def load_reference(ref):
    """A model (eval mode, ``.classes`` set) from a shipped name, a model file (run folder, ``.pt``,
    ``.safetensors`` weights or ensemble) or a model object (returned as is once checked)."""
    if not isinstance(ref, (str, Path)):
        if not hasattr(ref, "data_config") or not hasattr(ref, "classes"):
            raise ConfigError(f"{type(ref).__name__} is not a ferlab model (needs .data_config and .classes)")
        return ref
    if str(ref) in PRETRAINED:
        return load_default(str(ref))
    if str(ref).startswith("zoo/") and not Path(ref).exists():
        from .files import load_model

        return load_model(zoo_path(str(ref)))[0]
    if not Path(ref).exists():
        from ..models import list_models

        if str(ref) in list_models():
            raise ConfigError(
                f"{ref!r} is an architecture of the zoo without trained weights; train it (ferlab train "
                f"--config configs/{ref}/...yaml, or ferlab zoo train) and pass its run folder, or use a "
                f"shipped model: {', '.join(PRETRAINED)}"
            )
    from .files import load_model

    return load_model(ref)[0]
