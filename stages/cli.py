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

# The app's help is the docstring of its callback, main().
app = typer.Typer(
    name="tailbank",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(asked: bool) -> None:
    if asked:
        from stages.version import tailbank_version

        print(f"tailbank {tailbank_version()}")
        raise typer.Exit()


VersionOption = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                             help="Print tailbank's version and exit.")


@app.callback()
def main(version: bool = VersionOption) -> None:
    """Long-tailed recognition pipeline: pretrain backbones, dump HDF5 feature banks, train
    classifiers on the banks. `dvc repro` runs every stage; these commands run one. Each reads
    its own sections of params.yaml."""


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


SeedOption = typer.Option(
    None, "--seed", "-s", help="The training seed to run (one of `seeds:` in params.yaml); "
    "default: each of them in turn."
)


def _seeds(loaded: Any, seed: int | None) -> tuple[int, ...]:
    """``--seed`` checked against ``seeds:``, or all of them."""
    if seed is None:
        return tuple(loaded.seeds)
    if seed not in loaded.seeds:
        raise StageError(f"--seed {seed}: not in seeds ({', '.join(map(str, loaded.seeds))}) of "
                         "params.yaml; add it there first (DVC runs what params.yaml lists)")
    return (seed,)


def _per_seed(
    stage_run: Callable[[Any, str, int], Any],
    params: Path,
    method: str,
    seed: int | None,
    *,
    banks_from_elsewhere: bool = False,
) -> Callable[[], None]:
    """The work of a per-seed stage: ``stage_run(params, method, seed)`` for each seed.

    With ``banks_from_elsewhere`` (the stage-2 stages) ``method`` may also be a key that
    params.yaml does not name, of a bank from `import-bank` or `dump --checkpoint`: the stage
    checks that against the bank itself (`stages.layout.require_stage2_bank`).
    """

    def work() -> None:
        loaded = _params(params) if banks_from_elsewhere else _method_params(params, method)
        for each in _seeds(loaded, seed):
            stage_run(loaded, method, each)

    return work


@app.command()
def check(params: Path = ParamsOption, debug: bool = DebugOption) -> None:
    """Validate params.yaml (every key, type and range) and that dvc.yaml matches its methods."""

    def work() -> None:
        import yaml

        from stages import dag

        loaded = _params(params)
        dumped = loaded.model_dump(mode="json")
        if Path("dvc.yaml").is_file() and not dag.is_current(dumped):
            raise StageError("dvc.yaml: out of date with the methods of params.yaml; run "
                             "`tailbank dag` to regenerate it")
        missing = dag.missing_params(yaml.safe_load(params.read_text()), dumped)
        if missing:
            raise StageError(f"{params}: {', '.join(missing)} missing; dvc.yaml tracks every "
                             "key a stage reads, so write each one (the repository's "
                             "params.yaml has them all, at their defaults)")
        print(f"{params}: ok ({len(loaded.methods)} methods: {', '.join(loaded.methods)}; "
              f"seeds {', '.join(map(str, loaded.seeds))})")

    _run(debug, work)


@app.command()
def dag(params: Path = ParamsOption, debug: bool = DebugOption) -> None:
    """Write the DAG for the methods and imports of params.yaml: dvc.yaml (prepare, report)
    and pipelines/<bank>/dvc.yaml (each bank's branch, every block over the seeds). Run it
    after adding, removing or renaming a method or an import."""

    def work() -> None:
        from stages import dag as generator

        loaded = _params(params)
        changed = generator.write(loaded.model_dump(mode="json"))
        state = "written" if changed else "already current"
        print(f"dvc.yaml and pipelines/<bank>/dvc.yaml: {state} ({len(loaded.methods)} "
              f"methods, {len(loaded.imports)} imports)")

    _run(debug, work)


