"""What each stage's code is: the import closure of its module within tailbank's packages,
found by reading the sources (no import runs), as dvc.yaml's ``deps:`` (`stages.dag`).

`pipeline.methods` is the one exception: a method's training and dump depend on that method's
own modules (and the shared ones), so editing paco.py re-runs only PaCo's branch. Names a
package exports lazily (`core.lazy`) are followed to the module that defines them.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "pipeline", "features", "stages")
METHODS_PACKAGE = "pipeline.methods"
# shared by every method: the interface, option parsing, the registry (not what it imports)
# (kinds holds every kind's options: validating params.yaml reads them in every stage)
SHARED_METHOD_MODULES = ("pipeline.methods", "pipeline.methods.base", "pipeline.methods.kinds",
                         "pipeline.methods.options", "pipeline.methods.registry")


def code_dependencies(module: str, method_modules: Iterable[str] = ()) -> list[str]:
    """The files (whole folders where every file is needed) a stage module imports.

    Args:
        module: the stage's module, e.g. "stages.classify".
        method_modules: modules of `pipeline.methods` the stage runs (the method's own); the
            rest of that package is left out.
    """
    return list(_code_dependencies(module, frozenset(method_modules)))


@functools.cache
def _code_dependencies(module: str, method_modules: frozenset[str]) -> tuple[str, ...]:
    # one answer per stage module and method: `tailbank check` renders all 42 blocks
    # what the method's own modules import from outside pipeline.methods (e.g. PaCo's
    # augmentations) is followed too
    roots = [module] + [imported for name in method_modules for imported in _imports(name)
                        if not _is_method_module(imported)]
    found = import_closure(roots, skip=_is_other_method_module) | set(method_modules)
    files = sorted({_module_file(name) for name in found})
    return tuple(_folded(files))


@functools.cache  # the same per kind: asked for each of a kind's methods and every render
def method_dependencies(kind: str) -> frozenset[str]:
    """The modules of `pipeline.methods` that method ``kind`` runs: its own module, what it
    imports from the package, and the shared interface."""
    from pipeline.methods.kinds import METHOD_KINDS

    own = METHOD_KINDS[kind].module
    # the package __init__ and the registry import every method: shared, but not followed
    closure = import_closure(
        [own], skip=lambda name: not name.startswith(METHODS_PACKAGE + ".")
        or name in SHARED_METHOD_MODULES)
    return frozenset(closure | set(SHARED_METHOD_MODULES))


def _is_method_module(name: str) -> bool:
    return name.startswith(METHODS_PACKAGE + ".") or name == METHODS_PACKAGE


def _is_other_method_module(name: str) -> bool:
    """A module of `pipeline.methods` that is not shared by every method: followed only for
    the methods a stage runs."""
    return _is_method_module(name) and name not in SHARED_METHOD_MODULES


def import_closure(modules: list[str], skip: Any = lambda name: False) -> set[str]:
    """Every tailbank module the given modules import, directly or not (read from the source,
    nothing is imported); modules for which ``skip`` is true are not followed (nor kept)."""
    seen: set[str] = set()
    todo = [name for name in modules if not skip(name)]
    while todo:
        name = todo.pop()
        if name in seen or not _is_ours(name):
            continue
        seen.add(name)
        for imported in _imports(name):
            if imported not in seen and not skip(imported):
                todo.append(imported)
    return seen


# An import statement at any indentation, a parenthesised name list spanning lines included.
_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import[ \t]*(?:\([^)]*\)|[^\n]*)|import[ \t]+[^\n]*)",
    re.MULTILINE)


def import_statements(source: str) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module's source, nested ones too, in order.

    Only the lines that look like imports are parsed (each alone): `tailbank check` renders
    every stage's dependencies, and parsing whole modules was most of its time. A line that
    only looks like one (prose in a docstring) would be taken too; tests/stages/
    test_code_deps.py checks that this gives exactly what parsing the whole module gives, for
    every module of the packages.
    """
    found: list[ast.Import | ast.ImportFrom] = []
    for match in _IMPORT.finditer(source):
        try:
            tree = ast.parse(match.group(0).strip())
        except SyntaxError:
            continue
        found += [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return found


@functools.cache
def _imports(module: str) -> frozenset[str]:
    path = REPO / _module_file(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in import_statements(path.read_text()):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            exports = _lazy_exports(base) if _is_ours(base) else {}
            # a name a package exports lazily comes from its module, not the whole package
            found |= {exports.get(alias.name, f"{base}.{alias.name}") for alias in node.names}
    resolved = set()
    for name in found:
        # "a.b.c" may name a module, or a package's attribute: keep the longest module
        while name and not _is_ours(name):
            name = name.rpartition(".")[0]
        if name:
            resolved.add(name)
            parent = name.rpartition(".")[0]
            while parent:  # importing a.b.c runs a/__init__.py and a/b/__init__.py
                resolved.add(parent)
                parent = parent.rpartition(".")[0]
    return frozenset(resolved)


@functools.cache
def _lazy_exports(package: str) -> dict[str, str]:
    """The names a package's ``__init__`` exports lazily (`core.lazy.lazy_package`), each with
    its module: the module-level ``_EXPORTS`` dict. ``from package import name`` imports that
    module."""
    path = REPO / _module_file(package)
    if path.name != "__init__.py":
        return {}
    for node in ast.parse(path.read_text(), str(path)).body:
        target = node.target if isinstance(node, ast.AnnAssign) else (
            node.targets[0] if isinstance(node, ast.Assign) else None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and target.id == "_EXPORTS" and isinstance(
                value, ast.Dict):
            return {key.value: item.value for key, item in zip(value.keys, value.values,
                                                                strict=True)
                    if isinstance(key, ast.Constant) and isinstance(item, ast.Constant)}
    return {}


@functools.cache  # asked thousands of times per render, of a few hundred names
def _is_ours(name: str) -> bool:
    if name.split(".")[0] not in PACKAGES:
        return False
    base = REPO / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


@functools.cache
def _module_file(name: str) -> str:
    base = Path(name.replace(".", "/"))
    return str(base / "__init__.py") if (REPO / base / "__init__.py").is_file() else str(
        base.with_suffix(".py"))


def _folded(files: list[str]) -> list[str]:
    """Replace every folder whose .py files are all listed by the folder itself."""
    chosen = set(files)
    folders = sorted({str(Path(f).parent) for f in files}, key=lambda f: f.count("/"))
    result = set(chosen)
    for folder in folders:
        members = _python_files(folder)
        if members and members <= result:
            result = {f for f in result if not f.startswith(folder + "/")} | {folder}
    return sorted(result)


@functools.cache
def _python_files(folder: str) -> frozenset[str]:
    return frozenset(str(p.relative_to(REPO)) for p in (REPO / folder).rglob("*.py"))
