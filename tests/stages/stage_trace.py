"""Run one stage in this process and say what it imported and which params keys it read.

``python -m tests.stages.stage_trace OUT STAGE[:FUNCTION] [METHOD SEED]`` (FUNCTION: another
entry point than ``run``), run in a project folder (its params.yaml, splits, models and banks),
writes OUT: a JSON object with ``modules`` (the files of
tailbank's packages that are in ``sys.modules`` after the run) and ``params`` (the dotted params
keys the stage read, traced on the loaded `Params` object). The stage runs in a fresh
interpreter, or a fresh fork of a warm server (``command``; the fork drops every module of
tailbank's packages), so that ``sys.modules`` holds what it, and only it, needed.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

PACKAGES = ("core", "pipeline", "features", "stages")
# attributes that hand out a whole section's values at once
WHOLE_READS = frozenset({"model_dump", "model_dump_json", "model_copy", "__iter__"})


class ParamsReads:
    """The dotted keys read on one `Params` tree while `tracing` is active.

    A read of a value records ``<path>.<field>`` (reaching a nested section records nothing by
    itself); a whole-section read (``model_dump``) records the section's path.
    ``Params.method(name)`` only looks a method up (its fields are recorded as they are read);
    ``Params.train_for(name)`` reads ``methods.<name>.train`` and gives a recipe whose fields
    are recorded as ``train.<field>``.
    """

    def __init__(self, params: BaseModel) -> None:
        self.keys: set[str] = set()
        self._paths: dict[int, str] = {}
        self._paused = 0
        self._walk(params, "")
        self._root = params

    def _walk(self, value: Any, path: str) -> None:
        if isinstance(value, BaseModel):
            self._paths[id(value)] = path
            for name in type(value).model_fields:
                self._walk(value.__dict__[name], _join(path, name))
        elif isinstance(value, dict):
            for key, item in value.items():
                self._walk(item, _join(path, str(key)))

    def _record(self, model: BaseModel, name: str) -> None:
        path = self._paths.get(id(model))
        if self._paused or path is None:
            return
        if name in type(model).model_fields:
            # reaching a nested section is navigation; what is read in it is recorded
            if not isinstance(model.__dict__[name], BaseModel):
                self.keys.add(_join(path, name))
        elif name in WHOLE_READS:
            self.keys.add(path or "<all>")


    @contextmanager
    def tracing(self) -> Iterator[None]:
        """Record reads on the tree's models (and its method lookups) inside the block."""
        classes = {type(self._root)} | _model_classes(self._root)
        undo: list[Callable[[], None]] = []
        for cls in classes:
            undo.append(self._patch_getattribute(cls))
        undo += [self._patch_lookup("method", lambda name: (), None),
                 self._patch_lookup("imported", lambda name: (f"imports.{name}",), None),
                 self._patch_lookup("train_for", lambda name: (f"methods.{name}.train",),
                                    "train")]
        try:
            yield
        finally:
            for restore in undo:
                restore()

    def _patch_getattribute(self, cls: type) -> Callable[[], None]:
        had_own = "__getattribute__" in cls.__dict__
        original = cls.__getattribute__
        reads = self

        def traced(model: Any, name: str) -> Any:
            value = original(model, name)
            if not name.startswith("__pydantic") and name != "__dict__":
                reads._record(model, name)
            return value

        cls.__getattribute__ = traced  # type: ignore[method-assign]
        return lambda: (setattr(cls, "__getattribute__", original) if had_own
                        else delattr(cls, "__getattribute__"))

    def _patch_lookup(self, name: str, keys: Callable[[str], tuple[str, ...]],
                      result_path: str | None) -> Callable[[], None]:
        cls = type(self._root)
        original = cls.__dict__[name]
        reads = self

        def looked_up(params: Any, method: str, *args: Any, **kwargs: Any) -> Any:
            if not reads._paused:
                reads.keys.update(keys(method))
            reads._paused += 1
            try:
                result = original(params, method, *args, **kwargs)
            finally:
                reads._paused -= 1
            if result_path is not None:
                reads._walk(result, result_path)
            return result

        setattr(cls, name, looked_up)
        return lambda: setattr(cls, name, original)


def _model_classes(model: BaseModel) -> set[type]:
    found: set[type] = set()
    for name in type(model).model_fields:
        value = model.__dict__[name]
        values = value.values() if isinstance(value, dict) else [value]
        for item in values:
            if isinstance(item, BaseModel):
                found |= {type(item)} | _model_classes(item)
    return found


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def leaf_keys(tree: Any, path: str = "") -> list[str]:
    """The dotted keys of every value in a nested mapping (a mapping's own key when empty)."""
    if isinstance(tree, dict) and tree:
        return [leaf for key, value in tree.items() for leaf in leaf_keys(value, _join(path, key))]
    return [path]


def our_module_files(repo: Path) -> list[str]:
    """Repository-relative files of the tailbank modules now imported."""
    files = set()
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in PACKAGES and getattr(module, "__file__", None):
            path = Path(module.__file__).resolve()
            if path.is_relative_to(repo):
                files.add(str(path.relative_to(repo)))
    return sorted(files)


def main(argv: list[str]) -> None:
    out, stage, *rest = argv
    from stages.params import load_params

    params = load_params("params.yaml")
    reads = ParamsReads(params)
    # STAGE may name another entry point of the module: dump:run_import
    name, _, function = stage.partition(":")
    module = importlib.import_module(f"stages.{name}")
    arguments = (rest[0], int(rest[1])) if rest else ()
    with reads.tracing():
        getattr(module, function or "run")(params, *arguments)
    repo = Path(__file__).resolve().parents[2]
    Path(out).write_text(json.dumps({"modules": our_module_files(repo),
                                     "params": sorted(reads.keys),
                                     "leaves": sorted(leaf_keys(params.model_dump()))}))


def command() -> None:
    """`main` with this process's arguments (what a warm server runs: `stages.warm`)."""
    main(sys.argv[1:])


if __name__ == "__main__":
    command()
