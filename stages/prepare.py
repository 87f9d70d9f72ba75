"""Stage ``prepare``: the long-tailed train, balanced val and test splits of the dataset."""

from __future__ import annotations

from pathlib import Path

from pipeline.data import DatasetSource, Splits, make_splits
from stages.configs import data_source
from stages.data_section import DataParams
from stages.io import write_json
from stages.layout import splits_path
from stages.outputs import check_writable
from stages.params import Params
from stages.progress import log


def run(params: Params) -> Path:
    """Load the dataset named in ``data``, draw the splits, write ``data/splits/<dataset>.json``.

    Returns:
        The path written.
    """
    data = params.data
    target = splits_path(data.dataset)
    check_writable(target, folder=False)
    splits = draw_splits(data_source(data), data)
    write_json(target, splits.to_dict())
    counts = splits.class_counts
    log(
        f"prepare {data.dataset}: train {len(splits.train.indices)} "
        f"(head {counts.max()}, tail {counts.min()}), val {len(splits.val.indices)}, "
        f"test {len(splits.test.indices)} -> {target}"
    )
    return target


def draw_splits(source: DatasetSource, data: DataParams) -> Splits:
    """The splits the ``data`` params draw from ``source`` (what prepare writes; the benches
    that train outside the DAG draw theirs here too)."""
    return make_splits(
        source,
        imbalance_factor=data.imbalance_factor,
        val_per_class=data.val_per_class,
        test_per_class=data.test_per_class,
        max_per_class=data.max_per_class,
        seed=data.split_seed,
        val_from=data.val_from,
    )
