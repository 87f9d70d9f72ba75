"""PaCo: the loss against its equation, the key queue, the momentum encoder, resume state."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.methods.options import parse_options
from pipeline.methods.paco import PaCoOptions, ParametricContrastive
from pipeline.methods.paco_loss import paco_loss
from pipeline.methods.paco_queue import LabelledKeyQueue
from pipeline.models import build_backbone, seeded_initialisation

COUNTS = [30, 12, 6, 3, 2]
# the reduced contrast set (no batch queries, no own key) keeps the hand-built expectations
# small; the default, official set is checked in test_official_contrast_set_* below
SMALL = PaCoOptions(
    queue_size=24,
    projection_dim=8,
    temperature=0.1,
    alpha=0.3,
    contrast_queries=False,
    own_key_positive=False,
)


def build(options: PaCoOptions = SMALL, seed: int = 0) -> ParametricContrastive:
    with seeded_initialisation(seed):
        backbone = build_backbone("resnet20", num_classes=len(COUNTS), in_channels=1)
        return ParametricContrastive(backbone, torch.tensor(COUNTS), options)


def batch(size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 1, 8, 8, generator=generator)
    labels = torch.randint(0, len(COUNTS), (size,), generator=generator)
    return images, labels, torch.arange(size)


def key_view(images: torch.Tensor) -> tuple[torch.Tensor]:
    """A key view of the same images other than the query (the loader's draw in training)."""
    return (images.flip(3),)


def paco_by_hand(
    centre_logits: list[list[float]],
    labels: list[int],
    queries: list[list[float]],
    keys: list[list[float]],
    key_labels: list[int],
    mask: list[list[bool]],
    alpha: float,
    beta: float,
    temperature: float,
    base_temperature: float,
) -> float:
    """The PaCo loss written out: a softmax over centres and the keys of A(i), weighted
    positives (beta on the own centre, alpha on same-class keys), normalised by the weights."""
    total = 0.0
    for i, label in enumerate(labels):
        entries = [(score, beta if c == label else 0.0) for c, score in enumerate(centre_logits[i])]
        for j, key in enumerate(keys):
            if mask[i][j]:
                score = sum(a * b for a, b in zip(queries[i], key, strict=True)) / temperature
                entries.append((score, alpha if key_labels[j] == label else 0.0))
        log_denominator = math.log(sum(math.exp(score) for score, _ in entries))
        weighted = sum(weight * (score - log_denominator) for score, weight in entries)
        total += -(temperature / base_temperature) * weighted / sum(w for _, w in entries)
    return total / len(labels)


def unit_rows(rows: int, width: int, generator: torch.Generator) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(rows, width, generator=generator, dtype=torch.float64), dim=1
    )


@pytest.mark.parametrize("seed", range(4))
def test_paco_loss_matches_the_equation(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    batch_size, keys_count, classes = 6, 11, 4
    centre_logits = torch.randn(batch_size, classes, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch_size,), generator=generator)
    queries, keys = unit_rows(batch_size, 5, generator), unit_rows(keys_count, 5, generator)
    key_labels = torch.randint(0, classes, (keys_count,), generator=generator)
    mask = torch.rand(batch_size, keys_count, generator=generator) < 0.7
    settings = {"alpha": 0.05 + seed / 4, "beta": 1.0 + seed / 3}
    temperatures = {"temperature": 0.2, "base_temperature": 0.2 + 0.1 * seed}
    loss = paco_loss(
        centre_logits, labels, queries, keys, key_labels, mask, **settings, **temperatures
    )
    expected = paco_by_hand(
        centre_logits.tolist(),
        labels.tolist(),
        queries.tolist(),
        keys.tolist(),
        key_labels.tolist(),
        mask.tolist(),
        **settings,
        **temperatures,
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_paco_loss_ignores_what_the_mask_removes() -> None:
    generator = torch.Generator().manual_seed(0)
    centre_logits = torch.randn(4, 3, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 0])
    queries, keys = unit_rows(4, 5, generator), unit_rows(6, 5, generator)
    key_labels = torch.tensor([0, 1, 2, 0, 1, 2])
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:, 3:] = False
    settings = {"alpha": 0.5, "beta": 1.0, "temperature": 0.1, "base_temperature": 0.1}
    loss = paco_loss(centre_logits, labels, queries, keys, key_labels, mask, **settings)
    changed = keys.clone()
    changed[3:] = unit_rows(3, 5, generator)
    other_labels = torch.tensor([0, 1, 2, 2, 2, 2])
    changed_loss = paco_loss(
        centre_logits, labels, queries, changed, other_labels, mask, **settings
    )
    assert torch.equal(loss, changed_loss)


