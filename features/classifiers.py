"""Classifiers trained on a bank's frozen features (decoupled learning, Kang et al. 2020).

Every trained kind is a small torch module on train-standardised features, trained by
minibatch SGD with momentum and a cosine learning-rate decay over its epochs; the state
of the epoch with the best accuracy on the (balanced) val split is kept. Test rows are
never seen here. All randomness comes from one `torch.Generator` seeded by
`ProbeConfig.seed`, so CPU fits are bit-for-bit repeatable.

Kinds:
    head              the backbone's own logits stored in the bank (no training).
    linear            instance-balanced linear classifier, plain cross-entropy.
    balanced_softmax  linear, balanced softmax loss (Ren et al. 2020).
    cbs_linear        linear, plain cross-entropy, class-balanced sampling.
    cosine            scaled cosine classifier, balanced softmax loss.
    crt               Kang's classifier re-training.
    lws               Kang's learnable weight scaling on the `linear` classifier.
    tau_norm          Kang's tau-normalised `linear` classifier.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from features.arrays import label_vector
from features.bank.rows import FeatureRows, as_rows, column_moments
from features.configs import CLASSIFIER_KINDS, ProbeConfig
from features.devices import state_snapshot, torch_device
from features.errors import FeaturesError
from features.sampling import class_balanced_order, instance_order

INPUT_FEATURES = "features"
INPUT_LOGITS = "logits"

_EVAL_BATCH = 4096
_INIT_STD = 0.01
# Features that are constant on train would otherwise divide by zero when standardised.
_MIN_STD = 1e-6

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class LinearHead(nn.Module):
    """z = W x + b.

    Args:
        weight: float [C, D].
        bias: float [C].
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps x [N, D] to logits [N, C]."""
        return F.linear(x, self.weight, self.bias)


class CosineHead(nn.Module):
    """z_c = s * cos(x, w_c) = s * <x, w_c> / (||x|| ||w_c||).

    Args:
        weight: float [C, D].
        scale: s.
    """

    def __init__(self, weight: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps x [N, D] to logits [N, C]."""
        return self.scale * F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))


class ScaledLinearHead(nn.Module):
    """Learnable weight scaling (Kang et al. 2020, Sec. 4.2): z_c = f_c (w_c . x) + b_c.

    W and b are frozen buffers; only the per-class scales f [C] are learnt, starting at 1.

    Args:
        weight: float [C, D].
        bias: float [C].
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", bias.detach().clone())
        self.scales = nn.Parameter(torch.ones(len(weight), dtype=weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps x [N, D] to logits [N, C]."""
        return self.scales * F.linear(x, self.weight) + self.bias


class Probe(nn.Module):
    """A head on standardised features: head((x - mean) / std), mean and std from train only.

    Args:
        mean: float [D], per-feature mean of the training rows.
        std: float [D], per-feature standard deviation of the training rows.
        head: Maps standardised features [N, D] to logits [N, C].
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, head: nn.Module) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Maps features x [N, D] to logits [N, C]."""
        return self.head((x - self.mean) / self.std)


@dataclass
class FittedClassifier:
    """A classifier chosen on val, ready to score any split of the bank.

    `input_field` names what `logits` takes, as the bank calls it: "features" for every
    trained kind, "logits" for `head`, whose decision is the backbone's own stored logits.
    So a caller scores a split uniformly::

        inputs = bank.features(split) if clf.input_field == "features" else bank.logits(split)
        scores = clf.logits(inputs)

    Attributes:
        kind: One of `CLASSIFIER_KINDS`.
        selected: What val chose ({"epoch": e}, {"tau": t}, ...) and the val accuracy
            it reached ({"val_accuracy": a}).
        model: The trained probe on CPU; None for `head`.
        num_classes: C.
        input_dim: Width of the input rows: D, or C for `head`.
        input_field: "features" or "logits", see above.
    """

    kind: str
    selected: dict[str, float]
    model: Probe | None
    num_classes: int
    input_dim: int
    input_field: str = INPUT_FEATURES

    def logits(self, features: np.ndarray | FeatureRows) -> np.ndarray:
        """Scores rows of a split.

        Args:
            features: float [N, D], the bank's features of a split (an array, or rows read
                from the bank in blocks); for kind `head`, the bank's logits [N, C].

        Returns:
            float32 [N, C].
        """
        rows = as_rows(features, f"{self.kind} classifier input", self.input_dim)
        if len(rows) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        if self.model is None:
            return torch.cat([block.cpu() for block in rows.blocks(_EVAL_BATCH)]).numpy()
        return _predict(self.model, rows).cpu().numpy()


