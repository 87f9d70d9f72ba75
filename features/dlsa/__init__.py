"""DLSA (Xu et al., ECCV 2022): flow filters that route rows to cluster-aided classifiers.

- `flow`: the Gaussian-mixture MAF filter (nflows) and its likelihood and posterior.
- `losses`: the filter's losses, Eq. 6-11 (weighted MLE, balancedness, purity).
- `training`: training one filter, its epoch chosen on val; checkpoints for resume.
- `cascade`: the cascade of filters, thresholds, cluster priors and cluster-aided classifiers.
- `io`: the one model file (cascade, base classifiers, bank provenance).

Configs live in `features.configs` (`FlowTrainConfig`, `CascadeConfig`), importable without
torch.
"""
