"""The layering rule of README's "Layout", read from the sources: core imports none of the
packages; pipeline and features import core only; a stage module imports no other stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ALLOWED = {"core": {"core"}, "pipeline": {"core", "pipeline"}, "features": {"core", "features"},
           "stages": {"core", "pipeline", "features", "stages"}}
# the DAG's stages and the commands that run on their outputs
STAGE_MODULES = {"prepare", "pretrain", "dump", "import_bank", "classify", "dlsa", "analyze",
                 "report", "route",
                 "compare", "fidelity"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package: str) -> None:
    wrong = {f"{path.relative_to(REPO)} -> {name}"
             for path in _files(package) for name in imported_modules(path)
             if name.split(".")[0] in ALLOWED and name.split(".")[0] not in ALLOWED[package]}
    assert not wrong, sorted(wrong)


def test_no_stage_module_imports_another() -> None:
    arrows = {f"{stage} -> {name}"
              for stage in STAGE_MODULES
              for name in imported_modules(REPO / "stages" / f"{stage}.py")
              if name.startswith("stages.") and name.split(".")[1] in STAGE_MODULES - {stage}}
    assert not arrows, sorted(arrows)


def test_the_rule_is_checked_on_every_stage_module() -> None:
    on_disk = {path.stem for path in (REPO / "stages").glob("*.py")}
    assert STAGE_MODULES <= on_disk
    assert imported_modules(REPO / "stages" / "cli.py") & {f"stages.{m}" for m in STAGE_MODULES}
