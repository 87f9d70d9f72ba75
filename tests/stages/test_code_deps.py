"""`stages.code_deps`: the import scan `tailbank check` relies on finds what the parser finds."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from stages import code_deps
from tests.stages.conftest import REPO


def test_the_line_scan_finds_every_import_the_parser_finds_in_every_module() -> None:
    modules = [path for package in code_deps.PACKAGES
               for path in sorted((REPO / package).rglob("*.py"))]
    assert len(modules) > 100
    for path in modules:
        source = path.read_text()
        scanned = [ast.dump(node) for node in code_deps.import_statements(source)]
        parsed = [ast.dump(node) for node in import_statements_parsed(source)]
        assert scanned == parsed, f"{path}: the line scan and the parser disagree"


def test_the_line_scan_reads_nested_and_parenthesised_imports_and_skips_prose() -> None:
    source = (
        '"""Docs.\n\nimport is lazy here, from the start.\n"""\n'
        "from a.b import (\n    c,\n    d,\n)\n"
        "def f():\n    import e.f as g\n    if x:\n        from . import h\n"
    )
    names = [ast.dump(node) for node in code_deps.import_statements(source)]
    assert names == [ast.dump(node) for node in import_statements_parsed(source)]
    assert len(names) == 3


def import_statements_parsed(source: str) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of a module from its whole syntax tree: the reference."""
    return [node for node in _statements(ast.parse(source).body)
            if isinstance(node, (ast.Import, ast.ImportFrom))]


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement, nested ones too."""
    for node in body:
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                yield from _statements(inner)
