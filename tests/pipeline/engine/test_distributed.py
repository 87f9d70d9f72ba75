"""Data-parallel training: 2 gloo processes on the CPU against one process.

Tolerances: without BatchNorm the two runs compute the same averaged gradient, so weights agree
to float rounding (1e-5). With BatchNorm each rank normalises its half batch (torch has no CPU
SyncBatchNorm), so the runs differ by a few percent of how far training moved the weights.
Either way the two ranks must hold bit-identical replicas.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from pipeline.data import make_loader
from pipeline.data.longtail import make_splits
from pipeline.data.sources import load_digits_source
from pipeline.engine import OptimConfig, ScheduleConfig, TrainConfig, train
from pipeline.engine.distributed import Rank, rank_from_environment
from pipeline.errors import PipelineError
from pipeline.methods import Method, build_method

CPU = torch.device("cpu")
SCENARIOS = ("ce_without_batchnorm", "ce", "paco", "mbib", "gml_student")
OPTIONS = {
    "paco": {"queue_size": 64, "projection_dim": 8, "key_augment": "none"},
    "gml_student": {"queue_size": 64, "projector_dims": [64, 16]},
}


def _without_batchnorm(method: Method) -> Method:
    for child in list(method.modules()):
        for attribute, layer in list(child.named_children()):
            if isinstance(layer, nn.BatchNorm2d):
                setattr(child, attribute, nn.Identity())
    return method


def _method(scenario: str, class_counts: list[int]) -> Method:
    kind = "ce" if scenario == "ce_without_batchnorm" else scenario
    teacher = None
    if kind == "gml_student":
        teacher = build_method("gml_teacher", backbone="resnet20", in_channels=1,
                               class_counts=class_counts, seed=7).eval()
    method = build_method(kind, backbone="resnet20", in_channels=1, class_counts=class_counts,
                          options=OPTIONS.get(kind), seed=3, teacher=teacher)
    return _without_batchnorm(method) if scenario == "ce_without_batchnorm" else method


def _train_scenario(scenario: str, rank: int, world_size: int) -> dict:
    source = load_digits_source()
    splits = make_splits(source, imbalance_factor=10, val_per_class=5, test_per_class=5,
                         max_per_class=44, seed=0)
    # 176 training images: an even count, so two ranks drop none and see what one process sees.
    assert len(splits.train.indices) == 176
    method = _method(scenario, splits.class_counts.tolist())
    loader = make_loader(source, splits.train, batch_size=32, train=True,
                         sampling=method.sampling, views=method.view_augments(), seed=1,
                         device=CPU, rank=rank, world_size=world_size)
    val = make_loader(source, splits.val, batch_size=64, train=False, device=CPU)
    config = TrainConfig(epochs=2, optim=OptimConfig(lr=0.02), seed=5,
                         schedule=ScheduleConfig(kind="cosine", warmup_epochs=0, milestones=()))
    initial = {key: value.clone() for key, value in method.state_dict().items()}
    result = train(method, loader, val, config, device=CPU)
    return {"initial": initial, "final": method.state_dict(), "history": result.history}


def _rank_main(rank: int, world_size: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank,
                            world_size=world_size)
    try:
        results = {scenario: _train_scenario(scenario, rank, world_size) for scenario in SCENARIOS}
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank_main, args=(2, str(out_dir / "store"), str(out_dir)), nprocs=2, join=True)
    ranks = [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    single = {scenario: _train_scenario(scenario, 0, 1) for scenario in SCENARIOS}
    return {"ranks": ranks, "single": single}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ranks_hold_identical_replicas(runs: dict, scenario: str) -> None:
    first, second = (rank[scenario]["final"] for rank in runs["ranks"])
    for key, value in first.items():
        assert torch.equal(value, second[key]), f"{scenario}: ranks disagree on {key}"
    history = [rank[scenario]["history"] for rank in runs["ranks"]]
    assert history[0] == history[1]


def _distance(one: dict, other: dict) -> float:
    return float(torch.sqrt(sum(
        ((one[key].double() - other[key].double()) ** 2).sum()
        for key in one if one[key].is_floating_point()
    )))


def test_without_batchnorm_two_ranks_equal_one_process(runs: dict) -> None:
    scenario = "ce_without_batchnorm"
    distributed, single = runs["ranks"][0][scenario], runs["single"][scenario]
    for key, value in single["final"].items():
        torch.testing.assert_close(distributed["final"][key], value, atol=1e-5, rtol=1e-4,
                                   msg=f"{key} differs from the single-process run")
    for ours, theirs in zip(distributed["history"], single["history"], strict=True):
        assert ours.train_loss == pytest.approx(theirs.train_loss, rel=1e-4)
        assert ours.val_acc == pytest.approx(theirs.val_acc, abs=0.05)


@pytest.mark.parametrize("scenario", ["ce", "paco", "mbib", "gml_student"])
def test_with_batchnorm_two_ranks_stay_close_to_one_process(runs: dict, scenario: str) -> None:
    distributed, single = runs["ranks"][0][scenario], runs["single"][scenario]
    moved = _distance(single["final"], single["initial"])
    gap = _distance(distributed["final"], single["final"])
    assert moved > 0
    assert gap < 0.25 * moved, f"{scenario}: DDP ended {gap:.4f} from one process, which moved {moved:.4f}"


def test_rank_comes_from_the_torchrun_environment() -> None:
    assert rank_from_environment({}) == Rank()
    assert rank_from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == Rank(3, 4, 1)
    assert Rank(0, 2).is_main and not Rank(1, 2).is_main and Rank(1, 2).distributed
    with pytest.raises(PipelineError, match="RANK=4 does not fit WORLD_SIZE=4"):
        rank_from_environment({"WORLD_SIZE": "4", "RANK": "4"})
    with pytest.raises(PipelineError, match="must be integers"):
        rank_from_environment({"WORLD_SIZE": "two"})