@app.command(name="run")
def run_all(seed: int = SeedOption, params: Path = ParamsOption,
            debug: bool = DebugOption) -> None:
    """Run every stage of the DAG in this one process, in an order `dvc repro` could take,
    without DVC's cache: for a quick full run, or on a GPU machine where each command's start
    costs seconds of imports. Gives the same bytes as `dvc repro`; DVC does not record the run
    (`dvc commit` does). A multi-process `train.processes` is refused here: use dvc repro."""

    def work() -> None:
        import importlib

        from stages import dag as generator

        loaded = _params(params)
        if any(loaded.train_for(method).processes > 1 for method in loaded.methods):
            raise StageError("train.processes > 1 needs one process per rank; run `dvc repro` "
                             "(or `tailbank pretrain`) instead of `tailbank run`")
        seeds = _seeds(loaded, seed)
        dumped = loaded.model_dump(mode="json")
        for stage, method in generator.run_order(dumped["methods"], dumped["imports"]):
            run = getattr(importlib.import_module(stage.module), stage.function)
            if method is None:
                run(loaded)
                continue
            for each in seeds:
                run(loaded, method, each)

    _run(debug, work, resumable=True, params=params)


@app.command()
def prepare(params: Path = ParamsOption, debug: bool = DebugOption) -> None:
    """Draw the long-tailed train, balanced val and test splits of `data.dataset`.

    Writes data/splits/<dataset>.json. Reads params: data (its split_seed draws the splits).
    """
    from stages import prepare as stage

    _run(debug, lambda: stage.run(_params(params)))


@app.command()
def pretrain(
    method: str = MethodOption,
    seed: int = SeedOption,
    params: Path = ParamsOption,
    debug: bool = DebugOption,
) -> None:
    """Train a backbone with one method; keep the epoch with the best val accuracy.

    Writes models/<method>/seed<k>/model.pt and results/pretrain/<method>/seed<k>/ (metrics,
    DVCLive curves). Resumes an interrupted run from checkpoints/pretrain/<method>/seed<k>.pt.
    An option given a list of values trains one backbone per value (each resumable from
    checkpoints/pretrain/<method>/seed<k>/<option>=<value>.pt) and keeps the best on val.
    Reads params: data, train, methods.<method>. With `train.processes` > 1 it runs that many
    data-parallel ranks under torchrun (started here unless torchrun started it).
    """
    from stages import launch
    from stages import pretrain as stage

    def work() -> int:
        loaded = _method_params(params, method)
        recipe = loaded.train_for(method)
        processes = recipe.processes
        launch.check_global_batch(recipe.batch_size, processes, method)
        for each in _seeds(loaded, seed):
            if processes > 1 and not launch.inside_torchrun():
                arguments = ["pretrain", "--method", method, "--seed", str(each), "--params",
                             str(params)]
                code = launch.run_under_torchrun(
                    processes, arguments + (["--debug"] if debug else []))
                if code:
                    return code
            else:
                stage.run(loaded, method, each)
        return 0

    code = _run(debug, work, resumable=True, params=params, method=method)
    if code:
        print(f"tailbank: error: a pretrain rank of '{method}' failed (exit {code}); its own "
              "line above says why", file=sys.stderr)
        raise typer.Exit(code)


def _check_bank_key(method: str) -> None:
    """A ``--method`` that names a bank from elsewhere is a valid method key all the same."""
    from core.names import name_problem

    problem = name_problem(method)
    if problem is not None:
        raise StageError(f"--method {method!r} {problem} (it names the bank's folder and "
                         "the stage-2 results)")


CheckpointOption = typer.Option(
    None, "--checkpoint", help="A network trained elsewhere: the state_dict of a tailbank or "
    "torchvision backbone (read with weights_only=True; nothing is downloaded). --method then "
    "only names the bank, and need not be in params.yaml."
)
BackboneOption = typer.Option(
    None, "--backbone", help="With --checkpoint: the architecture of its weights (resnet32, "
    "resnet50, ...)."
)


