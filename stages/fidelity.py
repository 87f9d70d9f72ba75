"""``tailbank fidelity``: each paper claim on this data set and these seeds, with a verdict.

The claims are pairs of results (names as in `stages.results`) tested on the same rows:

    BSCE > CE                     bsce:head vs ce:head (each backbone's own, jointly trained head)
    BIB >= BSCE, MBIB >= BIB      bib:head vs bsce:head, mbib:head vs bib:head (MBIB)
    student >= teacher            <student>:head vs <its teacher>:head (GML, App. A.3)
    PaCo > BSCE                   paco:head vs bsce:head
    decoupled > joint CE head     ce:<re-balanced kind best on val> vs ce:head (Kang et al.)
    DLSA > base, per backbone     m:<base>+dlsa_paper vs m:<base>+dlsa_base (every filter, as
                                  the paper; the base as the dlsa stage fitted it)
    gated DLSA >= base            m:<base>+dlsa vs m:<base>+dlsa_base (tailbank's val gate,
                                  not a paper claim: its promise), with the filters it kept

A method enters a claim through its kind (the first key of ``methods`` of that kind), so a
params file without, say, PaCo simply has no PaCo claim. ``<base>`` is the first of
``dlsa.base_kinds``. Each difference is judged by `features.claims` on the wider of the paired
bootstrap over the test rows and the t interval across seeds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.claims import Judgement, judge, widest
from features.comparison import compare
from features.uncertainty import Interval
from stages.errors import StageError
from stages.io import write_json
from stages.layout import dlsa_results
from stages.params import Params
from stages.results import BASE_SUFFIX, ResultName, best_on_val, predictions_of, read_json

# Re-balanced classifiers re-trained on a frozen backbone (Kang et al. 2020's decoupling).
REBALANCED_KINDS = ("crt", "lws", "tau_norm", "balanced_softmax", "cbs_linear")
HEAD = "head"
NOT_RUN = "not run"


@dataclass(frozen=True)
class Claim:
    """One claim: "``first`` ``relation`` ``second``".

    Attributes:
        title: What is claimed, e.g. "BSCE > CE".
        source: Where the claim comes from.
        relation: ">" or ">=".
        first: Result A.
        second: Result B.
    """

    title: str
    source: str
    relation: str
    first: ResultName
    second: ResultName


@dataclass(frozen=True)
class Finding:
    """A claim with what the results say about it.

    Attributes:
        claim: The claim.
        first_accuracy: A's test accuracy (pooled over seeds), None when not run.
        second_accuracy: B's.
        judgement: The verdict and interval, None when not run.
        note: Why it was not run, or what the gate chose (DLSA).
        labels: The two results as compared, e.g. ("ce:crt", "ce:head").
    """

    claim: Claim
    first_accuracy: float | None
    second_accuracy: float | None
    judgement: Judgement | None
    note: str = ""
    labels: tuple[str, str] = ("", "")

    @property
    def verdict(self) -> str:
        return self.judgement.verdict if self.judgement else NOT_RUN

    def to_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "claim": self.claim.title, "source": self.claim.source,
            "relation": self.claim.relation, "first": self.labels[0], "second": self.labels[1],
            "first_accuracy": self.first_accuracy, "second_accuracy": self.second_accuracy,
            "verdict": self.verdict, "note": self.note,
        }
        if self.judgement is not None:
            found["difference"] = self.judgement.difference.to_dict()
        return found


def method_of_kind(params: Params, kind: str) -> str | None:
    """The first method key of ``methods`` whose kind is ``kind``."""
    return next((name for name, entry in params.methods.items() if entry.kind == kind), None)


def claims(params: Params) -> list[Claim]:
    """The claims these params can judge (a method that is not trained has none)."""
    kinds = {kind: method_of_kind(params, kind)
             for kind in ("ce", "bsce", "bib", "mbib", "paco")}

    def pair(title: str, source: str, relation: str, first: str | None,
             second: str | None) -> list[Claim]:
        if first is None or second is None:
            return []
        return [Claim(title, source, relation, ResultName(first, HEAD), ResultName(second, HEAD))]

    found = [
        *pair("BSCE > CE", "Balanced Softmax; MBIB's baselines", ">", kinds["bsce"], kinds["ce"]),
        *pair("BIB >= BSCE", "MBIB (BIB vs its BSCE baseline)", ">=", kinds["bib"],
              kinds["bsce"]),
        *pair("MBIB >= BIB", "MBIB (multi-exit ablation)", ">=", kinds["mbib"], kinds["bib"]),
    ]
    for name, entry in params.methods.items():
        if entry.teacher is not None:
            found.append(Claim(f"student >= teacher ({name})", "GML App. A.3", ">=",
                               ResultName(name, HEAD), ResultName(entry.teacher, HEAD)))
    found += pair("PaCo > BSCE", "PaCo", ">", kinds["paco"], kinds["bsce"])
    if kinds["ce"] is not None:
        found.append(Claim("decoupled re-balancing > joint CE head", "Kang et al. 2020", ">",
                           ResultName(kinds["ce"], None), ResultName(kinds["ce"], HEAD)))
    base = params.dlsa.base_kinds[0]
    for name in params.methods:
        fitted = ResultName(name, base, BASE_SUFFIX)  # the base as the dlsa stage fitted it
        found.append(Claim(f"DLSA > base ({name})", "DLSA (every filter)", ">",
                           ResultName(name, base, "+dlsa_paper"), fitted))
        found.append(Claim(f"gated DLSA >= base ({name})", "tailbank's val gate", ">=",
                           ResultName(name, base, "+dlsa"), fitted))
    return found


def find(claim: Claim, params: Params) -> Finding:
    """Judge one claim on the results of every seed of ``params``; a claim whose results are
    missing is "not run", with the reason."""
    try:
        first = _resolved(claim, params)
        (a, counts), (b, _) = (predictions_of(name, params) for name in (first, claim.second))
    except StageError as error:
        return Finding(claim, None, None, None, note=str(error))
    overall = compare(a, b, counts, params.eval.many_above, params.eval.few_below,
                      seed=min(params.seeds))["overall"]
    if overall is None:
        return Finding(claim, None, None, None, note="no test rows", labels=(a.name, b.name))
    difference = widest(overall.paired.difference, overall.across_seeds)
    note = _gate_note(first, params) if first.suffix == "+dlsa" else ""
    return Finding(claim, overall.first, overall.second, judge(claim.relation, difference),
                   note=note, labels=(a.name, b.name))


def _resolved(claim: Claim, params: Params) -> ResultName:
    """The decoupled claim's A: the re-balanced kind with the best val accuracy."""
    first = claim.first
    if first.kind is not None:
        return first
    kinds = [kind for kind in REBALANCED_KINDS if kind in params.classify.kinds]
    if not kinds:
        raise StageError(f"classify.kinds has none of the re-balanced kinds "
                         f"({', '.join(REBALANCED_KINDS)})")
    return ResultName(first.method, best_on_val(first, kinds, params))


