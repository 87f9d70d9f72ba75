"""Package exports imported on first use (PEP 562), so that a torch-free module of a package
(its ``names``, its configs) can be imported without importing the package's torch modules.

A package's ``__init__`` declares which module holds each name it exports::

    __getattr__, __dir__ = lazy_exports(__name__, {"build_backbone": "pipeline.models.registry"})

``from pipeline.models import build_backbone`` then imports the registry (and torch) only then.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package with lazy exports.

    Args:
        package: the package's ``__name__``.
        exports: each exported name mapped to the module that defines it.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's ``__init__``.
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

    return getattr_, dir_