@app.command()
def dump(
    method: str = MethodOption,
    seed: int = SeedOption,
    params: Path = ParamsOption,
    checkpoint: Path = CheckpointOption,
    backbone: str = BackboneOption,
    debug: bool = DebugOption,
) -> None:
    """Dump features, labels, index and logits of un-augmented train/val/test images.

    Writes banks/<method>/seed<k>.h5 (atomically). Reads params: data, dump. For a key of
    `imports:` of kind checkpoint, or with --checkpoint PATH --backbone NAME, the features
    come from a network trained elsewhere instead of `pretrain`'s (logits only when its head
    has one row per class; with --checkpoint, --seed defaults to the first of `seeds:`).
    """
    from stages import dump as stage

    def work() -> None:
        loaded = _params(params)
        if checkpoint is not None or backbone is not None:
            _dump_checkpoint(loaded, method, seed, checkpoint, backbone)
        elif method in loaded.imports:
            for each in _seeds(loaded, seed):
                stage.run_import(loaded, method, each)
        else:
            loaded.method(method)
            for each in _seeds(loaded, seed):
                stage.run(loaded, method, each)

    _run(debug, work, params=params, method=method)


def _dump_checkpoint(loaded: Any, method: str, seed: int | None, checkpoint: Path | None,
                     backbone: str | None) -> None:
    """``dump --checkpoint PATH --backbone NAME``: one seed's bank from a weights file."""
    from pipeline.models.names import BACKBONES
    from stages import dump as stage
    from stages.sections import one_of

    if checkpoint is None or backbone is None:
        raise StageError("--checkpoint and --backbone go together; give both (or neither "
                         "to dump the model `pretrain` trained)")
    try:
        one_of(backbone, BACKBONES)
    except ValueError as error:
        raise StageError(f"--backbone: {error}") from None
    _check_bank_key(method)
    if method in loaded.methods or method in loaded.imports:
        raise StageError(f"--method {method}: a key of params.yaml, whose bank `dump --method "
                         f"{method}` makes; file a network from elsewhere under another key")
    stage.run_checkpoint(loaded, checkpoint, backbone, method, _seeds(loaded, seed)[0])


SourceArgument = typer.Argument(
    None, help="A .npz, a .pt/.pth dict of tensors, or a folder of <key>.npy files (README: "
    "Your own features and networks); default: imports.<method>.source of params.yaml.")
BankKeyOption = typer.Option(..., "--method", "-m", help="The key the bank is filed under "
                             "(banks/<method>/seed<k>.h5); run stage 2 with it.")
BankSeedOption = typer.Option(None, "--seed", "-s", help="The seed it is filed under (one of "
                              "`seeds:` to run stage 2 on it); default: 0 for a SOURCE given "
                              "here, each of `seeds:` for an entry of `imports:`.")
DatasetNameOption = typer.Option(None, "--dataset", help="With SOURCE: the data set's name, "
                                 "for the report (default: imported).")
NetworkNameOption = typer.Option(None, "--backbone", help="With SOURCE: the network's name, "
                                 "for the report (default: imported).")


@app.command(name="import-bank")
def import_bank(
    source: Path = SourceArgument,
    method: str = BankKeyOption,
    seed: int = BankSeedOption,
    dataset: str = DatasetNameOption,
    backbone: str = NetworkNameOption,
    params: Path = ParamsOption,
    debug: bool = DebugOption,
) -> None:
    """Turn features computed elsewhere into a bank that classify, dlsa and analyze read.

    The source holds <split>_features [N, D] and <split>_labels [N] for train, val and test
    (optional <split>_logits [N, C], <split>_index [N], class_names, num_classes); class
    counts come from train_labels. Writes banks/<method>/seed<k>.h5 (atomically), recording
    the source's path and sha256. Without SOURCE it reads params: imports.<method> (kind
    imported); with SOURCE, no params.
    """
    from stages import import_bank as stage

    def work() -> None:
        _check_bank_key(method)
        if source is not None:
            stage.import_source(source, method, 0 if seed is None else seed,
                                dataset=dataset or stage.IMPORTED,
                                backbone=backbone or stage.IMPORTED)
            return
        if dataset is not None or backbone is not None:
            raise StageError("--dataset and --backbone go with a SOURCE; for an entry of "
                             "imports:, set them there")
        loaded = _params(params)
        for each in _seeds(loaded, seed):
            stage.run(loaded, method, each)

    _run(debug, work, params=params, method=method)


