"""GML teacher and student: Eq. 5 queue sizes, class-wise enqueue, Eq. 4/6/10 and KD against
loop transcriptions, gradient routing, the frozen teacher, state_dict round trips."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import PipelineError
from pipeline.methods.gml_loss import class_log_likelihoods, distillation_kl, gml_loss
from pipeline.methods.gml_queue import EMPTY_SLOT, ClassWiseQueue, class_queue_sizes
from pipeline.methods.gml_student import GMLStudent
from pipeline.methods.gml_teacher import GMLTeacher, log_label_prior
from pipeline.methods.options import parse_options
from pipeline.models import build_backbone, seeded_initialisation

COUNTS = [30, 14, 7, 3, 2]
C = len(COUNTS)
SMALL = {"queue_size": 40, "projector_dims": (64, 16, 8)}


def make_teacher(seed: int = 0, **options: object) -> GMLTeacher:
    with seeded_initialisation(seed):
        backbone = build_backbone("resnet20", num_classes=C, in_channels=1)
        return GMLTeacher(backbone, torch.tensor(COUNTS), GMLTeacher.Options(**options))


def make_student(seed: int = 1, teacher: GMLTeacher | None = None, **options: object) -> GMLStudent:
    teacher = make_teacher() if teacher is None else teacher
    with seeded_initialisation(seed):
        backbone = build_backbone("resnet20", num_classes=C, in_channels=1)
        return GMLStudent(
            backbone,
            torch.tensor(COUNTS),
            GMLStudent.Options(**{**SMALL, **options}),
            teacher=teacher,
        )


def batch(size: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 1, 8, 8, generator=generator)
    labels = torch.randint(0, C, (size,), generator=generator)
    index = torch.randperm(60, generator=generator)[:size]
    return images, labels, index


def sgd_step(method: GMLStudent | GMLTeacher, seed: int) -> torch.Tensor:
    optimizer = torch.optim.SGD(method.parameter_groups(), lr=0.05, momentum=0.9)
    images, labels, index = batch(seed=seed)
    output = method.training_step(images, labels, index)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    optimizer.step()
    method.after_optimizer_step()
    return output.loss.detach()


# ---------------------------------------------------------------- Eq. 5: queue lengths


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    counts=st.lists(st.integers(1, 5000), min_size=1, max_size=40),
    minimum=st.integers(1, 5),
    spare=st.integers(0, 5000),
)
def test_queue_sizes_follow_eq5(counts: list[int], minimum: int, spare: int) -> None:
    total = minimum * len(counts) + spare
    sizes = class_queue_sizes(torch.tensor(counts), total, minimum)
    assert int(sizes.sum()) <= total
    assert int(sizes.sum()) == total  # Hamilton rounding wastes no slot
    assert bool((sizes >= minimum).all())
    for size, count in zip(sizes.tolist(), counts, strict=True):
        exact = minimum + (total - minimum * len(counts)) * count / sum(counts)
        assert abs(size - exact) < 1.0
    # Proportional: a more frequent class never gets a shorter queue.
    for i, j in [(i, j) for i in range(len(counts)) for j in range(len(counts))]:
        if counts[i] > counts[j]:
            assert sizes[i] >= sizes[j]


def test_queue_sizes_worked_example() -> None:
    # K - k_m C = 30 shared as 30 n_c / 56 = 16.07, 7.5, 3.75, 1.61, 1.07:
    # floors 16, 7, 3, 1, 1 (28) and the 2 spare slots to the largest remainders (.75, .61).
    sizes = class_queue_sizes(torch.tensor(COUNTS), 40, 2)
    assert sizes.tolist() == [18, 9, 6, 4, 3]


def test_queue_sizes_refuse_too_small_a_queue() -> None:
    with pytest.raises(PipelineError, match=r"GMLStudentOptions.queue_size is below k_min x classes \(2 x 5\).*got 9"):
        class_queue_sizes(torch.tensor(COUNTS), 9, 2)
    with pytest.raises(PipelineError, match="GMLStudentOptions.k_min must be at least 1"):
        class_queue_sizes(torch.tensor(COUNTS), 40, 0)


# ---------------------------------------------------------------- class-wise queue


def test_enqueue_stays_inside_each_class_segment() -> None:
    sizes = torch.tensor([5, 3, 2, 4])
    queue = ClassWiseQueue(sizes, feature_dim=3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(25):
        labels = torch.randint(0, 4, (7,), generator=generator)
        # Each row carries its class (+1, so 0 means never written) in every column.
        tagged = (labels + 1).to(torch.float32)[:, None].expand(-1, 3)
        queue.enqueue(tagged, labels, torch.randint(0, 100, (7,), generator=generator))
        segment_of_slot = torch.repeat_interleave(torch.arange(4), sizes)
        written = queue.features[:, 0] != 0
        assert torch.equal(queue.features[written, 0], (segment_of_slot[written] + 1).float())
        assert bool((queue.features == queue.features[:, :1]).all())
        assert bool((queue.filled <= sizes).all())


def test_enqueue_is_fifo_per_class_and_keeps_the_latest_rows() -> None:
    sizes = torch.tensor([3, 2])
    queue = ClassWiseQueue(sizes, feature_dim=1)
    history: dict[int, list[float]] = {0: [], 1: []}
    value = 0.0
    generator = torch.Generator().manual_seed(1)
    for size in [1, 4, 2, 6, 3]:
        labels = torch.randint(0, 2, (size,), generator=generator)
        rows = torch.arange(value + 1, value + 1 + size)[:, None]
        value += size
        queue.enqueue(rows, labels, rows.flatten().long())
        for label, row in zip(labels.tolist(), rows.flatten().tolist(), strict=True):
            history[label].append(row)
        for label, start in ((0, 0), (1, 3)):
            expected = history[label][-int(sizes[label]) :]
            segment = queue.features[start : start + int(sizes[label]), 0]
            stored = [x for x in segment.tolist() if x != 0]
            assert sorted(stored) == sorted(expected)
            assert int(queue.filled[label]) == len(expected)
            assert int(queue.pointer[label]) == len(history[label]) % int(sizes[label])
            indices = queue.sample_index[start : start + int(sizes[label])].tolist()
            assert sorted(i for i in indices if i != EMPTY_SLOT) == sorted(int(x) for x in expected)


def test_filled_slots_mask_the_empty_ones() -> None:
    queue = ClassWiseQueue(torch.tensor([3, 2, 2]), feature_dim=2)
    assert queue.filled_slots().numel() == 0
    queue.enqueue(torch.ones(2, 2), torch.tensor([0, 2]), torch.tensor([4, 9]))
    assert queue.filled_slots().tolist() == [0, 5]
    assert queue.slot_class[queue.filled_slots()].tolist() == [0, 2]


# ---------------------------------------------------------------- Eq. 3, 4, 10 and KD


def gml_by_hand(
    query: torch.Tensor,
    keys: torch.Tensor,
    key_class: list[int],
    allowed: list[list[bool]],
    labels: list[int],
    prior: list[float],
    tau: float,
    alpha: float,
) -> float:
    """Eq. 10 literally, query by query and class by class (Eq. 4 when alpha = 1)."""
    losses = []
    for b, label in enumerate(labels):
        class_terms: dict[int, float] = {}
        for c in range(len(prior)):
            members = [k for k in range(len(key_class)) if key_class[k] == c and allowed[b][k]]
            if not members:
                continue
            mixture = sum(math.exp(float(query[b] @ keys[k]) / tau) for k in members)
            class_terms[c] = math.log(mixture / len(members)) + alpha * math.log(prior[c])
        if label not in class_terms:
            continue
        denominator = sum(math.exp(term) for term in class_terms.values())
        losses.append(-math.log(math.exp(class_terms[label]) / denominator))
    return sum(losses) / len(losses) if losses else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_gml_loss_matches_a_loop_over_eq10(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    batch_size, num_keys, num_classes = 7, 15, 4
    query = torch.nn.functional.normalize(
        torch.randn(batch_size, 6, generator=generator, dtype=torch.float64), dim=1
    )
    keys = torch.nn.functional.normalize(
        torch.randn(num_keys, 6, generator=generator, dtype=torch.float64), dim=1
    )
    # Class 3 has no key at all; random masking removes more (own-sample exclusion).
    key_class = torch.randint(0, 3, (num_keys,), generator=generator)
    mask = torch.rand(batch_size, num_keys, generator=generator) > 0.3
    labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
    prior = torch.rand(num_classes, generator=generator, dtype=torch.float64) + 0.05
    prior = prior / prior.sum()
    tau, alpha = [0.1, 0.07, 0.5][seed % 3], [1.0, 0.2, 0.0][seed % 3]
    loss = gml_loss(query @ keys.T / tau, key_class, mask, labels, prior.log(), alpha)
    expected = gml_by_hand(
        query, keys, key_class.tolist(), mask.tolist(), labels.tolist(), prior.tolist(), tau, alpha
    )
    assert loss.item() == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_class_log_likelihood_survives_a_tiny_temperature() -> None:
    # At tau = 0.005 similarities span 400 nats; a single shared max would underflow class 1.
    query = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    values = class_log_likelihoods(
        query @ keys.T / 0.005, torch.tensor([0, 1]), torch.ones(1, 2, dtype=torch.bool), 3
    )
    assert values[0, :2].tolist() == pytest.approx([200.0, -200.0])
    assert values[0, 2].item() == float("-inf")


def test_gml_loss_gradients_are_finite_with_empty_classes() -> None:
    similarity = torch.randn(4, 6, requires_grad=True)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0] = False  # a query with no key at all
    loss = gml_loss(
        similarity,
        torch.tensor([0, 0, 1, 1, 1, 0]),
        mask,
        torch.tensor([0, 1, 2, 1]),
        torch.zeros(3),
    )
    loss.backward()
    assert similarity.grad is not None and bool(torch.isfinite(similarity.grad).all())
    assert bool((similarity.grad[0] == 0).all())  # dropped from the mean
    assert bool((similarity.grad[2] == 0).all())  # its class 2 has no key


@pytest.mark.parametrize("seed", range(4))
def test_distillation_matches_a_loop_over_kl(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(5, 4, generator=generator, dtype=torch.float64) * 10
    teacher = torch.randn(5, 4, generator=generator, dtype=torch.float64) * 10
    temperature = 4.0
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        s_norm = sum(math.exp(v / temperature) for v in s_row)
        t_norm = sum(math.exp(v / temperature) for v in t_row)
        for s_value, t_value in zip(s_row, t_row, strict=True):
            p_t = math.exp(t_value / temperature) / t_norm
            p_s = math.exp(s_value / temperature) / s_norm
            total += p_t * math.log(p_t / p_s)
    expected = temperature**2 * total / 5
    assert distillation_kl(student, teacher, temperature).item() == pytest.approx(
        expected, rel=1e-10
    )


def test_teacher_loss_is_eq6_by_hand() -> None:
    teacher = make_teacher()
    images, labels, index = batch()
    loss = teacher.training_step(images, labels, index).loss
    features = teacher.pooled_features(images).detach().double()
    weight = teacher.classifier.weight.detach().double()
    total = 0.0
    for row, label in zip(features, labels.tolist(), strict=True):
        terms = []
        for c in range(C):
            cosine = float(row @ weight[c]) / float(row.norm() * weight[c].norm())
            terms.append(30.0 * cosine + math.log(COUNTS[c] / sum(COUNTS)))
        total += -(terms[label] - math.log(sum(math.exp(t) for t in terms)))
    assert loss.item() == pytest.approx(total / len(labels), rel=1e-5)


def test_teacher_predicts_scaled_cosine_without_the_prior() -> None:
    teacher = make_teacher().eval()
    images, _, _ = batch()
    logits = teacher.predict(images)
    assert float(logits.detach().abs().max()) <= 30.0 + 1e-4
    embedding = teacher.embed(images)
    assert torch.allclose(embedding.logits, logits)
    assert embedding.features.shape == (12, 64) and embedding.extra == {}
    assert torch.allclose(log_label_prior(torch.tensor(COUNTS), "x").exp().sum(), torch.tensor(1.0))


def test_teacher_optimises_everything_but_the_unused_linear_head() -> None:
    teacher = make_teacher()
    (group,) = teacher.parameter_groups()
    ids = {id(p) for p in group["params"]}
    assert id(teacher.classifier.weight) in ids
    assert not ids & {id(p) for p in teacher.backbone.fc.parameters()}
    before = teacher.classifier.weight.detach().clone()
    sgd_step(teacher, seed=0)
    assert not torch.equal(before, teacher.classifier.weight)


# ---------------------------------------------------------------- the student


def test_student_loss_terms_are_the_weighted_sum() -> None:
    student = make_student(gamma=0.5, beta=2.0, alpha_kd=0.3, learn_tau=True)
    sgd_step(student, seed=0)  # fill some slots first
    images, labels, index = batch(seed=1)
    terms = student.loss_terms(images, labels, index, student.teacher_view(images))
    assert terms.gml.item() > 0 and terms.gml_temperature.item() > 0
    assert terms.distillation.item() > 0
    expected = (
        0.5 * terms.classification
        + 2.0 * (terms.gml + terms.gml_temperature)
        + 0.3 * terms.distillation
    )
    assert torch.allclose(terms.total(student.options), expected)


def test_student_gml_term_is_eq4_on_its_own_queue() -> None:
    student = make_student(prior_weight=0.5)
    sgd_step(student, seed=0)
    student.eval()  # batch norm uses running statistics, so the MLPs can be replayed
    images, labels, index = batch(seed=1)
    with torch.no_grad():
        gml, _ = student.gml_terms(student.pooled_features(images), labels, index)
        query = student.query(student.pooled_features(images)).double()
        slots = student.queue.filled_slots()
        keys = torch.nn.functional.normalize(
            student.key_encoder(student.queue.features[slots]), dim=1
        ).double()
    allowed = [[True] * len(slots)] * len(labels)
    expected = gml_by_hand(
        query,
        keys,
        student.queue.slot_class[slots].tolist(),
        allowed,
        labels.tolist(),
        [n / sum(COUNTS) for n in COUNTS],
        0.1,
        0.5,
    )
    assert gml.item() == pytest.approx(expected, rel=1e-4)


def test_no_gradient_reaches_the_teacher() -> None:
    student = make_student(learn_tau=True)
    sgd_step(student, seed=0)
    images, labels, index = batch(seed=1)
    student.zero_grad(set_to_none=True)
    student.training_step(images, labels, index).loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in student.teacher.parameters())
    for module in (student.backbone, student.classifier, student.projector, student.key_encoder):
        assert any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())
    assert student.log_tau.grad is not None


def test_tau_is_trained_only_by_its_own_term() -> None:
    student = make_student(learn_tau=True)
    sgd_step(student, seed=0)
    images, labels, index = batch(seed=1)
    features = student.pooled_features(images)
    gml, gml_temperature = student.gml_terms(features, labels, index)
    others = [p for name, p in student.named_parameters() if name != "log_tau" and p.requires_grad]
    main_grads = torch.autograd.grad(gml, [student.log_tau, *others], allow_unused=True)
    assert main_grads[0] is None
    assert any(g is not None and bool(g.abs().sum() > 0) for g in main_grads[1:])
    tau_grads = torch.autograd.grad(gml_temperature, [student.log_tau, *others], allow_unused=True)
    assert tau_grads[0] is not None and tau_grads[0].item() != 0
    assert all(g is None for g in tau_grads[1:])


def test_tau_term_excludes_the_query_own_sample() -> None:
    student = make_student(learn_tau=True).eval()
    images, labels, index = batch(size=4, seed=2)
    labels = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        student.enqueue(student.teacher_view(images).features, labels, index)
        features = student.pooled_features(images)
        _, gml_temperature = student.gml_terms(features, labels, index)
        query = student.query(features).double()
        slots = student.queue.filled_slots()
        keys = torch.nn.functional.normalize(
            student.key_encoder(student.queue.features[slots]), dim=1
        ).double()
    slot_index = student.queue.sample_index[slots].tolist()
    allowed = [[k != i for k in slot_index] for i in index.tolist()]
    expected = gml_by_hand(
        query,
        keys,
        student.queue.slot_class[slots].tolist(),
        allowed,
        labels.tolist(),
        [n / sum(COUNTS) for n in COUNTS],
        0.1,
        1.0,
    )
    assert gml_temperature.item() == pytest.approx(expected, rel=1e-4)
    with torch.no_grad():
        gml, _ = student.gml_terms(features, labels, index)
    assert gml.item() != pytest.approx(gml_temperature.item(), rel=1e-3)


def test_teacher_is_unchanged_and_stays_in_eval_mode() -> None:
    student = make_student(learn_tau=True)
    before = {key: value.clone() for key, value in student.teacher.state_dict().items()}
    student.train()
    assert student.training and not student.teacher.training
    for seed in range(3):
        sgd_step(student, seed)
    for key, value in student.teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    group_ids = {id(p) for group in student.parameter_groups() for p in group["params"]}
    assert not group_ids & {id(p) for p in student.teacher.parameters()}
    assert not group_ids & {id(p) for p in student.backbone.fc.parameters()}


def test_tau_has_its_own_group_without_weight_decay() -> None:
    groups = make_student(learn_tau=True).parameter_groups()
    assert len(groups) == 2 and groups[1]["weight_decay"] == 0.0
    assert groups[1]["params"][0].shape == ()
    assert len(make_student().parameter_groups()) == 1


def test_enqueue_after_the_loss_by_default() -> None:
    student = make_student()
    images, labels, index = batch()
    terms_first_step = student.loss_terms(images, labels, index, student.teacher_view(images))
    assert terms_first_step.gml.item() == 0.0  # no key yet, and this batch is not queued yet
    sgd_step(student, seed=0)
    teacher_features = student.teacher_view(images).features
    sizes = student.queue.sizes
    expected_filled = torch.minimum(torch.bincount(labels, minlength=C), sizes)
    assert torch.equal(student.queue.filled, expected_filled)
    slots = student.queue.filled_slots()
    stored, stored_class = student.queue.features[slots], student.queue.slot_class[slots]
    for label in range(C):
        latest = teacher_features[labels == label][-int(sizes[label]) :]
        for row in latest:
            assert bool((stored[stored_class == label] == row).all(dim=1).any())

    eager = make_student(enqueue_first=True)
    assert sgd_step(eager, seed=0) != sgd_step(make_student(), seed=0)
    assert torch.equal(eager.queue.filled, expected_filled)


def test_one_engine_style_step_changes_the_student() -> None:
    student = make_student(learn_tau=True)
    weights = student.classifier.weight.detach().clone()
    for seed in range(3):
        loss = sgd_step(student, seed)
        assert torch.isfinite(loss)
    assert not torch.equal(weights, student.classifier.weight)
    assert student.tau_g.item() != pytest.approx(0.1)


def test_state_dict_round_trips_queue_and_continues_identically() -> None:
    student = make_student(learn_tau=True)
    for seed in range(3):
        sgd_step(student, seed)
    state = {key: value.clone() for key, value in student.state_dict().items()}
    assert {
        "queue.features",
        "queue.sample_index",
        "queue.pointer",
        "queue.filled",
        "log_tau",
    } <= set(state)
    restored = make_student(seed=7, teacher=make_teacher(seed=0), learn_tau=True)
    restored.load_state_dict(state)
    for key, value in restored.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert torch.equal(sgd_step(student, seed=5), sgd_step(restored, seed=5))
    assert torch.equal(student.queue.features, restored.queue.features)


def test_training_is_deterministic() -> None:
    first, second = make_student(learn_tau=True), make_student(learn_tau=True)
    for seed in range(2):
        assert torch.equal(sgd_step(first, seed), sgd_step(second, seed))


def test_embed_gives_features_cosine_logits_and_projection() -> None:
    student = make_student().eval()
    images, _, _ = batch()
    embedding = student.embed(images)
    assert embedding.features.shape == (12, 64)
    assert torch.allclose(embedding.logits, student.predict(images))
    projection = embedding.extra["projection"]
    assert projection.shape == (12, 8)
    assert torch.allclose(projection.norm(dim=1), torch.ones(12))


def test_a_single_sample_batch_skips_the_batch_normalised_gml_term() -> None:
    _, first_labels, _ = batch(seed=0)
    images, _, index = batch(size=1, seed=3)
    labels = first_labels[:1]  # a class that the first step queued
    student = make_student()
    sgd_step(student, seed=0)
    terms = student.loss_terms(images, labels, index, student.teacher_view(images))
    assert terms.gml.item() == 0.0
    without_norm = make_student(mlp_batchnorm=False)
    sgd_step(without_norm, seed=0)
    terms = without_norm.loss_terms(images, labels, index, without_norm.teacher_view(images))
    assert terms.gml.item() > 0.0


# ---------------------------------------------------------------- options and teacher checks


def test_options_parse_from_yaml_values() -> None:
    options = parse_options(
        GMLStudent.Options,
        {"projector_dims": [64, 32, 16], "tau_g": 1, "learn_tau": True},
        "gml_student",
    )
    assert options.projector_dims == (64, 32, 16) and options.tau_g == 1.0
    defaults = GMLStudent.Options()
    assert (
        defaults.queue_size,
        defaults.k_min,
        defaults.tau_g,
        defaults.projector_dims,
        defaults.scale,
        defaults.kd_temperature,
    ) == (4096, 2, 0.1, (64, 64, 32), 30.0, 4.0)
    assert (defaults.gamma, defaults.beta, defaults.alpha_kd) == (1.0, 1.0, 1.0)
    assert GMLStudent.needs_teacher and not GMLTeacher.needs_teacher
    assert parse_options(GMLTeacher.Options, None, "gml_teacher").scale == 30.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"projector_dims": (32, 16)}, r"projector_dims starts with 32 .* start it with 64"),
        ({"projector_dims": (64,)}, "two or more positive widths"),
        ({"tau_g": 0.0}, "GMLStudentOptions.tau_g must be > 0"),
        ({"beta": -1.0}, "GMLStudentOptions.beta must be >= 0"),
        ({"scale": 0.0}, "GMLStudentOptions.scale must be > 0"),
        ({"queue_size": 4}, "GMLStudentOptions.queue_size is below"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, object], message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        make_student(**options)


def test_a_teacher_of_other_classes_is_refused() -> None:
    backbone = build_backbone("resnet20", num_classes=C, in_channels=1)
    other_counts = torch.tensor([30, 14, 7, 3, 1])
    other = GMLTeacher(backbone, other_counts, GMLTeacher.Options())
    with pytest.raises(PipelineError, match="retrain gml_teacher"):
        make_student(teacher=other)
    with pytest.raises(PipelineError, match="teacher must be a trained pipeline Method"):
        make_student(teacher=torch.nn.Linear(2, 2))  # type: ignore[arg-type]
