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
from pipeline.models import Backbone, build_backbone, seeded_initialisation

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


class PassThroughBackbone(Backbone):
    """A parameter-free "backbone" whose pooled feature of a ``[B, D, 1, 1]`` image is the
    image itself, so a test chooses every feature the losses see."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.feature_dim, self.num_classes = feature_dim, num_classes
        self.stage_dims = (feature_dim, feature_dim, feature_dim)
        self.fc = torch.nn.Linear(feature_dim, num_classes)

    def forward_stage_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, x, x]


# Eq. 5 with these numbers has integer lengths, so no rounding rule enters the hand version:
# |Z_c| = 2 + (16 - 2 x 3) n_c / 10 = 8, 5, 3.
PAPER_COUNTS = [6, 3, 1]
PAPER_K, PAPER_K_MIN, PAPER_DIM = 16, 2, 4


def unit(values: list[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def dot(left: list[float], right: list[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


def mlp_by_hand(layers: torch.nn.Sequential, x: list[float]) -> list[float]:
    """``Linear -> ReLU -> Linear`` written out (the MLP of Eq. 7, no batch norm)."""
    first, _, last = layers
    w1, b1 = first.weight.tolist(), first.bias.tolist()
    w2, b2 = last.weight.tolist(), last.bias.tolist()
    hidden = [max(0.0, dot(row, x) + bias) for row, bias in zip(w1, b1, strict=True)]
    return [dot(row, hidden) + bias for row, bias in zip(w2, b2, strict=True)]


def log_sum_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def paper_student_loss(
    student: GMLStudent,
    cls_view: torch.Tensor,
    query_view: torch.Tensor,
    key_views: list[torch.Tensor],
    label_batches: list[list[int]],
    index_batches: list[list[int]],
    exclude_own_for_tau: bool,
) -> float:
    """The paper's student loss of the *last* batch, from the equations alone.

    gamma L_cls (Eq. 6) + beta L_GML (Eq. 3, 4 on class queues of Eq. 5 lengths, filled
    first-in first-out with the teacher's key-view features of every batch so far, the last
    one included) + alpha L_KD (Hinton et al.: T^2 KL(p_t || p_s), p = softmax(s cos / T), on
    the classifier view). With ``exclude_own_for_tau``, Sec. 3.3's tau_g term adds a second
    L_GML without the query's own sample, weighted by beta as the official code weights it.
    """
    options = student.options
    total_count = sum(PAPER_COUNTS)
    prior = [n / total_count for n in PAPER_COUNTS]
    eta = [math.log(p) for p in prior]
    classes = range(len(PAPER_COUNTS))
    lengths = [
        PAPER_K_MIN + (PAPER_K - PAPER_K_MIN * len(PAPER_COUNTS)) * p for p in prior
    ]  # Eq. 5
    # class queues: (sample index, teacher feature), oldest first, at most |Z_c| entries
    queues: dict[int, list[tuple[int, list[float]]]] = {c: [] for c in classes}
    for keys, labels, indices in zip(key_views, label_batches, index_batches, strict=True):
        for row, label, sample in zip(keys.flatten(1).tolist(), labels, indices, strict=True):
            queues[label].append((sample, row))
            queues[label] = queues[label][-round(lengths[label]):]
    labels, indices = label_batches[-1], index_batches[-1]
    tau_s, tau_g, temperature = 1.0 / options.scale, options.tau_g, options.kd_temperature
    teacher_scale = student.teacher.options.scale  # 1 / tau_s of the teacher (30 for both)
    student_w = [unit(w) for w in student.classifier.weight.tolist()]
    teacher_w = [unit(w) for w in student.teacher.classifier.weight.tolist()]
    # Pass-through backbones: the student's and the teacher's features are the views.
    cls_rows, query_rows = cls_view.flatten(1).tolist(), query_view.flatten(1).tolist()

    def gml_of(query: list[float], label: int, sample: int, exclude_own: bool) -> float:
        z_x = unit(mlp_by_hand(student.projector, query))
        terms = []
        for c in classes:
            centres = [unit(mlp_by_hand(student.key_encoder, row))
                       for owner, row in queues[c] if not (exclude_own and owner == sample)]
            s_xc = sum(math.exp(dot(z_x, z) / tau_g) for z in centres) / len(centres)  # Eq. 3
            terms.append(math.log(s_xc) + eta[c])
        return -(terms[label] - log_sum_exp(terms))  # Eq. 4

    cls_loss = gml_loss_sum = tau_loss_sum = kd_loss = 0.0
    for x, query, label, sample in zip(cls_rows, query_rows, labels, indices, strict=True):
        m_x = unit(x)
        cosines = [dot(m_x, m_c) for m_c in student_w]
        logits = [cos / tau_s + eta[c] for c, cos in enumerate(cosines)]
        cls_loss += -(logits[label] - log_sum_exp(logits))  # Eq. 6
        gml_loss_sum += gml_of(query, label, sample, exclude_own=False)
        if exclude_own_for_tau:
            tau_loss_sum += gml_of(query, label, sample, exclude_own=True)
        student_scaled = [cos / tau_s / temperature for cos in cosines]
        teacher_scaled = [dot(m_x, m_c) * teacher_scale / temperature for m_c in teacher_w]
        p_s = [math.exp(v - log_sum_exp(student_scaled)) for v in student_scaled]
        p_t = [math.exp(v - log_sum_exp(teacher_scaled)) for v in teacher_scaled]
        kd_loss += temperature**2 * sum(t * math.log(t / s) for t, s in zip(p_t, p_s, strict=True))
    size = len(labels)
    return (
        options.gamma * cls_loss / size
        + options.beta * (gml_loss_sum + tau_loss_sum) / size
        + options.alpha_kd * kd_loss / size
    )


@pytest.mark.parametrize("learn_tau", [False, True])
def test_student_total_loss_is_the_papers_equations_by_hand(learn_tau: bool) -> None:
    generator = torch.Generator().manual_seed(3)

    def draw(size: int) -> torch.Tensor:
        return torch.randn(size, PAPER_DIM, 1, 1, generator=generator, dtype=torch.float64)

    student = make_paper_student(
        gamma=0.7, beta=1.3, alpha_kd=0.4, kd_temperature=3.0, learn_tau=learn_tau
    )
    # The first batch overfills class 2's queue (3 slots), so first-in first-out matters.
    label_batches = [[0, 2, 1, 2, 2, 0, 2], [2, 0, 1, 2, 1]]
    index_batches = [[10, 11, 12, 13, 14, 15, 16], [13, 17, 12, 18, 19]]
    views = [(draw(len(labels)), draw(len(labels)), draw(len(labels)))
             for labels in label_batches]
    for (cls_view, query_view, key_view), labels, indices in zip(
        views, label_batches, index_batches, strict=True
    ):
        loss = student.training_step(
            cls_view, torch.tensor(labels), torch.tensor(indices), query_view, key_view
        ).loss
    expected = paper_student_loss(
        student,
        views[-1][0],
        views[-1][1],
        [key_view for _, _, key_view in views],
        label_batches,
        index_batches,
        exclude_own_for_tau=learn_tau,
    )
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def make_paper_student(**options: object) -> GMLStudent:
    """A student and teacher on pass-through backbones (features = the ``[B, 4, 1, 1]`` images)."""
    counts = torch.tensor(PAPER_COUNTS)
    settings = {"queue_size": PAPER_K, "k_min": PAPER_K_MIN, "tau_g": 0.5,
                "projector_dims": (PAPER_DIM, 5, 3), "mlp_batchnorm": False, **options}
    with seeded_initialisation(0):
        teacher = GMLTeacher(PassThroughBackbone(PAPER_DIM, 3), counts, GMLTeacher.Options())
        return GMLStudent(
            PassThroughBackbone(PAPER_DIM, 3), counts, GMLStudent.Options(**settings),
            teacher=teacher,
        ).double()


def test_each_view_reaches_only_its_own_terms() -> None:
    """Official moco/builder.py: the classifier view feeds L_cls and both sides of KD, the
    query view the student's projector, the key view the teacher's queued features."""
    generator = torch.Generator().manual_seed(5)
    labels, index = torch.tensor([0, 1, 2, 0, 1]), torch.arange(5)

    def draw() -> torch.Tensor:
        return torch.randn(5, PAPER_DIM, 1, 1, generator=generator, dtype=torch.float64)

    cls_view, query_view, key_view = draw(), draw(), draw()

    def terms(cls: torch.Tensor, query: torch.Tensor, key: torch.Tensor) -> tuple[float, ...]:
        student = make_paper_student()
        teacher = student.teacher_view(cls, key)
        student.enqueue(teacher.key_features, labels, index)
        found = student.loss_terms(cls, labels, index, teacher.logits, query)
        return found.classification.item(), found.gml.item(), found.distillation.item()

    base = terms(cls_view, query_view, key_view)
    new_cls, new_query, new_key = (terms(draw(), query_view, key_view),
                                   terms(cls_view, draw(), key_view),
                                   terms(cls_view, query_view, draw()))
    assert new_cls[0] != base[0] and new_cls[1] == base[1] and new_cls[2] != base[2]
    assert new_query[0] == base[0] and new_query[1] != base[1] and new_query[2] == base[2]
    assert new_key[0] == base[0] and new_key[1] != base[1] and new_key[2] == base[2]
    teacher = make_paper_student().teacher_view(cls_view, key_view)
    alone = make_paper_student().teacher.embed(cls_view)
    assert torch.equal(teacher.logits, alone.logits)  # KD target: the classifier view
    assert torch.equal(teacher.key_features, key_view.flatten(1))  # queued: the key view


def test_views_default_to_two_draws_with_the_training_augmentation() -> None:
    assert make_student().view_augmentations() == (None, None)
    assert make_student(view_augment="simclr").view_augmentations() == ("simclr", "simclr")
    assert make_student(views="shared").view_augmentations() == ()
    student = make_paper_student()
    images = torch.randn(3, PAPER_DIM, 1, 1, dtype=torch.float64)
    labels, index = torch.tensor([0, 1, 2]), torch.arange(3)
    # The engine calls forward(images, labels, index, *views): the views arrive in order.
    by_forward = student(images, labels, index, images + 1, images + 2).loss
    by_step = make_paper_student().training_step(images, labels, index, images + 1, images + 2)
    assert by_forward.item() == pytest.approx(by_step.loss.item(), rel=1e-12)


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
        student.enqueue(student.teacher_view(images).key_features, labels, index)
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


def test_enqueue_before_the_loss_by_default() -> None:
    # Official moco/builder.py enqueues the key view's teacher features, then computes the loss.
    images, labels, index = batch()
    for enqueue_first in (True, False):
        student = make_student(enqueue_first=enqueue_first)
        first_step = student.training_step(images, labels, index).loss
        assert student.queue.filled.sum() > 0
        fresh = make_student(enqueue_first=enqueue_first)
        terms = fresh.loss_terms(images, labels, index, fresh.teacher_view(images).logits)
        # Queued first, the batch's own keys already give L_GML on the very first step.
        assert (first_step.item() > terms.total(fresh.options).item()) == enqueue_first
    assert make_student().options.enqueue_first
    student = make_student()
    sgd_step(student, seed=0)
    teacher_features = student.teacher_view(images).key_features
    sizes = student.queue.sizes
    expected_filled = torch.minimum(torch.bincount(labels, minlength=C), sizes)
    assert torch.equal(student.queue.filled, expected_filled)
    slots = student.queue.filled_slots()
    stored, stored_class = student.queue.features[slots], student.queue.slot_class[slots]
    for label in range(C):
        latest = teacher_features[labels == label][-int(sizes[label]) :]
        for row in latest:
            assert bool((stored[stored_class == label] == row).all(dim=1).any())


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
    terms = student.loss_terms(images, labels, index, student.teacher_view(images).logits)
    assert terms.gml.item() == 0.0
    without_norm = make_student(mlp_batchnorm=False)
    sgd_step(without_norm, seed=0)
    terms = without_norm.loss_terms(
        images, labels, index, without_norm.teacher_view(images).logits
    )
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
        ({"views": "both"}, "GMLStudentOptions.views must be one of 'independent', 'shared'"),
        ({"view_augment": "autoaug"}, "GMLStudentOptions.view_augment must be one of 'train'"),
        ({"views": "shared", "view_augment": "simclr"}, r"view_augment needs views: independent .*got 'simclr'"),
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
