"""Transforms: a model's input description (``DataConfig``), the one transform factory
(:func:`create_transform`, in :mod:`.factory`), augmentation and offline expansion (:mod:`.expand`)."""

from __future__ import annotations

import importlib

#: public name -> the submodule that defines it (imported on first use: importing the package stays cheap)
_EXPORTS = {
    "AugmentConfig": ".factory",
    "to_tensor_batch": ".factory",
    "erase_mask": ".factory",
    "augment_batch": ".factory",
    "lbp_channel": ".factory",
    "FaceTransform": ".factory",
    "create_transform": ".factory",
    "DataConfig": ".data_config",
    "IMAGENET_MEAN": ".data_config",
    "IMAGENET_STD": ".data_config",
    "expand": ".expand",
}


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
