"""Stage ``prepare``: the long-tailed train, balanced val and test splits of the dataset."""

from __future__ import annotations

from pathlib import Path

from pipeline.data import load_source, make_splits
from stages.io import write_json
from stages.layout import splits_path
from stages.outputs import check_writable
from stages.params import DataParams, Params
from stages.progress import log


def run(params: Params) -> Path:
    """Load the dataset named in ``data``, draw the splits, write ``data/splits/<dataset>.json``.

    Returns:
        The path written.
    """
    data = params.data
    target = splits_path(data.dataset)
    check_writable(target, folder=False)
    source = open_source(data)
    splits = make_splits(
        source,
        imbalance_factor=data.imbalance_factor,
        val_per_class=data.val_per_class,
        test_per_class=data.test_per_class,
        max_per_class=data.max_per_class,
        seed=data.split_seed,
        val_from=data.val_from,
    )
    write_json(target, splits.to_dict())
    counts = splits.class_counts
    log(
        f"prepare {data.dataset}: train {len(splits.train.indices)} "
        f"(head {counts.max()}, tail {counts.min()}), val {len(splits.val.indices)}, "
        f"test {len(splits.test.indices)} -> {target}"
    )
    return target


def open_source(data: DataParams):
    """The dataset source named by the ``data`` params (shared by prepare, pretrain and dump)."""
    return load_source(
        data.dataset,
        data.root,
        download=data.download,
        lists=data.lists.model_dump(),
        folders=data.folders.model_dump(),
        image_size=data.image_size,
    )
