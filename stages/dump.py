"""Stage ``dump@<method>``: features of un-augmented train/val/test images into an HDF5 bank."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.splits import SPLITS
from features.bank import BankMeta, BankWriter, estimated_bank_bytes
from pipeline.data import Splits, make_loader
from pipeline.methods import Method
from pipeline.models.base import Backbone
from pipeline.models.checkpoint import load_model_payload, restore_method
from pipeline.models.weights import load_backbone
from stages.configs import data_source
from stages.errors import StageError
from stages.io import sha256_file
from stages.layout import (
    REDO_PREPARE,
    bank_path,
    model_path,
    require_file,
    require_splits,
    resolve_device,
)
from stages.outputs import check_space, check_writable
from stages.params import Params, section_digest
from stages.progress import StepProgress, log
from stages.version import tailbank_version


def run(params: Params, method_name: str, seed: int) -> Path:
    """Write ``banks/<method>/seed<seed>.h5`` from the best-on-val model of that seed.

    Returns:
        The path of the bank.
    """
    checkpoint = require_file(model_path(method_name, seed),
                              f"tailbank pretrain --method {method_name} --seed {seed}")
    target = bank_path(method_name, seed)
    check_writable(target, folder=False)
    payload = load_model_payload(checkpoint)
    device = resolve_device(params.dump.device)
    origin = str(model_path(payload["method"], payload["seed"]))
    method = restore_method(payload, origin).to(device).eval()
    data = params.data
    source = data_source(data)
    if source.name != payload["dataset"]:
        raise StageError(
            f"{checkpoint}: trained on '{payload['dataset']}' but data.dataset is "
            f"'{source.name}'; re-run `tailbank pretrain --method {method_name} --seed {seed}`"
        )
    splits = Splits.read(require_splits(payload["dataset"]), source, fix=REDO_PREPARE)
    loaders = {
        split: make_loader(source, getattr(splits, split), batch_size=params.dump.batch_size,
                           train=False, device=device)
        for split in SPLITS
    }
    meta = BankMeta(
        method=method_name,
        backbone=payload["backbone"],
        dataset=payload["dataset"],
        num_classes=len(payload["class_counts"]),
        feature_dim=method.backbone.feature_dim,
        seed=int(payload["seed"]),
        params_digest=section_digest(payload["params_digest"], params.data, params.dump),
        checkpoint_sha256=sha256_file(checkpoint),
        class_counts=splits.class_counts,
        class_names=source.class_names,
        augment="none",
        tailbank_version=tailbank_version(),
    )
    sizes = {split: loader.num_samples for split, loader in loaders.items()}
    check_space(target, estimated_bank_bytes(sizes, meta, _extra_width(method, loaders)))
    total = sum(len(loader) for loader in loaders.values())
    with StepProgress(f"dump {method_name}", total) as progress, BankWriter(
        target, meta, split_sizes=sizes
    ) as bank:
        done = 0
        for split, loader in loaders.items():
            for batch in loader.epoch(0):
                write_batch(bank, split, method, batch, device)
                done += 1
                progress.advance_to(done, split)
    log(f"dump {method_name}: " + ", ".join(f"{split} {rows}" for split, rows in sizes.items())
        + f" -> {target}")
    return target


CHECKPOINT = "checkpoint"


def run_import(params: Params, method_name: str, seed: int) -> Path:
    """Write the bank of entry ``imports.<method_name>`` (kind checkpoint) for one seed.

    Returns:
        The path of the bank.
    """
    entry = params.imported(method_name)
    if entry.kind != CHECKPOINT or entry.backbone is None:
        raise StageError(f"imports.{method_name} is of kind '{entry.kind}': run `tailbank "
                         f"import-bank --method {method_name}` for it")
    return run_checkpoint(params, entry.source_of(seed), entry.backbone, method_name, seed)


def run_checkpoint(params: Params, checkpoint: Path, backbone: str, method_name: str,
                   seed: int) -> Path:
    """Write ``banks/<method>/seed<seed>.h5`` from a network trained elsewhere, no pretrain.

    The features are the backbone's pooled ``forward_features`` of the un-augmented images of
    ``data``'s splits (`tailbank prepare` makes them); logits only when the file's head has
    one row per class. The bank records the file and its sha256 (``source_kind``
    "checkpoint").

    Args:
        params: the params (data, dump).
        checkpoint: a state dict of ``backbone`` (`pipeline.models.weights`).
        backbone: the architecture the weights belong to (``resnet32``, ``resnet50``, ...).
        method_name: the key the bank is filed under; stage 2 runs with ``--method`` it.
        seed: the seed the bank is filed under.

    Returns:
        The path of the bank.
    """
    target = bank_path(method_name, seed)
    check_writable(target, folder=False)
    source = data_source(params.data)
    splits = Splits.read(require_splits(source.name), source, fix=REDO_PREPARE)
    network, head = load_backbone(Path(checkpoint), backbone, in_channels=source.channels,
                                  num_classes=len(splits.class_counts))
    device = resolve_device(params.dump.device)
    network = network.to(device)
    loaders = {
        split: make_loader(source, getattr(splits, split), batch_size=params.dump.batch_size,
                           train=False, device=device)
        for split in SPLITS
    }
    digest = sha256_file(Path(checkpoint))
    meta = BankMeta(
        method=method_name,
        backbone=backbone,
        dataset=source.name,
        num_classes=len(splits.class_counts),
        feature_dim=network.feature_dim,
        seed=seed,
        params_digest=section_digest({CHECKPOINT: digest}, params.data, params.dump),
        checkpoint_sha256=digest,
        class_counts=splits.class_counts,
        class_names=source.class_names,
        augment="none",
        tailbank_version=tailbank_version(),
        source_kind=CHECKPOINT,
        source=str(checkpoint),
    )
    sizes = {split: loader.num_samples for split, loader in loaders.items()}
    check_space(target, estimated_bank_bytes(sizes, meta, logits=head))
    with BankWriter(target, meta, split_sizes=sizes) as bank:
        for split, loader in loaders.items():
            for batch in loader.epoch(0):
                _write_backbone_batch(bank, split, network, head, batch, device)
    log(f"dump {method_name} from {checkpoint}: " + ", ".join(
        f"{split} {rows}" for split, rows in sizes.items()) + f" -> {target}"
        + ("" if head else " (no logits: the file's head is not one row per class)"))
    return target


@torch.inference_mode()
def _write_backbone_batch(bank: BankWriter, split: str, network: Backbone, head: bool,
                          batch: Any, device: torch.device) -> None:
    """Append one batch's pooled features [B, D] (and logits [B, C] when the head fits)."""
    feature_map = network.forward_features(batch.images.to(device, non_blocking=True))
    features = network.forward_head(feature_map, pre_logits=True)
    bank.append(
        split,
        features=features.float().cpu().numpy(),
        labels=batch.labels.cpu().numpy(),
        index=batch.index.cpu().numpy(),
        logits=network.fc(features).float().cpu().numpy() if head else None,
    )


def _extra_width(method: Method, loaders: dict[str, Any]) -> int:
    """Total width of the extra views (MBIB's z, v1, v2, ...), from one embedded image."""
    loader = next((loader for loader in loaders.values() if loader.num_samples), None)
    if loader is None:
        return 0
    batch = next(iter(loader.epoch(0)))
    with torch.inference_mode():
        embedding = method.embed(batch.images[:1].to(next(method.parameters()).device))
    return sum(int(view.shape[1]) for view in embedding.extra.values())


@torch.inference_mode()
def write_batch(bank: BankWriter, split: str, method: Method, batch: Any,
                device: torch.device) -> None:
    """Embed one batch and append features, labels, index, logits and extra views."""
    embedding = method.embed(batch.images.to(device, non_blocking=True))
    bank.append(
        split,
        features=embedding.features.float().cpu().numpy(),
        labels=batch.labels.cpu().numpy(),
        index=batch.index.cpu().numpy(),
        logits=embedding.logits.float().cpu().numpy(),
        extra={name: view.float().cpu().numpy() for name, view in embedding.extra.items()},
    )