def test_first_step_is_the_equation_with_the_log_prior_on_the_centres() -> None:
    """Key view "none" of un-augmented images and a fresh key encoder: the keys are the
    detached queries and the queue is empty, so A(i) is the other B - 1 keys of the batch."""
    method = build(replace(SMALL, key_augment="none"))
    images, labels, index = batch()
    output = method.training_step(images, labels, index, images)
    pooled = method.pooled_features(images).detach()
    logits = method.backbone.fc(pooled).double()
    queries = torch.nn.functional.normalize(method.projector(pooled), dim=1).double()
    log_prior = [math.log(n / sum(COUNTS)) for n in COUNTS]
    centres = [[a + b for a, b in zip(row, log_prior, strict=True)] for row in logits.tolist()]
    size = labels.numel()
    not_self = [[i != j for j in range(size)] for i in range(size)]
    expected = paco_by_hand(
        centres,
        labels.tolist(),
        queries.tolist(),
        queries.tolist(),
        labels.tolist(),
        not_self,
        SMALL.alpha,
        SMALL.beta,
        SMALL.temperature,
        SMALL.temperature,
    )
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.equal(output.logits, method.backbone.fc(pooled))


def test_gradients_reach_the_query_encoder_and_centres_only() -> None:
    method = build()
    images, labels, index = batch()
    method.training_step(images, labels, index, *key_view(images)).loss.backward()
    for name, parameter in method.named_parameters():
        if name.startswith(("key_backbone.", "key_projector.")):
            assert not parameter.requires_grad and parameter.grad is None, name
    for module in (method.backbone.fc, method.projector):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(p.grad is not None for p in method.backbone.parameters())
    assert not any(buffer.requires_grad for buffer in method.buffers())
    trainable = {id(p) for group in method.parameter_groups() for p in group["params"]}
    assert trainable == {id(p) for p in method.query_parameters()}


def queue_by_hand(size: int, pushes: list[list[int]]) -> tuple[list[int | None], int, int]:
    """A ring written one row at a time: slot contents, pointer and filled count."""
    slots: list[int | None] = [None] * size
    pointer = 0
    for push in pushes:
        for value in push:
            slots[pointer] = value
            pointer = (pointer + 1) % size
    return slots, pointer, sum(slot is not None for slot in slots)


@pytest.mark.parametrize("pushes", [[3, 3, 3], [2], [7], [5, 5], [4, 9, 1]])
def test_queue_is_a_fifo_ring_for_any_batch_size(pushes: list[int]) -> None:
    queue = LabelledKeyQueue(5, 2)
    values, start = [], 0
    for count in pushes:
        rows = list(range(start, start + count))
        start += count
        values.append(rows)
        as_keys = torch.tensor(rows, dtype=torch.float32)[:, None].expand(-1, 2)
        queue.push(as_keys, torch.tensor(rows) % 3)
    slots, pointer, filled = queue_by_hand(5, values)
    assert int(queue.pointer) == pointer and int(queue.filled) == filled
    assert queue.valid().tolist() == [slot is not None for slot in slots]
    for slot, value in enumerate(slots):
        if value is not None:
            assert queue.keys[slot].tolist() == [float(value)] * 2
            assert int(queue.labels[slot]) == value % 3


def test_contrast_set_masks_empty_slots_and_the_own_key() -> None:
    method = build()
    images, labels, index = batch()
    method.training_step(images, labels, index, *key_view(images))
    queries = torch.zeros(8, SMALL.projection_dim)
    keys, key_labels, mask = method.contrast_set(queries, queries, labels)
    assert keys.shape == (8 + SMALL.queue_size, SMALL.projection_dim)
    assert torch.equal(key_labels[8:16], labels)
    assert torch.equal(mask[:, :8], ~torch.eye(8, dtype=torch.bool))
    assert mask[:, 8:16].all() and not mask[:, 16:].any()