@app.command()
def classify(
    method: str = MethodOption,
    seed: int = SeedOption,
    params: Path = ParamsOption,
    debug: bool = DebugOption,
) -> None:
    """Train the classifiers of `classify.kinds` on a bank; evaluate on test per shot group.

    Writes results/classify/<method>/seed<k>/ (metrics.json, predictions.npz,
    per_class/<kind>.csv). Reads params: classify, eval (and memory, which changes no result).
    """
    from stages import classify as stage

    _run(debug, _per_seed(stage.run, params, method, seed, banks_from_elsewhere=True),
         params=params, method=method)


@app.command()
def dlsa(
    method: str = MethodOption,
    seed: int = SeedOption,
    params: Path = ParamsOption,
    debug: bool = DebugOption,
) -> None:
    """Fit a DLSA cascade (flow filters + cluster-aided classifiers) on a method's bank.

    Writes models/dlsa/<method>/seed<k>/ and results/dlsa/<method>/seed<k>/ (base vs base +
    DLSA for each kind of dlsa.base_kinds, test predictions, per-filter separation accuracy
    and clusters). Reads params: classify, dlsa, eval (and memory, which changes no result).
    Resumes an interrupted fit from checkpoints/dlsa/<method>/seed<k>/.
    """
    from stages import dlsa as stage

    _run(debug, _per_seed(stage.run, params, method, seed, banks_from_elsewhere=True),
         resumable=True, params=params, method=method)


@app.command()
def analyze(
    method: str = MethodOption,
    seed: int = SeedOption,
    params: Path = ParamsOption,
    debug: bool = DebugOption,
) -> None:
    """Analyse the feature quality of a method's bank (faiss kNN purity, k-means, rho, probe).

    Writes results/analyze/<method>/seed<k>/ (analysis.json, metrics.json, rho.csv,
    clusters.csv, tsne.csv, confusion.json). Reads params: analyze, eval (and memory, which
    changes no result).
    """
    from stages import analyze as stage

    _run(debug, _per_seed(stage.run, params, method, seed, banks_from_elsewhere=True),
         params=params, method=method)


@app.command()
def report(params: Path = ParamsOption, debug: bool = DebugOption) -> None:
    """Render every method side by side: reports/index.html (plots embedded), summary.md, the
    metrics files results/summary/<method>.json and the overlay tables reports/plots/.

    Reads what results/classify, results/dlsa, results/analyze and results/pretrain hold for
    each method of `methods:` and each seed of `seeds:`; a missing piece is named in the
    report. Shows means over the seeds with 95 % intervals, and marks a value best only when
    a paired test says it beats the runner-up.
    """
    from stages import report as stage

    _run(debug, lambda: print(f"wrote {stage.run(_params(params))}"))


@app.command()
def compare(
    first: str = typer.Argument(..., help="method[:classifier][+dlsa], e.g. ce, ce:cosine, "
                                "ce+dlsa"),
    second: str = typer.Argument(..., help="the other result, in the same form"),
    params: Path = ParamsOption,
    debug: bool = DebugOption,
) -> None:
    """Compare two results on the same test rows, overall and per shot group.

    A classifier left out is the one chosen on val; `+dlsa` is DLSA in front of it (its base
    chosen on val when left out). Prints each accuracy, the difference with its 95 % interval
    from a paired bootstrap over the test rows (seeds pooled per row), its p-value, McNemar's
    test per seed and, with two or more seeds, the t interval of the per-seed differences.
    """
    from stages import compare as stage

    _run(debug, lambda: print(stage.run(_params(params), first, second)))


