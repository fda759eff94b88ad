"""Transforms: a model's input description (``DataConfig``), the one transform factory
(:func:`create_transform`, in :mod:`.factory`), augmentation and offline expansion (:mod:`.expand`)."""

from __future__ import annotations

from .._lazy import lazy_exports

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

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