def test_official_contrast_set_adds_the_queries_and_keeps_the_own_key() -> None:
    method = build(replace(SMALL, contrast_queries=True, own_key_positive=True))
    queries, keys = torch.ones(8, SMALL.projection_dim), torch.zeros(8, SMALL.projection_dim)
    labels = torch.arange(8) % len(COUNTS)
    contrast, contrast_labels, mask = method.contrast_set(queries, keys, labels)
    assert torch.equal(contrast[:8], queries) and torch.equal(contrast[8:16], keys)
    assert torch.equal(contrast_labels[:16], torch.cat((labels, labels)))
    assert torch.equal(mask[:, :8], ~torch.eye(8, dtype=torch.bool))
    assert mask[:, 8:16].all() and not mask[:, 16:].any()


def test_a_training_step_sgd_step_and_momentum_update() -> None:
    method = build(replace(SMALL, momentum=0.9))
    images, labels, index = batch()
    key_before = [p.detach().clone() for p in method.key_parameters()]
    optimizer = torch.optim.SGD(method.parameter_groups(), lr=0.1, momentum=0.9)
    output = method.training_step(images, labels, index, *key_view(images))
    optimizer.zero_grad()
    output.loss.backward()
    optimizer.step()
    method.after_optimizer_step()
    for old, key, query in zip(
        key_before, method.key_parameters(), method.query_parameters(), strict=True
    ):
        assert torch.allclose(key, 0.9 * old + 0.1 * query, atol=1e-7)
    assert any(
        not torch.equal(old, key)
        for old, key in zip(key_before, method.key_parameters(), strict=True)
    )
    assert int(method.queue.filled) == 8 and torch.equal(method.queue.labels[:8], labels)
    assert torch.isfinite(output.loss)


def test_state_dict_round_trips_and_resumes_identically() -> None:
    method = build()
    optimizer = torch.optim.SGD(method.parameter_groups(), lr=0.1)
    torch.manual_seed(3)
    for step in range(4):
        images, labels, index = batch(seed=step)
        method.training_step(images, labels, index, *key_view(images)).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        method.after_optimizer_step()
    restored = build(seed=1)
    restored.load_state_dict(method.state_dict())
    state, restored_state = method.state_dict(), restored.state_dict()
    assert state.keys() == restored_state.keys()
    assert all(torch.equal(state[key], restored_state[key]) for key in state)
    assert int(restored.queue.filled) == SMALL.queue_size and int(restored.queue.pointer) == 8
    images, labels, index = batch(seed=9)
    torch.manual_seed(4)
    loss = method.training_step(images, labels, index, *key_view(images)).loss
    torch.manual_seed(4)
    restored_loss = restored.training_step(images, labels, index, *key_view(images)).loss
    assert torch.equal(loss, restored_loss)
    assert torch.equal(method.queue.keys, restored.queue.keys)


def test_the_keys_come_from_the_key_view_the_loader_drew() -> None:
    """The key view is a draw of key_augment from the raw image, made by the loader
    (tests/pipeline/data/test_loaders.py); the method encodes it as given, never re-augmenting
    the query."""
    method = build(replace(SMALL, key_augment="simclr"))
    assert method.view_augmentations() == ("simclr",)
    images, labels, index = batch()
    (keys_view,) = key_view(images)
    with torch.no_grad():
        expected = method.key_projections(keys_view)
        from_query = method.key_projections(images)
    state = torch.get_rng_state()
    method(images, labels, index, keys_view)
    assert torch.equal(state, torch.get_rng_state()), "the step drew random numbers"
    assert torch.allclose(method.queue.keys[:8], expected, atol=1e-6)
    assert not torch.allclose(method.queue.keys[:8], from_query, atol=1e-3)


@pytest.mark.parametrize("views", [(), "two", "shape"])
def test_a_step_without_its_one_key_view_is_refused(views: object) -> None:
    method = build()
    images, labels, index = batch()
    given = {(): (), "two": (images, images), "shape": (images[:4],)}[views]
    with pytest.raises(PipelineError, match="key view|extra view"):
        method(images, labels, index, *given)
    with pytest.raises(PipelineError, match="paco needs one key view"):
        method.training_step(images, labels, index, *given)


