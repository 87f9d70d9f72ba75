"""The ``tailbank`` command line: one command per DVC stage (dvc.yaml calls these)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from core.atomic import is_disk_full
from core.constraints import ConfigFieldError
from stages.errors import USER_ERRORS, StageError
from stages.outputs import install_interrupt_handlers

app = typer.Typer(
    name="tailbank",
    help=(
        "Long-tailed recognition pipeline: pretrain backbones, dump HDF5 feature banks, "
        "train classifiers on the banks. `dvc repro` runs every stage; these commands run one. "
        "Each reads its own sections of params.yaml."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = typer.Option(
    Path("params.yaml"), "--params", "-p", help="The params file to read.", show_default=True
)
DebugOption = typer.Option(False, "--debug", help="Show the full traceback of an error.")
CascadeOption = typer.Option(..., "--model", help="A models/dlsa/<method> folder.")
BankOption = typer.Option(..., "--bank", help="An HDF5 feature bank to route.")
BaseKindOption = typer.Option(
    None, "--base", help="Base classifier of the remainder (a kind of dlsa.base_kinds; "
    "default: the first)."
)
PredictionsOption = typer.Option(
    Path("predictions"), "--out", help="Folder of the <split>.csv prediction tables."
)
MemoryOption = typer.Option(
    4096.0, "--memory-mb", help="Bank rows held in memory at once (MiB); a larger bank is read "
    "in windows, with the same predictions."
)
MethodOption = typer.Option(
    ..., "--method", "-m", help="A key of `methods:` in params.yaml (ce, cbs, bsce, ...)."
)


def _run(
    debug: bool,
    work: Callable[[], Any],
    *,
    resumable: bool = False,
    params: Path = Path("params.yaml"),
    method: str | None = None,
) -> Any:
    """Run a stage; a user error is one line on stderr and exit code 2 (traceback with --debug).

    SIGTERM is handled like Ctrl-C: the stage stops, its outputs stay as they were (see
    `stages.outputs`), and the line says whether running the command again resumes.

    Args:
        debug: re-raise errors for their traceback.
        work: the stage.
        resumable: the stage keeps checkpoints, so a new run continues where this one stopped.
        params: the params file, named when a library refuses a value only the data reveals
            (a k above the bank's rows, a queue too short for the classes).
        method: the ``--method`` of the command, for the same message.

    Returns:
        What ``work`` returns.
    """
    install_interrupt_handlers()
    try:
        return work()
    except ConfigFieldError as error:
        if debug:
            raise
        from stages.configs import restate

        _fail(one_line(restate(error, str(params), method)), 2)
    except USER_ERRORS as error:
        if debug:
            raise
        _fail(one_line(error), 2)
    except KeyboardInterrupt:
        again = ("its outputs are the old set or the new one, never a mix; run the same "
                 "command again to " + ("resume" if resumable else "redo it"))
        _fail(f"interrupted; {again}", 130, prefix="tailbank: ")
    except OSError as error:
        if debug or not is_disk_full(error):
            raise
        where = error.filename or "an output"
        _fail(f"no space left writing {where} ({error.strerror}); free space and re-run, the "
              "previous outputs are intact", 2)
    except Exception as error:
        if debug:
            raise
        _fail(f"internal error: {type(error).__name__}: {error} "
              "(re-run with --debug for the traceback and report it)", 1)


def _fail(line: str, code: int, prefix: str = "tailbank: error: ") -> None:
    print(f"{prefix}{line}", file=sys.stderr)
    raise typer.Exit(code)


def one_line(error: BaseException) -> str:
    """The user-facing line of an error: its first line, or its type when it has no message."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _params(path: Path):
    from stages.params import load_params

    return load_params(path)


def _method_params(path: Path, method: str):
    """The params, after checking that ``--method`` names one of their methods."""
    loaded = _params(path)
    loaded.method(method)
    return loaded


@app.command()
def check(params: Path = ParamsOption, debug: bool = DebugOption) -> None:
    """Validate params.yaml (every key, type and range) and exit; prints the methods found."""

    def work() -> None:
        loaded = _params(params)
        print(f"{params}: ok ({len(loaded.methods)} methods: {', '.join(loaded.methods)})")

    _run(debug, work)


@app.command()
def prepare(params: Path = ParamsOption, debug: bool = DebugOption) -> None:
    """Draw the long-tailed train, balanced val and test splits of `data.dataset`.

    Writes data/splits/<dataset>.json. Reads params: seed, data.
    """
    from stages import prepare as stage

    _run(debug, lambda: stage.run(_params(params)))


@app.command()
def pretrain(
    method: str = MethodOption, params: Path = ParamsOption, debug: bool = DebugOption
) -> None:
    """Train a backbone with one method; keep the epoch with the best val accuracy.

    Writes models/<method>/model.pt and results/pretrain/<method>/ (metrics, DVCLive curves).
    Resumes an interrupted run from checkpoints/pretrain/<method>.pt.
    Reads params: seed, data, train, methods.<method>. With `train.processes` > 1 it runs
    that many data-parallel ranks under torchrun (started here unless torchrun started it).
    """
    from stages import launch
    from stages import pretrain as stage

    def work() -> int:
        loaded = _params(params)
        recipe = loaded.train_for(method)
        processes = recipe.processes
        launch.check_global_batch(recipe.batch_size, processes, method)
        if processes > 1 and not launch.inside_torchrun():
            arguments = ["pretrain", "--method", method, "--params", str(params)]
            return launch.run_under_torchrun(processes, arguments + (["--debug"] if debug else []))
        stage.run(loaded, method)
        return 0

    code = _run(debug, work, resumable=True, params=params, method=method)
    if code:
        print(f"tailbank: error: a pretrain rank of '{method}' failed (exit {code}); its own "
              "line above says why", file=sys.stderr)
        raise typer.Exit(code)


@app.command()
def dump(
    method: str = MethodOption, params: Path = ParamsOption, debug: bool = DebugOption
) -> None:
    """Dump features, labels, index and logits of un-augmented train/val/test images.

    Writes banks/<method>.h5 (atomically). Reads params: data, dump.
    """
    from stages import dump as stage

    _run(debug, lambda: stage.run(_method_params(params, method), method), params=params,
         method=method)


@app.command()
def classify(
    method: str = MethodOption, params: Path = ParamsOption, debug: bool = DebugOption
) -> None:
    """Train the classifiers of `classify.kinds` on a bank; evaluate on test per shot group.

    Writes results/classify/<method>/metrics.json and per_class/<kind>.csv.
    Reads params: seed, classify, eval (and memory, which changes no result).
    """
    from stages import classify as stage

    _run(debug, lambda: stage.run(_method_params(params, method), method), params=params,
         method=method)


@app.command()
def dlsa(
    method: str = MethodOption, params: Path = ParamsOption, debug: bool = DebugOption
) -> None:
    """Fit a DLSA cascade (flow filters + cluster-aided classifiers) on a method's bank.

    Writes models/dlsa/<method>/ and results/dlsa/<method>/ (base vs base + DLSA for each kind
    of dlsa.base_kinds, per-filter separation accuracy and clusters). Reads params: seed,
    classify, dlsa, eval (and memory, which changes no result). Resumes an interrupted fit
    from checkpoints/dlsa/<method>/.
    """
    from stages import dlsa as stage

    _run(debug, lambda: stage.run(_method_params(params, method), method), resumable=True,
         params=params, method=method)


@app.command()
def analyze(
    method: str = MethodOption, params: Path = ParamsOption, debug: bool = DebugOption
) -> None:
    """Analyse the feature quality of a method's bank (faiss kNN purity, k-means, rho, probe).

    Writes results/analyze/<method>/ (analysis.json, metrics.json, rho.csv, clusters.csv,
    tsne.csv, confusion.json). Reads params: seed, analyze, eval (and memory, which changes no
    result).
    """
    from stages import analyze as stage

    _run(debug, lambda: stage.run(_method_params(params, method), method), params=params,
         method=method)


@app.command()
def report(params: Path = ParamsOption, debug: bool = DebugOption) -> None:
    """Render every method side by side: reports/index.html (plots embedded) and summary.md.

    Reads whatever results/classify, results/dlsa, results/analyze and results/pretrain hold
    for each method of `methods:`; a missing piece is named in the report. Reads params:
    methods, classify, dlsa, analyze, eval.
    """
    from stages import report as stage

    _run(debug, lambda: print(f"wrote {stage.run(_params(params))}"))


@app.command()
def route(
    model: Path = CascadeOption,
    bank: Path = BankOption,
    base: str = BaseKindOption,
    out: Path = PredictionsOption,
    memory_mb: float = MemoryOption,
    debug: bool = DebugOption,
) -> None:
    """Apply a fitted DLSA cascade to a bank without retraining; write predictions per split."""
    from stages import route as stage

    def work() -> None:
        if not (memory_mb > 0 and math.isfinite(memory_mb)):
            raise StageError(f"--memory-mb {memory_mb}: give a positive, finite size in MiB")
        accuracy = stage.run(model, bank, base, out, budget_bytes=int(memory_mb * 2**20))
        for split, value in accuracy.items():
            print(f"{split}: accuracy {value:.4f} -> {out / (split + '.csv')}")

    _run(debug, work)


@app.command()
def preset(
    name: str = typer.Argument(None, help="The preset to apply; leave out to list them."),
    params: Path = ParamsOption,
    debug: bool = DebugOption,
) -> None:
    """Apply a paper's recipe (e.g. cifar100_lt_gml) to params.yaml, or list the presets.

    Merges the preset's keys into params.yaml (comments of other keys are kept), validates the
    result and writes it atomically; `git diff params.yaml` shows what changed. Then `dvc repro`.
    """
    from stages import presets

    def work() -> None:
        if name is None:
            for preset_name, summary in presets.available().items():
                print(f"{preset_name:<24} {summary}")
            return
        changed = presets.apply(name, params)
        print(f"{params}: applied preset '{name}' ({len(changed)} keys: {', '.join(changed)})")

    _run(debug, work)


if __name__ == "__main__":
    app()
