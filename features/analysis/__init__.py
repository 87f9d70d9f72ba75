"""Feature-quality analysis of a bank: how well a backbone's features separate head from tail.

- `analyze`: `analyze_bank`, every analysis on every view of a bank.
- `knn`: kNN purity and kNN-classifier accuracy on cosine similarity (faiss).
- `kmeans`: spherical k-means clusters, their purity and head/tail majorities.
- `representation`: D_intra, D_inter and rho (MBIB Eq. 15-17), mean positive posterior (Eq. 14).
- `separability`: the head-vs-tail logistic probe.
- `tsne`: a seeded t-SNE of a class-stratified sample.
"""

from features.analysis.analyze import analyze_bank
from features.configs import AnalysisConfig, KmeansConfig, KnnConfig, SeparabilityConfig

__all__ = ["AnalysisConfig", "KmeansConfig", "KnnConfig", "SeparabilityConfig", "analyze_bank"]