def test_predict_is_the_plain_linear_head_and_embed_adds_the_projection() -> None:
    method = build().eval()
    images, _, _ = batch()
    with torch.no_grad():
        embedding = method.embed(images)
        assert torch.equal(method.predict(images), method.backbone(images))
        assert torch.equal(embedding.logits, method.backbone(images))
    projection = embedding.extra["projection"]
    assert projection.shape == (8, SMALL.projection_dim)
    assert torch.allclose(projection.norm(dim=1), torch.ones(8))


def test_a_batch_larger_than_the_queue_keeps_its_last_keys() -> None:
    method = build(replace(SMALL, queue_size=5))
    images, labels, index = batch()
    method.training_step(images, labels, index, *key_view(images))
    slots, pointer, filled = queue_by_hand(5, [labels.tolist()])
    assert int(method.queue.filled) == filled == 5 and int(method.queue.pointer) == pointer
    assert method.queue.labels.tolist() == slots


def test_options_parse_and_defaults() -> None:
    options = parse_options(
        PaCoOptions, {"alpha": 0.01, "temperature": 0.05, "queue_size": 1024}, "paco"
    )
    assert (options.alpha, options.temperature, options.queue_size) == (0.01, 0.05, 1024)
    assert (PaCoOptions().alpha, PaCoOptions().temperature) == (0.05, 0.2)
    assert (PaCoOptions().queue_size, PaCoOptions().projection_dim) == (8192, 128)
    assert PaCoOptions().momentum == 0.999 and PaCoOptions().key_augment == "crop_flip"
    # the official contrast set: only the self-contrast q_i . q_i is removed
    assert PaCoOptions().contrast_queries and PaCoOptions().own_key_positive


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("alpha", -0.1),
        ("beta", 0.0),
        ("temperature", 0.0),
        ("base_temperature", -1.0),
        ("queue_size", 0),
        ("projection_dim", 0),
        ("momentum", 1.5),
        ("key_augment", "mixup"),
    ],
)
def test_out_of_range_options_name_their_key(key: str, value: object) -> None:
    with pytest.raises(PipelineError, match=f"PaCoOptions.{key} must"):
        build(replace(SMALL, **{key: value}))


def test_base_temperature_scales_the_loss() -> None:
    images, labels, index = batch()
    torch.manual_seed(0)
    loss = build().training_step(images, labels, index, *key_view(images)).loss
    torch.manual_seed(0)
    halved = build(replace(SMALL, base_temperature=2 * SMALL.temperature))
    assert halved.training_step(images, labels, index, *key_view(images)).loss.item() == pytest.approx(
        loss.item() / 2, rel=1e-6
    )


def test_a_distributed_world_of_one_enqueues_the_gathered_keys(tmp_path: Path) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        method = build()
        images, labels, index = batch()
        method.training_step(images, labels, index, *key_view(images))
        assert int(method.queue.filled) == 8 and torch.equal(method.queue.labels[:8], labels)
    finally:
        torch.distributed.destroy_process_group()


def test_training_with_loader_drawn_key_views_is_deterministic_for_a_seed() -> None:
    from pipeline.data import load_source, make_loader, make_splits
    from pipeline.engine import OptimConfig, ScheduleConfig, TrainConfig, train

    source = load_source("digits_lt", "unused")
    splits = make_splits(source, imbalance_factor=5, val_per_class=4, test_per_class=4,
                         max_per_class=12, seed=0)

    def trained(seed: int) -> dict[str, torch.Tensor]:
        method = build_method_for(source, splits, seed)
        cpu = torch.device("cpu")
        loader = make_loader(source, splits.train, batch_size=16, train=True, augment="crop",
                             seed=seed, device=cpu)
        val = make_loader(source, splits.val, batch_size=64, train=False, device=cpu)
        config = TrainConfig(epochs=1, optim=OptimConfig(lr=0.05), seed=seed,
                             schedule=ScheduleConfig(kind="cosine"))
        train(method, loader, val, config, device=cpu)
        return method.state_dict()

    first, again, other = trained(0), trained(0), trained(1)
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first["queue.keys"], other["queue.keys"])


def build_method_for(source, splits, seed: int) -> ParametricContrastive:
    from pipeline.methods import build_method

    options = {"queue_size": 16, "projection_dim": 8, "key_augment": "crop_flip"}
    method = build_method("paco", backbone="resnet20", in_channels=source.channels,
                          class_counts=splits.class_counts.tolist(), options=options, seed=seed)
    assert isinstance(method, ParametricContrastive)
    return method
