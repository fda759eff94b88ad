"""The ferlab model zoo: one registry (:mod:`._registry`), one contract (:mod:`._base`), one description
(:mod:`.spec`), one module per paper model."""

from __future__ import annotations

import importlib

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


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
