"""Package exports imported on first use (PEP 562), so that a torch-free module of a package
(its ``names``, its configs) can be imported without importing the package's torch modules.

A package's ``__init__`` declares which module holds each name it exports, in a module-level
``_EXPORTS`` dict (`stages.dag` reads that dict from the source to find which module a
``from package import name`` imports), and ends with one call::

    _EXPORTS: dict[str, str] = {"build_backbone": "pipeline.models.registry"}
    __all__, __getattr__, __dir__ = lazy_package(__name__, _EXPORTS)

``from pipeline.models import build_backbone`` then imports the registry (and torch) only then.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_package(
    package: str, exports: Mapping[str, str]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__all__``, ``__getattr__`` and ``__dir__`` of a package with lazy
    exports.

    Args:
        package: the package's ``__name__``.
        exports: each exported name mapped to the module that defines it.

    Returns:
        ``(__all__, __getattr__, __dir__)`` to assign in the package's ``__init__``:
        ``__all__`` is the exported names, sorted.
    """

    def getattr_(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        # later look-ups find the name directly, without this hook
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return sorted(exports), getattr_, dir_
