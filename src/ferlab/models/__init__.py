"""The ferlab model zoo: one registry (:mod:`._registry`), one contract (:mod:`._base`), one description
(:mod:`.spec`), one module per paper model."""

from __future__ import annotations

from .._lazy import lazy_exports

#: public name -> the submodule that defines it (imported on first use: importing the package stays cheap)
_EXPORTS = {
    "FERModel": "._base",
    "DataConfig": "._registry",
    "create_model": "._registry",
    "create_model_from_spec": "._registry",
    "list_models": "._registry",
    "load_pretrained": "._registry",
    "model_info": "._registry",
    "register_model": "._registry",
    "resolve_data_config": "._registry",
    "ModelSpec": ".spec",
    "attach_spec": ".spec",
    "spec_of": ".spec",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
