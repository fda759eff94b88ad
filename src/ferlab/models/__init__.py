"""The ferlab model zoo: one registry, one contract (see :mod:`ferlab.models._base`)."""

from ._base import FERModel
from ._registry import (
    DataConfig,
    create_model,
    create_model_from_spec,
    list_models,
    load_pretrained,
    model_info,
    register_model,
    resolve_data_config,
)
from .spec import ModelSpec, attach_spec, spec_of

__all__ = [
    "DataConfig",
    "FERModel",
    "ModelSpec",
    "attach_spec",
    "create_model",
    "create_model_from_spec",
    "list_models",
    "load_pretrained",
    "model_info",
    "register_model",
    "resolve_data_config",
    "spec_of",
]
