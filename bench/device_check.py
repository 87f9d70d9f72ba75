"""Every method end to end on one device: train, dump a bank, fit classifiers, evaluate.

Runs the libraries directly (no DVC), so it works on a GPU machine that has torch, h5py and
scikit-learn but not the whole of tailbank's dependencies. Banks need the `xxhash` wheel
(their chunk digest, schema 3) besides those that `../shared/device/get_wheels.sh` fetches:
add `xxhash==4.1.0` to its download line. For each method it reports seconds
per training epoch, dump throughput, and test accuracy overall / many / medium / few of the
backbone's own head and of a balanced-softmax linear probe on its bank.

    python bench/device_check.py --dataset mnist_lt --root ../shared/data --epochs 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from core.devices import resolve_device
from core.splits import SPLITS
from features.bank import Bank, BankMeta, BankWriter
from features.classifiers import fit_classifier
from features.configs import ProbeConfig
from features.metrics import evaluate
from pipeline.data import load_source, make_loader, make_splits
from pipeline.engine import OptimConfig, ScheduleConfig, TrainConfig, train
from pipeline.methods import build_method
from stages.dump import write_batch

OPTIONS = {
    "paco": {"alpha": 0.01, "temperature": 0.1, "queue_size": 1024, "projection_dim": 32,
             "momentum": 0.99, "key_augment": "crop"},
    "gml_student": {"queue_size": 1024, "projector_dims": [64, 64, 32]},
}
ORDER = ("ce", "cbs", "bsce", "paco", "gml_teacher", "gml_student", "bib", "mbib")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist_lt")
    parser.add_argument("--root", default="data/raw")
    parser.add_argument("--imbalance-factor", type=float, default=100.0)
    parser.add_argument("--backbone", default="resnet32")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--methods", default=",".join(ORDER))
    args = parser.parse_args()

    device = resolve_device()
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    source = load_source(args.dataset, args.root)
    splits = make_splits(source, imbalance_factor=args.imbalance_factor, val_per_class=10,
                         test_per_class=40, max_per_class=None, seed=0)
    counts = splits.class_counts
    print(f"{args.dataset} IF {args.imbalance_factor:g}: train {len(splits.train.indices)} "
          f"(counts {counts.tolist()}), val {len(splits.val.indices)}, "
          f"test {len(splits.test.indices)}; {args.backbone}, {args.epochs} epochs, {name}")
    print(f"{'method':<12}{'s/epoch':>8}{'dump img/s':>11}{'val':>7}"
          f"{'head all/many/med/few':>26}{'bal.softmax probe all/many/med/few':>38}")
    trained = {}
    for kind in args.methods.split(","):
        teacher = trained.get("gml_teacher") if kind == "gml_student" else None
        method = build_method(kind, backbone=args.backbone, in_channels=source.channels,
                              class_counts=counts.tolist(), options=OPTIONS.get(kind), seed=0,
                              teacher=teacher).to(device)
        loaders = {
            "train": make_loader(source, splits.train, batch_size=args.batch_size, train=True,
                                 sampling=method.sampling, augment="crop",
                                 seed=0, device=device),
            "val": make_loader(source, splits.val, batch_size=512, train=False, device=device),
        }
        config = TrainConfig(epochs=args.epochs, optim=OptimConfig(lr=0.05),
                             schedule=ScheduleConfig(kind="cosine", warmup_epochs=1),
                             seed=0, max_grad_norm=5.0)
        start = time.perf_counter()
        result = train(method, loaders["train"], loaders["val"], config, device=device)
        per_epoch = (time.perf_counter() - start) / args.epochs
        method.load_state_dict(result.best_state)
        method.eval()
        trained[kind] = method
        with tempfile.TemporaryDirectory() as folder:
            bank_file = Path(folder) / f"{kind}.h5"
            rate = dump(method, source, splits, counts, kind, args, device, bank_file)
            head, probe = score(bank_file, counts, device)
        print(f"{kind:<12}{per_epoch:>8.2f}{rate:>11.0f}{result.best_val_acc:>7.3f}"
              f"{head:>26}{probe:>38}")


def dump(method, source, splits, counts, kind, args, device, bank_file) -> float:
    """Write the bank with the dump stage's own code; return images per second."""
    meta = BankMeta(method=kind, backbone=args.backbone, dataset=args.dataset,
                    num_classes=len(counts), feature_dim=method.backbone.feature_dim, seed=0,
                    params_digest="device-check", checkpoint_sha256="device-check",
                    class_counts=counts)
    images, start = 0, time.perf_counter()
    with BankWriter(bank_file, meta) as bank:
        for split in SPLITS:
            loader = make_loader(source, getattr(splits, split), batch_size=512, train=False,
                                 device=device)
            for batch in loader.epoch(0):
                write_batch(bank, split, method, batch, device)
            images += loader.num_samples
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start)


def score(bank_file: Path, counts, device) -> tuple[str, str]:
    """Test accuracy of the bank's own logits and of a balanced-softmax probe on it."""
    with Bank.open(bank_file) as bank:
        data = {s: (bank.features(s), bank.labels(s), bank.logits(s)) for s in bank.splits}
    head = evaluate(data["test"][2], data["test"][1], counts)
    fitted = fit_classifier("balanced_softmax", train_x=data["train"][0],
                            train_y=data["train"][1], val_x=data["val"][0],
                            val_y=data["val"][1], class_counts=counts,
                            config=ProbeConfig(device=str(device)))
    probe = evaluate(fitted.logits(data["test"][0]), data["test"][1], counts)
    return shots(head), shots(probe)


def shots(result) -> str:
    return "/".join(f"{value:.3f}" for value in
                    (result.overall, result.many, result.medium, result.few))


if __name__ == "__main__":
    main()
