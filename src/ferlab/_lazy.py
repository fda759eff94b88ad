"""Lazy re-exports for package ``__init__`` files (PEP 562), so importing a package stays cheap."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__, __all__)`` for ``package`` re-exporting ``exports`` (public name -> the relative
    module that defines it), each module imported on first use of one of its names.

    Example (in a package's ``__init__.py``)::

        __getattr__, __dir__, __all__ = lazy_exports(__name__, {"create_model": "._registry"})
    """

    def __getattr__(name):
        if name in exports:
            return getattr(importlib.import_module(exports[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted([*importlib.import_module(package).__dict__, *exports])

    return __getattr__, __dir__, sorted(exports)