def _gate_note(name: ResultName, params: Params) -> str:
    """The number of filters the gate kept, per seed."""
    kept = []
    for seed in params.seeds:
        metrics = read_json(dlsa_results(name.method, seed) / "metrics.json",
                            f"tailbank dlsa --method {name.method} --seed {seed}")
        kept.append(str((metrics.get(name.kind) or {}).get("filters", "?")))
    return f"filters kept per seed: {', '.join(kept)} of {params.dlsa.num_filters}"


def repro_targets(params: Params) -> list[str]:
    """The DVC stages the claims read: every method's classify and dlsa, all seeds."""
    return [f"{stage}-{name}" for name in params.methods for stage in ("classify", "dlsa")]


def run(params: Params, out: Path | None = None, repro: bool = False) -> str:
    """Judge every claim; return the table to print, and write it as JSON to ``out``.

    Args:
        params: Validated params (the data set and seeds judged).
        out: Where to write the findings as JSON, or None.
        repro: Run ``dvc repro`` of the stages the claims read first.

    Raises:
        StageError: ``dvc repro`` failed.
    """
    if repro:
        _repro(repro_targets(params))
    findings = [find(claim, params) for claim in claims(params)]
    if out is not None:
        write_json(out, {"dataset": params.data.dataset, "seeds": list(params.seeds),
                         "claims": [finding.to_dict() for finding in findings]})
    return table(findings, params)


def _repro(targets: Sequence[str]) -> None:
    done = subprocess.run(["dvc", "repro", *targets], check=False)
    if done.returncode != 0:
        raise StageError(f"dvc repro {' '.join(targets)} failed (exit {done.returncode}); see "
                         "its output above")


def table(findings: Sequence[Finding], params: Params) -> str:
    """A markdown table of the findings, headed by the data set and seeds."""
    seeds = ", ".join(map(str, params.seeds))
    interval = ("the wider of the paired bootstrap over test rows and the t interval across "
                "seeds" if len(params.seeds) > 1 else "paired bootstrap over test rows")
    lines = [
        f"{params.data.dataset}, seed(s) {seeds}; 95 % CI of A - B: {interval}; '>=' holds "
        "within 0.5 points.",
        "",
        "| claim | A | B | acc A | acc B | A - B | 95 % CI | verdict | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for finding in findings:
        lines.append(_row(finding))
    return "\n".join(lines)


def _row(finding: Finding) -> str:
    claim, judgement = finding.claim, finding.judgement
    if judgement is None:
        return (f"| {claim.title} | {claim.first.label(claim.first.kind or '?')} | "
                f"{claim.second.label(claim.second.kind or '?')} | | | | | {NOT_RUN} | "
                f"{finding.note} |")
    difference: Interval = judgement.difference
    return (f"| {claim.title} | {finding.labels[0]} | {finding.labels[1]} | "
            f"{finding.first_accuracy:.3f} | {finding.second_accuracy:.3f} | "
            f"{100 * difference.value:+.1f} | [{100 * difference.low:+.1f}, "
            f"{100 * difference.high:+.1f}] | {judgement.verdict} | {finding.note} |")
