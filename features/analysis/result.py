"""The typed result of `analyze_bank`, written as (and read back from) `analysis.json`.

`AnalysisResult.to_json()` is the object the analysis has always written: the same keys in the
same order and the same numbers (NaN as null). The report reads the seeds' mean of those files
back with `AnalysisResult.from_json`; means over seeds turn counts into floats, hence `Count`.

    AnalysisResult
      per_class: PerClass                       class counts, shot groups, tail flags, Eq. 14
      posterior: GroupMeans | None              MBIB Eq. 14 per shot group (None: no logits)
      views: {view: ViewResult}                 `features`, `extra/<name>`, ...
        knn: KnnSummary                         query vs index, index vs itself
        kmeans: KmeansSummary -> (Cluster, ...)
        representation: Representation          D_intra, D_inter, rho (MBIB Eq. 15-17)
        separability: Separability              the head/tail probe
        per_class: ViewPerClass
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from features.analysis.records import (
    JsonRecord,
    json_field,
    named,
    optional,
    record,
    records,
    values,
)

# An integer count; a float in the report's mean over seeds.
Count = int | float


@dataclass(frozen=True)
class GroupMeans(JsonRecord):
    """A mean over all rows (or classes) and over each shot group; None where undefined."""

    overall: float | None
    many: float | None
    medium: float | None
    few: float | None

    def of(self, group: str) -> float | None:
        """The mean of `group`: "overall", "many", "medium" or "few"."""
        return getattr(self, group)


@dataclass(frozen=True)
class KnnScores(JsonRecord):
    """kNN purity and kNN-classifier accuracy of one search, per shot group."""

    purity: GroupMeans = json_field(record(GroupMeans))
    accuracy: GroupMeans = json_field(record(GroupMeans))


@dataclass(frozen=True)
class IvfSearch(JsonRecord):
    """How an IVF index was searched.

    Attributes:
        nlist: Its inverted lists.
        nprobe: Lists visited per query.
        recall: Recall@k against the exact search on the calibration queries.
        queries: How many queries measured it.
    """

    nlist: int | None
    nprobe: int | None
    recall: float | None
    queries: int | None


@dataclass(frozen=True)
class KnnSummary(JsonRecord):
    """The kNN search of a view.

    Attributes:
        index_kind: "flat" or "ivf" (JSON key "index").
        query: The query split (test) searched against the index split (train).
        itself: The index split searched against itself, each row left out (JSON key "self").
        ivf: How the IVF index was searched; absent for the exact index.
    """

    index_kind: str | None = json_field(key="index")
    query: KnnScores = json_field(record(KnnScores))
    itself: KnnScores = json_field(record(KnnScores), key="self")
    ivf: IvfSearch | None = json_field(optional(IvfSearch), omit_none=True)


@dataclass(frozen=True)
class Cluster(JsonRecord):
    """One k-means cluster; the majority fields are None for an empty cluster."""

    size: Count | None
    majority_label: int | None
    purity: float | None
    majority_group: str | None
    majority_is_tail: bool | None


@dataclass(frozen=True)
class KmeansSummary(JsonRecord):
    """Spherical k-means of the index split (`features.analysis.kmeans.ClusterReport.summary`).

    Attributes:
        n_clusters: K.
        purity: Majority rows over all rows.
        mean_cluster_purity: Mean purity of the non-empty clusters.
        sizes_sorted: Cluster sizes, largest first.
        empty_clusters: Clusters without rows.
        tail_majority_clusters: Clusters whose majority label is a tail class.
        tail_classes: Tail classes.
        tail_classes_with_cluster: Tail classes that are the majority of some cluster.
        clusters: Every cluster, in cluster order.
    """

    n_clusters: Count | None
    purity: float | None
    mean_cluster_purity: float | None
    sizes_sorted: tuple[Count, ...] | None = json_field(values)
    empty_clusters: Count | None
    tail_majority_clusters: Count | None
    tail_classes: Count | None
    tail_classes_with_cluster: Count | None
    clusters: tuple[Cluster, ...] = json_field(records(Cluster))


@dataclass(frozen=True)
class RhoTerms(JsonRecord):
    """D_intra (Eq. 15), D_inter (Eq. 16) and rho = D_intra / D_inter (Eq. 17) of MBIB."""

    d_intra: float | None
    d_inter: float | None
    rho: float | None


@dataclass(frozen=True)
class Representation(JsonRecord):
    """`RhoTerms` over all classes and per shot group, in that order."""

    overall: RhoTerms = json_field(record(RhoTerms))
    many: RhoTerms = json_field(record(RhoTerms))
    medium: RhoTerms = json_field(record(RhoTerms))
    few: RhoTerms = json_field(record(RhoTerms))

    def of(self, group: str) -> RhoTerms:
        """The terms of `group`: "overall", "many", "medium" or "few"."""
        return getattr(self, group)

    def items(self) -> tuple[tuple[str, RhoTerms], ...]:
        """(group, terms) pairs, overall first, as they appear in the JSON."""
        return tuple((group, self.of(group)) for group in ("overall", "many", "medium", "few"))


@dataclass(frozen=True)
class Separability(JsonRecord):
    """How well a linear probe tells head from tail rows of the query split.

    Attributes:
        balanced_accuracy: (head recall + tail recall) / 2; None when it cannot be measured.
        head_recall: Share of head rows predicted head.
        tail_recall: Share of tail rows predicted tail.
        num_head_classes: Classes with more than tail_max_count training rows.
        num_tail_classes: Classes with at most tail_max_count training rows (both a float in
            the report's mean over seeds).
        reason: Why the scores are None, else None.
    """

    balanced_accuracy: float | None
    head_recall: float | None
    tail_recall: float | None
    num_head_classes: Count | None
    num_tail_classes: Count | None
    reason: str | None = None

    def summary(self) -> dict[str, Any]:
        """The fields as a dict (the JSON object, as `to_json`)."""
        return asdict(self)


@dataclass(frozen=True)
class ViewPerClass(JsonRecord):
    """Per-class values of a view, float [C] (None for a class without rows)."""

    knn_purity: tuple[float | None, ...] | None = json_field(values)
    knn_accuracy: tuple[float | None, ...] | None = json_field(values)
    knn_purity_self: tuple[float | None, ...] | None = json_field(values)
    d_intra: tuple[float | None, ...] | None = json_field(values)
    d_inter: tuple[float | None, ...] | None = json_field(values)


@dataclass(frozen=True)
class ViewResult(JsonRecord):
    """Every analysis of one view of the bank (`features` or `extra/<name>`).

    Attributes:
        dim: Width D of the view.
        knn: kNN purity and accuracy.
        kmeans: k-means clusters.
        representation: D_intra, D_inter and rho on the query split.
        separability: The head/tail logistic probe.
        per_class: Per-class kNN purity / accuracy, D_intra and D_inter.
    """

    dim: Count | None
    knn: KnnSummary = json_field(record(KnnSummary))
    kmeans: KmeansSummary = json_field(record(KmeansSummary))
    representation: Representation = json_field(record(Representation))
    separability: Separability = json_field(record(Separability))
    per_class: ViewPerClass = json_field(record(ViewPerClass))


@dataclass(frozen=True)
class PerClass(JsonRecord):
    """Per-class values of the bank, [C] each.

    Attributes:
        class_counts: Training rows per class.
        shot_group: "many", "medium" or "few".
        is_tail: At most `tail_max_count` training rows.
        mean_positive_posterior: MBIB Eq. 14 from the bank's logits; None without logits.
    """

    class_counts: tuple[Count, ...] | None = json_field(values)
    shot_group: tuple[str, ...] | None = json_field(values)
    is_tail: tuple[bool, ...] | None = json_field(values)
    mean_positive_posterior: tuple[float | None, ...] | None = json_field(values)


@dataclass(frozen=True)
class AnalysisResult(JsonRecord):
    """The feature-quality analysis of a bank (`features.analysis.analyze_bank`).

    Attributes:
        method: The bank's method.
        backbone: Its backbone.
        dataset: Its dataset.
        config: The `AnalysisConfig` used, as the JSON object it is written as.
        per_class: Per-class values of the bank.
        posterior: Mean positive posterior per shot group; None when the bank has no logits.
        views: View name -> its analysis, in the order analysed.
    """

    method: str | None
    backbone: str | None
    dataset: str | None
    config: Mapping[str, Any] | None
    per_class: PerClass = json_field(record(PerClass))
    posterior: GroupMeans | None = json_field(optional(GroupMeans))
    views: Mapping[str, ViewResult] = json_field(named(ViewResult))

    def view(self, name: str) -> ViewResult | None:
        """The analysis of view `name`; None when it was not analysed."""
        return self.views.get(name)
