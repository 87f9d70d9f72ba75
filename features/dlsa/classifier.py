"""The cluster-aided classifier of a DLSA filter (Xu et al. 2022, Sec. 3.4).

logits = FC([x, z]) + FC(P(y | cluster of x)), where x is the standardised feature, z the flow
latent (latent "flow", the paper) or the standardised feature again (latent "feature", the
official code), and P(y | k) the cluster prior. Its x part starts from a linear classifier of
the raw features when one is given (the official code loads the backbone's own classifier):
that map, re-expressed on the standardised features, initialises the columns of x in FC([x, z]).
It is trained with the balanced softmax loss on the class counts of the rows it is fitted on,
by SGD at a constant learning rate; the epoch with the best accuracy on its val rows is kept,
or the last epoch when fewer than `min_val_rows` val rows reach it (too few to choose on).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.progress import Progress, tell
from features.bank.rows import FeatureRows, as_rows
from features.classifiers import balanced_softmax_loss, check_finite_loss
from features.configs import CascadeConfig
from features.devices import state_snapshot, torch_device
from features.dlsa.flow import FlowFilter
from features.dlsa.training import EVAL_ROWS
from features.errors import FeaturesError

# A linear map counts as the backbone's head when it reproduces the stored logits this well
# (largest error relative to the largest logit): the head is then linear in the features.
EXACT_HEAD = 1e-3


@dataclass(frozen=True)
class LinearMap:
    """logits = x W^T + b on raw features.

    Attributes:
        weight: float32 [C, D].
        bias: float32 [C].
        source: Where it comes from ("head": the backbone's own classifier; or a base kind).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    source: str


def head_map(
    features: np.ndarray | FeatureRows, logits: np.ndarray | FeatureRows
) -> LinearMap | None:
    """The backbone's own classifier as a linear map of the features, when it is one.

    The bank stores the head's logits, not its weights; when the head is linear in the
    features (CE, CBS, BSCE, PaCo, BIB and MBIB heads), least squares on the training rows
    recovers it exactly. A cosine head (GML) is not linear: None. The normal equations are
    summed over blocks of rows, so a bank larger than memory is read once per pass (two
    passes: the solution, then its largest error).

    Args:
        features: float [N, D], training rows (an array or rows read from a bank).
        logits: float [N, C], the bank's logits of the same rows.
    """
    x_rows, y_rows = as_rows(features, "features"), as_rows(logits, "logits")
    if len(x_rows) <= x_rows.dim:
        return None
    gram = np.zeros((x_rows.dim + 1, x_rows.dim + 1))
    moment = np.zeros((x_rows.dim + 1, y_rows.dim))
    for x, y in _paired_blocks(x_rows, y_rows):
        gram += x.T @ x
        moment += x.T @ y
    solution, *_ = np.linalg.lstsq(gram, moment, rcond=None)
    error, scale = 0.0, 1e-12
    for x, y in _paired_blocks(x_rows, y_rows):
        error = max(error, float(np.abs(x @ solution - y).max()))
        scale = max(scale, float(np.abs(y).max()))
    if not error <= EXACT_HEAD * scale:
        return None
    weight = torch.from_numpy(solution[:-1].T.astype(np.float32))
    return LinearMap(weight, torch.from_numpy(solution[-1].astype(np.float32)), "head")


def _paired_blocks(
    x_rows: FeatureRows, y_rows: FeatureRows
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of ([x, 1] float64 [B, D + 1], y float64 [B, C]) of the same rows."""
    for x, y in zip(x_rows.blocks(EVAL_ROWS), y_rows.blocks(EVAL_ROWS), strict=True):
        x = x.cpu().numpy().astype(np.float64)
        yield np.hstack([x, np.ones((len(x), 1))]), y.cpu().numpy().astype(np.float64)


class ClusterAidedClassifier(nn.Module):
    """logits = FC([x, z]) + FC(P(y | cluster of x)) (Sec. 3.4 of the DLSA paper).

    Args:
        dim: D, feature width.
        latent_dim: Width of z.
        cluster_prior: float [K, C], row k = P(y | k), the class histogram (normalised) of
            the training rows whose argmax cluster is k; zeros for an empty cluster.
        mean: float [D], the filter's training mean the features are standardised with.
        std: float [D], the matching standard deviation.
        seed: Seed of the initialisation (the global RNG is left untouched).
        initial: A linear classifier of the raw features to start the x part from.
    """

    def __init__(
        self,
        dim: int,
        latent_dim: int,
        cluster_prior: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        *,
        seed: int,
        initial: LinearMap | None = None,
    ) -> None:
        super().__init__()
        num_classes = cluster_prior.shape[1]
        self.register_buffer("cluster_prior", cluster_prior.detach().clone().float())
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.feature_fc = nn.Linear(dim + latent_dim, num_classes)
            self.prior_fc = nn.Linear(num_classes, num_classes)
        if initial is not None:
            self._start_from(initial, dim)

    @torch.no_grad()
    def _start_from(self, initial: LinearMap, dim: int) -> None:
        """W x + b = (W std) x_std + (W mean + b): the map on the standardised features.

        The z columns and the prior layer start at zero, so that the classifier starts as
        exactly the given one (its logits are the head's) and training moves away from it
        only where the routed rows ask for it.
        """
        weight, bias = initial.weight.float(), initial.bias.float()
        if weight.shape != (self.feature_fc.out_features, dim):
            raise FeaturesError(f"initial classifier maps {weight.shape[1]} features to "
                                f"{weight.shape[0]} classes; the filter has {dim} and "
                                f"{self.feature_fc.out_features}")
        self.feature_fc.weight.zero_()
        self.feature_fc.weight[:, :dim] = weight * self.std
        self.feature_fc.bias.copy_(weight @ self.mean + bias)
        self.prior_fc.weight.zero_()
        self.prior_fc.bias.zero_()

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """(x - mean) / std of rows x [N, D]."""
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor, latent: torch.Tensor, cluster: torch.Tensor) -> torch.Tensor:
        """Logits of rows.

        Args:
            x: float [N, D], raw features.
            latent: float [N, latent_dim], z.
            cluster: int64 [N], argmax cluster of each row.

        Returns:
            float [N, C].
        """
        joint = torch.cat([self.standardize(x), latent], dim=1)
        return self.feature_fc(joint) + self.prior_fc(self.cluster_prior[cluster])


@dataclass
class Rows:
    """Rows a classifier sees: raw features, their argmax clusters and classes."""

    x: FeatureRows
    clusters: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device) -> Rows:
        return Rows(self.x.to(device), self.clusters.to(device), self.labels.to(device))


def fit_cluster_aided(
    classifier: ClusterAidedClassifier,
    flow: FlowFilter,
    train: Rows,
    val: Rows,
    num_classes: int,
    config: CascadeConfig,
    *,
    seed: int,
    name: str,
    started: bool = False,
    progress: Progress | None = None,
) -> dict[str, float]:
    """Constant-lr SGD on the balanced softmax loss of the rows' class counts.

    Keeps the epoch with the best accuracy on the val rows (the earliest on ties), or the last
    epoch when fewer than `config.min_val_rows` val rows are given. With ``started`` (the
    classifier starts from a given one) epoch 0, the untrained start, is a candidate too. The
    latent z of each batch is computed from its rows by the frozen flow, so no [N, D] latent
    array is held. ``progress`` is told ``("epoch", epoch, epochs)`` after each epoch.

    Returns:
        {"classifier_epoch", "classifier_val_accuracy" (NaN when not chosen on val)}.
    """
    device = torch_device(config.flow.device, "dlsa.device")
    classifier.to(device)
    train, val = train.to(device), val.to(device)
    counts = torch.bincount(train.labels, minlength=num_classes)
    optimizer = torch.optim.SGD(
        classifier.parameters(),
        lr=config.classifier_lr,
        momentum=config.classifier_momentum,
        weight_decay=config.classifier_weight_decay,
    )
    generator = torch.Generator().manual_seed(seed)
    choose_on_val = len(val.labels) >= max(config.min_val_rows, 1)
    best_epoch, best_accuracy = config.classifier_epochs, math.nan
    best_state = None
    if choose_on_val and started:
        # epoch 0, the given classifier itself, is a candidate: training must earn its place
        best_epoch, best_accuracy = 0, routed_accuracy(classifier, flow, config.latent, val)
        best_state = state_snapshot(classifier)
    for epoch in range(1, config.classifier_epochs + 1):
        classifier.train()
        order = torch.randperm(len(train.labels), generator=generator)
        for step, (rows, x) in enumerate(train.x.batches(order, config.classifier_batch_size),
                                         start=1):
            z = classifier_latent(config.latent, classifier, flow, x)
            logits = classifier(x, z, train.clusters[rows])
            loss = balanced_softmax_loss(logits, train.labels[rows], counts)
            check_finite_loss(
                loss, f"{name}, epoch {epoch}, step {step}", fix="lower dlsa.classifier.lr"
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if choose_on_val:
            accuracy = routed_accuracy(classifier, flow, config.latent, val)
            if best_state is None or accuracy > best_accuracy:
                best_epoch, best_accuracy = epoch, accuracy
                best_state = state_snapshot(classifier)
        tell(progress, "epoch", epoch, config.classifier_epochs)
    if best_state is not None:
        classifier.load_state_dict(best_state)
    classifier.to("cpu").eval()
    for parameter in classifier.parameters():
        parameter.requires_grad_(False)
    return {"classifier_epoch": best_epoch, "classifier_val_accuracy": best_accuracy}


@torch.no_grad()
def routed_accuracy(
    classifier: ClusterAidedClassifier, flow: FlowFilter, latent_kind: str, rows: Rows
) -> float:
    """Accuracy of the classifier on rows (NaN without rows)."""
    if len(rows.labels) == 0:
        return math.nan
    logits = routed_logits(classifier, flow, latent_kind, rows.x, rows.clusters)
    return float((logits.argmax(dim=1) == rows.labels.cpu()).to(torch.float64).mean())


def classifier_latent(
    latent_kind: str, classifier: ClusterAidedClassifier, flow: FlowFilter, x: torch.Tensor
) -> torch.Tensor:
    """z of the classifier for rows x [B, D]: the frozen flow's latent [B, D] (eval mode, no
    gradient), or the standardised feature again."""
    if latent_kind == "feature":
        return classifier.standardize(x)
    was_training = flow.training
    flow.eval()
    with torch.no_grad():
        latent = flow(x).latent
    flow.train(was_training)
    return latent


@torch.no_grad()
def routed_logits(
    classifier: ClusterAidedClassifier,
    flow: FlowFilter,
    latent_kind: str,
    rows: FeatureRows,
    clusters: torch.Tensor,
) -> torch.Tensor:
    """Classifier logits float32 [N, C] (CPU) of rows, in blocks of `EVAL_ROWS`.

    Args:
        rows: The N rows.
        clusters: int64 [N], their argmax clusters.
    """
    classifier.eval()
    device = classifier.mean.device
    clusters = clusters.to(device)
    blocks = []
    for start, x in zip(range(0, len(rows), EVAL_ROWS), rows.blocks(EVAL_ROWS), strict=True):
        x = x.to(device)
        z = classifier_latent(latent_kind, classifier, flow, x)
        blocks.append(classifier(x, z, clusters[start : start + len(x)]).cpu())
    if not blocks:
        return torch.zeros(0, classifier.cluster_prior.shape[1])
    return torch.cat(blocks)
