"""Feature-quality analysis of a bank: how well a backbone's features separate head from tail.

- `analyze`: `analyze_bank`, every analysis on every view of a bank (faiss, torch).
- `result`: `AnalysisResult` and its records, the typed form of `analysis.json`.
- `records`: the frozen JSON records they are built from.
- `knn`: kNN purity and kNN-classifier accuracy on cosine similarity (faiss).
- `kmeans`: spherical k-means clusters, their purity and head/tail majorities.
- `representation`: D_intra, D_inter and rho (MBIB Eq. 15-17), mean positive posterior (Eq. 14).
- `separability`: the head-vs-tail logistic probe.
- `tsne`: a seeded t-SNE of a class-stratified sample.
- `groups`, `cosine`, `sample`: per-group means, unit-norm rows, seeded row samples.

Only the result types are imported here, so a reader of `analysis.json` (the report) imports
neither faiss nor torch; `analyze_bank` is `features.analysis.analyze.analyze_bank`.
"""

from features.analysis.result import (
    AnalysisResult,
    Cluster,
    GroupMeans,
    KmeansSummary,
    KnnScores,
    KnnSummary,
    PerClass,
    Representation,
    RhoTerms,
    Separability,
    ViewPerClass,
    ViewResult,
)

__all__ = [
    "AnalysisResult",
    "Cluster",
    "GroupMeans",
    "KmeansSummary",
    "KnnScores",
    "KnnSummary",
    "PerClass",
    "Representation",
    "RhoTerms",
    "Separability",
    "ViewPerClass",
    "ViewResult",
]
