"""`core.lazy.lazy_package`: a package's exports imported from their modules on first use."""

from __future__ import annotations

import importlib
import sys

import pytest

from core.lazy import lazy_package


def test_the_exports_are_sorted_into_all_and_listed_by_dir() -> None:
    package = "tests.core"
    names, _, dir_ = lazy_package(package, {"zeta": "json", "alpha": "json"})
    assert names == ["alpha", "zeta"]
    assert {"alpha", "zeta"} <= set(dir_())


def test_a_name_is_imported_from_its_module_on_first_use_and_then_kept() -> None:
    package = "tests.core"
    _, getattr_, _ = lazy_package(package, {"dumps": "json"})
    try:
        assert getattr_("dumps") is importlib.import_module("json").dumps
        assert vars(sys.modules[package])["dumps"] is importlib.import_module("json").dumps
    finally:
        delattr(sys.modules[package], "dumps")
    with pytest.raises(AttributeError, match="has no attribute 'loads'"):
        getattr_("loads")