_HEADS: dict[type, str] = {
    LinearHead: "linear",
    CosineHead: "cosine",
    ScaledLinearHead: "scaled_linear",
}


def classifier_payload(fitted: FittedClassifier) -> dict[str, Any]:
    """A fitted classifier as plain values and tensors, which `torch.load(weights_only=True)`
    reads back without unpickling any object (`classifier_from_payload` is the inverse).

    Returns:
        {"kind", "selected", "num_classes", "input_dim", "input_field", "head" (None for
        `head`, else "linear" / "cosine" / "scaled_linear"), "scale" (the cosine s or None),
        "state" (the probe's state_dict on CPU)}.
    """
    model = fitted.model
    head = None if model is None else model.head
    return {
        "kind": fitted.kind,
        "selected": {key: float(value) for key, value in fitted.selected.items()},
        "num_classes": int(fitted.num_classes),
        "input_dim": int(fitted.input_dim),
        "input_field": fitted.input_field,
        "head": None if head is None else _HEADS[type(head)],
        "scale": float(head.scale) if isinstance(head, CosineHead) else None,
        "state": {} if model is None else state_snapshot(model, "cpu"),
    }


def classifier_from_payload(payload: Mapping[str, Any], where: str) -> FittedClassifier:
    """Rebuilds a classifier saved by `classifier_payload` (CPU, eval mode, frozen).

    Args:
        payload: What `classifier_payload` returned, as loaded from a file.
        where: Names the file (and entry) in error messages.

    Raises:
        FeaturesError: one line when the payload is not a classifier of this library.
    """
    try:
        kind, head_name = str(payload["kind"]), payload["head"]
        if kind not in CLASSIFIER_KINDS or head_name not in (None, *_HEADS.values()):
            raise ValueError(f"unknown classifier kind {kind!r} or head {head_name!r}")
        model = None if head_name is None else _probe_from_state(
            head_name, payload["state"], payload["scale"])
        fitted = FittedClassifier(
            kind=kind,
            selected={str(key): float(value) for key, value in payload["selected"].items()},
            model=model,
            num_classes=int(payload["num_classes"]),
            input_dim=int(payload["input_dim"]),
            input_field=str(payload["input_field"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise FeaturesError(f"{where}: not a saved classifier ({reason})") from None
    if fitted.input_field not in (INPUT_FEATURES, INPUT_LOGITS):
        raise FeaturesError(f"{where}: unknown classifier input {fitted.input_field!r}")
    return fitted


def _probe_from_state(head_name: str, state: Mapping[str, torch.Tensor], scale: Any) -> Probe:
    weight = state["head.weight"]
    if head_name == "cosine":
        head: nn.Module = CosineHead(weight, float(scale))
    elif head_name == "scaled_linear":
        head = ScaledLinearHead(weight, state["head.bias"])
    else:
        head = LinearHead(weight, state["head.bias"])
    probe = Probe(state["mean"].clone(), state["std"].clone(), head)
    probe.load_state_dict(dict(state))
    probe.eval()
    for parameter in probe.parameters():
        parameter.requires_grad_(False)
    return probe


def linear_map_of(fitted: FittedClassifier) -> tuple[torch.Tensor, torch.Tensor] | None:
    """A linear classifier as (W [C, D], b [C]) on the raw features: the probe's
    head((x - mean) / std) = W x + b with W = W' / std and b = b' - W' (mean / std). None for
    a kind that is not a linear map of the features (cosine, LWS, head).
    """
    model = fitted.model
    if model is None or type(model.head) is not LinearHead:
        return None
    weight = model.head.weight.detach().float() / model.std
    bias = model.head.bias.detach().float() - (model.head.weight.detach().float()
                                                @ (model.mean / model.std))
    return weight, bias


def balanced_softmax_loss(
    logits: torch.Tensor, labels: torch.Tensor, class_counts: torch.Tensor
) -> torch.Tensor:
    """Balanced softmax loss (Ren et al. 2020, Eq. 4), averaged over the batch.

    l(z, y) = -log( n_y exp(z_y) / sum_j n_j exp(z_j) ) = CE(z + log n, y).

    Args:
        logits: float [B, C], z.
        labels: int64 [B], y.
        class_counts: [C], n, training rows per class; a class without rows counts as 1
            so that the loss stays finite.

    Returns:
        Scalar loss.
    """
    log_prior = torch.log(class_counts.to(logits.dtype).clamp(min=1.0))
    return F.cross_entropy(logits + log_prior, labels)


def fit_classifier(
    kind: str,
    *,
    train_x: np.ndarray | FeatureRows,
    train_y: np.ndarray,
    val_x: np.ndarray | FeatureRows,
    val_y: np.ndarray,
    class_counts: np.ndarray,
    config: ProbeConfig,
    head_logits: tuple[np.ndarray | FeatureRows, np.ndarray | FeatureRows] | None = None,
    base: FittedClassifier | None = None,
) -> FittedClassifier:
    """Fits one kind of classifier on a bank's train rows, choosing on its val rows.

    Args:
        kind: One of `CLASSIFIER_KINDS`.
        train_x: float [N, D], training features: an array, or rows read from a bank on
            demand (`features.rows`), which give the same classifier.
        train_y: int [N], training labels in [0, C).
        val_x: float [M, D], validation features (array or rows).
        val_y: int [M], validation labels.
        class_counts: int [C], training rows per class (the bank's `class_counts`).
        config: Hyper-parameters.
        head_logits: For kind `head`: the bank's stored logits (train [N, C], val [M, C]).
        base: For `lws` and `tau_norm`: an already fitted `linear` classifier of the same
            rows and config to start from; fitted here when None.

    Returns:
        The classifier of the best val epoch (or tau).
    """
    if kind not in CLASSIFIER_KINDS:
        raise FeaturesError(f"unknown classifier kind {kind!r}; valid kinds: {CLASSIFIER_KINDS}")
    data = _TrainingData.build(train_x, train_y, val_x, val_y, class_counts, config)
    if kind == "head":
        return _fit_head(data, head_logits)
    if kind in ("lws", "tau_norm"):
        base = _base_linear(base, data, config)
        if kind == "lws":
            return _fit_lws(data, base, config)
        return _fit_tau_norm(data, base, config.tau_grid)
    return _FITTERS[kind](data, config)


@dataclass
class _TrainingData:
    """Train and val rows returned on the training device, labels, and train statistics."""

    train: FeatureRows
    train_y: torch.Tensor
    val: FeatureRows
    val_y: torch.Tensor
    class_counts: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    device: torch.device

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)

    @property
    def dim(self) -> int:
        return self.train.dim

    @classmethod
    def build(
        cls,
        train_x: np.ndarray | FeatureRows,
        train_y: np.ndarray,
        val_x: np.ndarray | FeatureRows,
        val_y: np.ndarray,
        class_counts: np.ndarray,
        config: ProbeConfig,
    ) -> _TrainingData:
        counts = np.asarray(class_counts)
        if counts.ndim != 1 or len(counts) < 2 or not np.issubdtype(counts.dtype, np.integer):
            raise FeaturesError(
                f"class_counts: expected an integer [C] array with C >= 2, got "
                f"{counts.dtype} {counts.shape}"
            )
        device = torch_device(config.device, "classify.device")
        train = as_rows(train_x, "train_x").to(device)
        val = as_rows(val_x, "val_x", train.dim).to(device)
        train_labels = label_vector(train_y, "train_y", len(train), len(counts))
        val_labels = label_vector(val_y, "val_y", len(val), len(counts))
        if len(train) == 0 or len(val) == 0:
            raise FeaturesError("train_x and val_x must have at least one row each")
        # Statistics of train only: val and test are transformed, never measured.
        mean, std = column_moments(train)
        return cls(
            train=train,
            train_y=torch.from_numpy(train_labels).to(device),
            val=val,
            val_y=torch.from_numpy(val_labels).to(device),
            class_counts=torch.from_numpy(counts.astype(np.int64)).to(device),
            mean=mean.to(torch.float32).cpu(),
            std=std.clamp(min=_MIN_STD).to(torch.float32).cpu(),
            device=device,
        )

    def probe(self, head: nn.Module) -> Probe:
        return Probe(self.mean.clone(), self.std.clone(), head).to(self.device)


def _fit_head(
    data: _TrainingData,
    head_logits: tuple[np.ndarray | FeatureRows, np.ndarray | FeatureRows] | None,
) -> FittedClassifier:
    """The backbone's own head: its stored logits are the decision, nothing is trained."""
    if head_logits is None:
        raise FeaturesError(
            "classifier 'head' needs the bank's stored logits, but the bank has none; "
            "re-dump the bank with logits or drop 'head' from the classifier kinds"
        )
    train_logits, val_logits = head_logits
    checked = []
    for name, logits, rows in (("head_logits[0] (train)", train_logits, len(data.train)),
                               ("head_logits[1] (val)", val_logits, len(data.val))):
        checked.append(as_rows(logits, name, data.num_classes))
        if len(checked[-1]) != rows:
            raise FeaturesError(f"{name}: expected {rows} rows of logits")
    val = checked[1]
    pred = torch.cat([block.argmax(dim=1).cpu() for block in val.blocks(_EVAL_BATCH)])
    accuracy = _accuracy(pred, data.val_y.cpu())
    return FittedClassifier(
        kind="head",
        selected={"val_accuracy": accuracy},
        model=None,
        num_classes=data.num_classes,
        input_dim=data.num_classes,
        input_field=INPUT_LOGITS,
    )


def _fit_linear(data: _TrainingData, config: ProbeConfig) -> FittedClassifier:
    """Instance-balanced linear classifier: min CE(W x + b, y), rows sampled uniformly."""
    probe = data.probe(_new_linear_head(data, config))
    return _train("linear", probe, data, config, F.cross_entropy, balanced=False)


def _fit_balanced_softmax(data: _TrainingData, config: ProbeConfig) -> FittedClassifier:
    """Linear classifier trained with the balanced softmax loss (Ren et al. 2020, Eq. 4).

    Trains CE(W x + b + log n, y); predicts with the plain W x + b.
    """
    probe = data.probe(_new_linear_head(data, config))
    return _train(
        "balanced_softmax", probe, data, config, _prior_corrected_loss(data), balanced=False
    )


def _fit_cbs_linear(data: _TrainingData, config: ProbeConfig) -> FittedClassifier:
    """Linear classifier, CE(W x + b, y), rows drawn by class-balanced sampling."""
    probe = data.probe(_new_linear_head(data, config))
    return _train("cbs_linear", probe, data, config, F.cross_entropy, balanced=True)


def _fit_cosine(data: _TrainingData, config: ProbeConfig) -> FittedClassifier:
    """Cosine classifier z_c = s cos(x, w_c), trained with CE(z + log n, y) (logit adjustment).

    Rows are sampled uniformly; predicts with the plain z.
    """
    weight = torch.randn(
        data.num_classes, data.dim, generator=_generator(config), dtype=torch.float32
    )
    # unit rows: the gradient through w / ||w|| shrinks as 1 / ||w||, so randn rows (norm
    # ~sqrt(D)) would make the effective learning rate D times smaller than `lr`
    weight = F.normalize(weight, dim=1)
    probe = data.probe(CosineHead(weight, config.cosine_scale))
    return _train("cosine", probe, data, config, _prior_corrected_loss(data), balanced=False)


def _fit_crt(data: _TrainingData, config: ProbeConfig) -> FittedClassifier:
    """Classifier re-training (Kang et al. 2020, Sec. 4.2).

    A re-initialised linear classifier trained with CE(W x + b, y) on class-balanced
    samples for `crt_epochs` epochs with cosine learning-rate decay.
    """
    probe = data.probe(_new_linear_head(data, config))
    return _train(
        "crt", probe, data, config, F.cross_entropy, balanced=True, epochs=config.crt_epochs
    )


def _fit_lws(data: _TrainingData, base: FittedClassifier, config: ProbeConfig) -> FittedClassifier:
    """Learnable weight scaling (Kang et al. 2020, Sec. 4.2) on the fitted `linear` classifier.

    Learns f [C] in z_c = f_c (w_c . x) + b_c with W, b frozen, minimising CE(z, y) on
    class-balanced samples for `lws_epochs` epochs. The scales get no weight decay: it
    would pull them to 0, not to their starting value 1.
    """
    linear = _linear_head_of(base)
    head = ScaledLinearHead(linear.weight.detach(), linear.bias.detach())
    probe = _probe_on_base(base, head, data)
    no_decay = dataclasses.replace(config, weight_decay=0.0)
    return _train(
        "lws", probe, data, no_decay, F.cross_entropy, balanced=True, epochs=config.lws_epochs
    )


def _fit_tau_norm(
    data: _TrainingData, base: FittedClassifier, tau_grid: tuple[float, ...]
) -> FittedClassifier:
    """Tau-normalisation (Kang et al. 2020, Sec. 4.2): w_c <- w_c / ||w_c||^tau, bias dropped.

    Tau is the value of `tau_grid` with the best val accuracy; ties go to the smaller tau.
    """
    linear = _linear_head_of(base)
    weight = linear.weight.detach()
    norms = weight.norm(dim=1, keepdim=True).clamp(min=torch.finfo(weight.dtype).tiny)
    best: tuple[float, float, Probe] | None = None
    for tau in sorted(set(tau_grid)):
        head = LinearHead(weight / norms**tau, torch.zeros(len(weight), dtype=weight.dtype))
        probe = _probe_on_base(base, head, data)
        accuracy = _val_accuracy(probe, data)
        if best is None or accuracy > best[1]:
            best = (tau, accuracy, probe)
    assert best is not None
    tau, accuracy, probe = best
    return _fitted("tau_norm", {"tau": tau, "val_accuracy": accuracy}, probe, data)


_FITTERS: dict[str, Callable[[_TrainingData, ProbeConfig], FittedClassifier]] = {
    "linear": _fit_linear,
    "balanced_softmax": _fit_balanced_softmax,
    "cbs_linear": _fit_cbs_linear,
    "cosine": _fit_cosine,
    "crt": _fit_crt,
}


def _train(
    kind: str,
    probe: Probe,
    data: _TrainingData,
    config: ProbeConfig,
    loss_fn: LossFn,
    *,
    balanced: bool,
    epochs: int | None = None,
) -> FittedClassifier:
    """Minibatch SGD with momentum and cosine lr decay; keeps the best val epoch's state."""
    epochs = epochs if epochs is not None else config.epochs
    generator = _generator(config)
    optimizer = torch.optim.SGD(
        [p for p in probe.parameters() if p.requires_grad],
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    best_epoch, best_accuracy, best_state = 0, -1.0, state_snapshot(probe)
    for epoch in range(epochs):
        _set_lr(optimizer, _cosine_lr(config.lr, epoch, epochs))
        order = _epoch_order(data, balanced, generator)
        _run_epoch(probe, optimizer, loss_fn, data, order.to(data.device), config.batch_size,
                   where=f"classifier {kind}, epoch {epoch + 1}/{epochs}")
        accuracy = _val_accuracy(probe, data)
        if accuracy > best_accuracy:
            best_epoch, best_accuracy, best_state = epoch + 1, accuracy, state_snapshot(probe)
    probe.load_state_dict(best_state)
    return _fitted(kind, {"epoch": best_epoch, "val_accuracy": best_accuracy}, probe, data)


def _run_epoch(
    probe: Probe,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    data: _TrainingData,
    order: torch.Tensor,
    batch_size: int,
    *,
    where: str,
) -> None:
    probe.train()
    for step, (rows, x) in enumerate(data.train.batches(order, batch_size), start=1):
        loss = loss_fn(probe(x), data.train_y[rows])
        check_finite_loss(loss, f"{where}, step {step}", fix="lower classify.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def check_finite_loss(loss: torch.Tensor, where: str, fix: str) -> None:
    """Stop before a NaN or infinite loss reaches the weights; the message says where.

    Args:
        loss: the scalar loss of a step.
        where: what was training, and the epoch and step.
        fix: the advice to give.

    Raises:
        FeaturesError: the loss is not finite.
    """
    if not bool(torch.isfinite(loss)):
        raise FeaturesError(f"{where}: non-finite loss ({float(loss.detach())}); {fix}")


def _epoch_order(data: _TrainingData, balanced: bool, generator: torch.Generator) -> torch.Tensor:
    num_rows = len(data.train_y)
    if balanced:
        return class_balanced_order(data.train_y, num_rows, generator)
    return instance_order(num_rows, generator)


def _cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """lr_e = lr / 2 * (1 + cos(pi e / E)) for e = 0 .. E-1."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / epochs))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _generator(config: ProbeConfig) -> torch.Generator:
    return torch.Generator().manual_seed(config.seed)


def _new_linear_head(data: _TrainingData, config: ProbeConfig) -> LinearHead:
    weight = _INIT_STD * torch.randn(
        data.num_classes, data.dim, generator=_generator(config), dtype=torch.float32
    )
    return LinearHead(weight, torch.zeros(data.num_classes, dtype=torch.float32))


def _prior_corrected_loss(data: _TrainingData) -> LossFn:
    counts = data.class_counts

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return balanced_softmax_loss(logits, labels, counts)

    return loss


def _base_linear(
    base: FittedClassifier | None, data: _TrainingData, config: ProbeConfig
) -> FittedClassifier:
    if base is None:
        return _fit_linear(data, config)
    if base.kind != "linear" or base.model is None:
        raise FeaturesError(
            f"base must be a fitted 'linear' classifier, got {base.kind!r}; "
            "fit kind 'linear' first or pass base=None"
        )
    if base.input_dim != data.dim or base.num_classes != data.num_classes:
        raise FeaturesError(
            f"base classifier maps {base.input_dim} features to {base.num_classes} classes, "
            f"but the rows have {data.dim} features and {data.num_classes} classes"
        )
    return base


def _probe_on_base(base: FittedClassifier, head: nn.Module, data: _TrainingData) -> Probe:
    """A new head on the base classifier's own standardisation, which its weights assume."""
    assert base.model is not None
    return Probe(base.model.mean.clone(), base.model.std.clone(), head).to(data.device)


def _linear_head_of(base: FittedClassifier) -> LinearHead:
    assert base.model is not None and isinstance(base.model.head, LinearHead)
    return base.model.head


def _fitted(
    kind: str, selected: dict[str, float], probe: Probe, data: _TrainingData
) -> FittedClassifier:
    probe = probe.to("cpu").eval()
    for parameter in probe.parameters():
        parameter.requires_grad_(False)
    return FittedClassifier(
        kind=kind,
        selected=selected,
        model=probe,
        num_classes=data.num_classes,
        input_dim=data.dim,
    )


@torch.no_grad()
def _predict(probe: Probe, rows: FeatureRows) -> torch.Tensor:
    """Logits [N, C] of rows [N, D], in blocks of `_EVAL_BATCH` to bound memory."""
    probe.eval()
    device = next(probe.buffers()).device
    blocks = [probe(block.to(device)) for block in rows.blocks(_EVAL_BATCH)]
    return torch.cat(blocks).to(torch.float32)


def _val_accuracy(probe: Probe, data: _TrainingData) -> float:
    return _accuracy(_predict(probe, data.val).argmax(dim=1), data.val_y)


def _accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return float((pred == labels).to(torch.float64).mean())
