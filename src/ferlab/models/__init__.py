"""The ferlab model zoo: one registry, one contract (see :mod:`ferlab.models._base`)."""

from ._base import FERModel
from ._registry import DataConfig, create_model, list_models, load_pretrained, model_info, register_model

__all__ = [
    "DataConfig",
    "FERModel",
    "create_model",
    "list_models",
    "load_pretrained",
    "model_info",
    "register_model",
]
