"""A method option chosen on val: one backbone per listed value, the best one kept.

``methods.<m>.options.<option>: [v1, v2, ...]`` (a list for an option whose value is one
number, e.g. MBIB's ``beta: [0, 1, 2, 3, 4, 5]``, the sweep of Lan et al. 2025, App. I) makes
``pretrain@<m>`` train one backbone per value, one after the other, each keeping its best epoch
on val. The stage then keeps the value whose best epoch has the highest val accuracy (ties: the
first listed) as its model, and records every value's score in its ``metrics.json``. Nothing
here reads the test split. A run that diverges is left out of the choice; if every run
diverges the stage fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.engine import NonFiniteError, TrainResult
from pipeline.methods import OptionSweep, method_sweep
from stages.errors import StageError
from stages.params import MethodParams

SELECTION_RULE = "the best val accuracy of each value's best epoch; ties go to the first listed"


@dataclass(frozen=True)
class Candidate:
    """One training run of a pretrain stage.

    Attributes:
        options: the method's options, each a single value.
        label: the run's name in logs and checkpoint file names (``beta=5.0``); None when
            the stage trains one backbone only.
        value: the swept option's value (None without a sweep).
    """

    options: dict[str, Any]
    label: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Outcome:
    """How one candidate's training ended: its result, or where it diverged."""

    candidate: Candidate
    result: TrainResult | None = None
    diverged: str | None = None


@dataclass(frozen=True)
class Plan:
    """The runs of one pretrain stage: one candidate, or one per listed value."""

    candidates: list[Candidate]
    sweep: OptionSweep | None = None


def plan_runs(entry: MethodParams) -> Plan:
    """The candidates of a ``methods.<m>`` entry (its options checked by `check` already)."""
    sweep = method_sweep(entry.kind, entry.options)
    if sweep is None:
        return Plan([Candidate(dict(entry.options))])
    runs = [Candidate(options, sweep.label(value), value)
            for options, value in zip(sweep.candidates(entry.options), sweep.values, strict=True)]
    return Plan(runs, sweep)


def divergence(error: NonFiniteError) -> str:
    """Where a run diverged, as recorded in ``metrics.json``."""
    return f"non-finite loss or gradient at epoch {error.epoch + 1}, step {error.step + 1}"


def select_on_val(outcomes: Sequence[Outcome], method: str) -> Outcome:
    """The outcome with the highest val accuracy; the first listed wins ties.

    Raises:
        StageError: every run diverged.
    """
    finished = [outcome for outcome in outcomes if outcome.result is not None]
    if not finished:
        runs = "; ".join(f"{o.candidate.label}: {o.diverged}" for o in outcomes)
        raise StageError(f"pretrain {method}: every value of the sweep diverged ({runs}); "
                         "lower optim.lr, set max_grad_norm or list other values")
    best = finished[0]
    for outcome in finished[1:]:
        assert outcome.result is not None and best.result is not None
        if outcome.result.best_val_acc > best.result.best_val_acc:
            best = outcome
    return best


def sweep_record(
    sweep: OptionSweep, outcomes: Sequence[Outcome], chosen: Outcome
) -> dict[str, Any]:
    """What each value scored on val and which one was kept (``metrics.json``'s ``sweep``)."""
    values = []
    for outcome in outcomes:
        entry: dict[str, Any] = {sweep.option: outcome.candidate.value}
        if outcome.result is None:
            entry.update(best_val_acc=None, diverged=outcome.diverged)
        else:
            entry.update(best_epoch=outcome.result.best_epoch + 1,
                         best_val_acc=outcome.result.best_val_acc,
                         last_train_loss=outcome.result.history[-1].train_loss)
        values.append(entry)
    return {"option": sweep.option, "selected": chosen.candidate.value, "rule": SELECTION_RULE,
            "values": values}