FindingsOption = typer.Option(None, "--out", help="Also write the findings as JSON here.")
ReproOption = typer.Option(False, "--repro", help="Run `dvc repro` of every method's classify "
                           "and dlsa stages first.")


@app.command()
def fidelity(
    params: Path = ParamsOption,
    out: Path = FindingsOption,
    repro: bool = ReproOption,
    debug: bool = DebugOption,
) -> None:
    """Each paper claim (BSCE > CE, BIB >= BSCE, MBIB >= BIB, student >= teacher, PaCo > BSCE,
    decoupled > joint CE head, DLSA > base per backbone) on this data set and these seeds.

    Prints a markdown table: both accuracies, the difference with its 95 % interval (the wider
    of the paired bootstrap over test rows and, with 2 or more seeds, the t interval across
    seeds) and a verdict: holds, fails or inconclusive. For several seeds:
    `dvc exp run -S 'seeds=[0,1,2,3,4]'`, then `tailbank fidelity`.
    """
    from stages import fidelity as stage

    def work() -> None:
        if out is not None and out.exists() and not out.is_file():
            raise StageError(f"--out {out}: a folder is there; name a file")
        print(stage.run(_params(params), out=out, repro=repro))

    _run(debug, work)


@app.command()
def route(
    model: Path = CascadeOption,
    bank: Path = BankOption,
    base: str = BaseKindOption,
    out: Path = PredictionsOption,
    memory_mb: float = MemoryOption,
    filters: int = typer.Option(None, "--filters", help="How many filters route (0 .. F); "
                                "default: the number the val gate chose."),
    debug: bool = DebugOption,
) -> None:
    """Apply a fitted DLSA model to a bank without retraining; write predictions per split."""
    from stages import route as stage

    def work() -> None:
        if not (memory_mb > 0 and math.isfinite(memory_mb)):
            raise StageError(f"--memory-mb {memory_mb}: give a positive, finite size in MiB")
        accuracy = stage.run(model, bank, base, out, budget_bytes=int(memory_mb * 2**20),
                             filters=filters)
        for split, value in accuracy.items():
            print(f"{split}: accuracy {value:.4f} -> {out / (split + '.csv')}")

    _run(debug, work)


WarmCommandArgument = typer.Argument(
    None, help="A command to run with the server (e.g. dvc repro); leave out to serve until "
    "stopped.")
WarmSocketOption = typer.Option(
    None, "--socket", help="The server's Unix socket (default: a fresh one with a command, "
    "else warm.sock in $XDG_RUNTIME_DIR or a private tailbank-<uid> folder of the temp folder).")
WarmIdleOption = typer.Option(3600.0, "--idle", help="Stop after this many idle seconds.")


@app.command(context_settings={"ignore_unknown_options": True,
                               "allow_interspersed_args": False})
def warm(
    command: list[str] = WarmCommandArgument,
    socket_path: Path = WarmSocketOption,
    idle: float = WarmIdleOption,
    debug: bool = DebugOption,
) -> None:
    """Keep the libraries imported: each tailbank command then starts in well under a second
    instead of about 6 s (torch, scikit-learn, scipy).

    `tailbank warm dvc repro` runs dvc repro with a warm server and stops it after. Alone, it
    serves until Ctrl-C or --idle; commands started with TAILBANK_WARM=<socket> use it. Each
    command runs in a fresh fork, importing tailbank's code as it is on disk, with the same
    output bytes, exit status and signals as a cold start (see the stages.warm package). Linux only.
    """
    from stages.warm import command as warm_command

    _run(debug, lambda: warm_command.run(command or [], socket_path, idle))


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
        if "methods" in changed and Path("dvc.yaml").is_file():
            from stages import dag as generator

            generator.write(_params(params).model_dump(mode="json"))
            print("dvc.yaml: regenerated for the preset's methods")

    _run(debug, work)


if __name__ == "__main__":
    app()
