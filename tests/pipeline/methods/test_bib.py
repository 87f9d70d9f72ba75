"""BIB / MBIB: Eq. 7, 9, 11 against loop transcriptions, gradient paths, the method interface."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.errors import PipelineError
from pipeline.methods.bib import (
    BalancedInformationBottleneck,
    BIBOptions,
    MBIBOptions,
    MixtureOfBalancedInformationBottlenecks,
)
from pipeline.methods.bib_loss import (
    bib_loss,
    class_temperatures,
    class_weights,
    mbib_loss,
    variational_self_distillation,
    weighted_balanced_softmax_cross_entropy,
)
from pipeline.methods.options import parse_options
from pipeline.models import build_backbone, seeded_initialisation

COUNTS = [60, 25, 11, 6, 3, 2]
NUM_CLASSES = len(COUNTS)
Rows = list[list[float]]


# ---- direct transcriptions of the paper, in plain Python --------------------------------------


def weights_by_hand(counts: list[int], m: float) -> list[float]:
    """Eq. 7: w_i = K (1/d_i)^m / sum_j (1/d_j)^m, with frequencies d_i = n_i / N."""
    total = sum(counts)
    frequencies = [n / total for n in counts]
    denominator = sum((1 / d) ** m for d in frequencies)
    return [len(counts) * (1 / d) ** m / denominator for d in frequencies]


def temperatures_by_hand(counts: list[int], gamma: float) -> list[float]:
    """Sec. 3.2: T_i = (n_max / n_i)^gamma."""
    return [(max(counts) / n) ** gamma for n in counts]


def softmax_by_hand(row: list[float]) -> list[float]:
    """softmax of one row of logits."""
    exps = [math.exp(x) for x in row]
    return [e / sum(exps) for e in exps]


def bsc_loss_by_hand(logits: Rows, labels: list[int], counts: list[int], m: float) -> float:
    """Eq. 4-7 as Appendix J reduces them: sum_i w_{y_i} l_i / sum_i w_{y_i}."""
    weights = weights_by_hand(counts, m)
    weighted_sum, weight_sum = 0.0, 0.0
    for row, label in zip(logits, labels, strict=True):
        numerator = counts[label] * math.exp(row[label])
        denominator = sum(n * math.exp(x) for n, x in zip(counts, row, strict=True))
        weighted_sum += weights[label] * -math.log(numerator / denominator)
        weight_sum += weights[label]
    return weighted_sum / weight_sum


def vsd_loss_by_hand(v_logits: Rows, z_logits: Rows, counts: list[int], gamma: float) -> float:
    """Eq. 8 with q(y_i|v) = e^{f_i/T_i} / sum_j e^{f_j/T_j}, averaged over the batch."""
    temperatures = temperatures_by_hand(counts, gamma)
    total = 0.0
    for v_row, z_row in zip(v_logits, z_logits, strict=True):
        q_v = softmax_by_hand([f / t for f, t in zip(v_row, temperatures, strict=True)])
        q_z = softmax_by_hand([g / t for g, t in zip(z_row, temperatures, strict=True)])
        total += sum(p * (math.log(p) - math.log(q)) for p, q in zip(q_v, q_z, strict=True))
    return total / len(v_logits)


def bib_by_hand(
    v_logits: Rows,
    z_logits: Rows,
    labels: list[int],
    counts: list[int],
    *,
    beta: float,
    gamma: float,
    m: float,
) -> float:
    """Eq. 9: Loss_1 + Loss_2 + beta Loss_3."""
    return (
        bsc_loss_by_hand(v_logits, labels, counts, m)
        + bsc_loss_by_hand(z_logits, labels, counts, m)
        + beta * vsd_loss_by_hand(v_logits, z_logits, counts, gamma)
    )


def mbib_by_hand(
    v1: Rows,
    v2: Rows,
    v3: Rows,
    z: Rows,
    labels: list[int],
    counts: list[int],
    *,
    a: float,
    b: float,
    beta: float,
    gamma: float,
    m: float,
) -> float:
    """Eq. 11: a BIB(v1, z) + b BIB(v2, z) + BIB(v3, z)."""
    hyper = {"beta": beta, "gamma": gamma, "m": m}
    return (
        a * bib_by_hand(v1, z, labels, counts, **hyper)
        + b * bib_by_hand(v2, z, labels, counts, **hyper)
        + bib_by_hand(v3, z, labels, counts, **hyper)
    )


# ---- helpers ----------------------------------------------------------------------------------


def random_logits(generator: torch.Generator, batch: int = 12) -> torch.Tensor:
    return torch.randn(batch, NUM_CLASSES, generator=generator, dtype=torch.float64) * 3


def random_labels(generator: torch.Generator, batch: int = 12) -> torch.Tensor:
    return torch.randint(0, NUM_CLASSES, (batch,), generator=generator)


def class_tensors(gamma: float, m: float) -> dict[str, torch.Tensor]:
    counts = torch.tensor(COUNTS)
    return {
        "log_prior": counts.double().log(),
        "weights": class_weights(counts, m),
        "temperatures": class_temperatures(counts, gamma),
    }


def build(
    method_type: type[BalancedInformationBottleneck] = BalancedInformationBottleneck,
    seed: int = 0,
    **options: float,
) -> BalancedInformationBottleneck:
    with seeded_initialisation(seed):
        backbone = build_backbone("resnet20", num_classes=NUM_CLASSES, in_channels=1)
        return method_type(backbone, torch.tensor(COUNTS), method_type.Options(**options))


def batch(size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size, 1, 8, 8, generator=generator)
    return images, random_labels(generator, size), torch.arange(size)


def random_stages(seed: int = 0, size: int = 8) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(size, width, generator=generator, requires_grad=True) for width in (16, 32, 64)
    ]


# ---- the losses against the equations ---------------------------------------------------------


@pytest.mark.parametrize("m", [0.0, 0.1, 0.7])
def test_class_weights_follow_eq7_and_sum_to_k(m: float) -> None:
    weights = class_weights(torch.tensor(COUNTS), m)
    assert weights.sum().item() == pytest.approx(NUM_CLASSES, rel=1e-6)
    assert weights.tolist() == pytest.approx(weights_by_hand(COUNTS, m), rel=1e-6)


def test_class_weights_grow_towards_the_tail() -> None:
    weights = class_weights(torch.tensor(COUNTS), 0.1)
    assert bool((weights[1:] > weights[:-1]).all())


@pytest.mark.parametrize("gamma", [0.0, 0.5])
def test_class_temperatures_follow_sec_3_2(gamma: float) -> None:
    temperatures = class_temperatures(torch.tensor(COUNTS), gamma)
    assert temperatures.tolist() == pytest.approx(temperatures_by_hand(COUNTS, gamma), rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    ("beta", "gamma", "m"), [(5.0, 0.0, 0.1), (2.0, 0.5, 0.1), (1.0, 0.5, 0.0)]
)
def test_bib_loss_matches_eq9(seed: int, beta: float, gamma: float, m: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    v_logits, z_logits = random_logits(generator), random_logits(generator)
    labels = random_labels(generator)
    loss = bib_loss(v_logits, z_logits, labels, beta=beta, **class_tensors(gamma, m))
    expected = bib_by_hand(
        v_logits.tolist(), z_logits.tolist(), labels.tolist(), COUNTS, beta=beta, gamma=gamma, m=m
    )
    # The weights and temperatures are float32 buffers, hence the tolerance.
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("a", "b", "gamma"), [(0.1, 0.3, 0.0), (0.4, 0.2, 0.5)])
def test_mbib_loss_matches_eq11(seed: int, a: float, b: float, gamma: float) -> None:
    generator = torch.Generator().manual_seed(seed)
    v1, v2, v3, z = (random_logits(generator) for _ in range(4))
    labels = random_labels(generator)
    loss = mbib_loss([v1, v2, v3], [a, b, 1.0], z, labels, beta=3.0, **class_tensors(gamma, 0.1))
    expected = mbib_by_hand(
        v1.tolist(),
        v2.tolist(),
        v3.tolist(),
        z.tolist(),
        labels.tolist(),
        COUNTS,
        a=a,
        b=b,
        beta=3.0,
        gamma=gamma,
        m=0.1,
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_mbib_loss_refuses_mismatched_exits() -> None:
    logits = torch.zeros(2, NUM_CLASSES)
    with pytest.raises(ValueError, match="one weight per exit"):
        mbib_loss(
            [logits],
            [0.1, 1.0],
            logits,
            torch.zeros(2, dtype=torch.long),
            beta=1.0,
            **class_tensors(0.0, 0.1),
        )


def test_temperatures_divide_logit_columns_not_target_classes() -> None:
    """With T_c per column, adding the same constant times T_c to every column of both
    teacher and student leaves each softmax (and the KL) unchanged only if T_c divides
    column c; a per-target-class temperature would not have this invariance."""
    generator = torch.Generator().manual_seed(0)
    teacher, student = random_logits(generator), random_logits(generator)
    temperatures = class_temperatures(torch.tensor(COUNTS), 0.5).double()
    shift = 2.5 * temperatures
    base = variational_self_distillation(teacher, student, temperatures)
    shifted = variational_self_distillation(teacher + shift, student - shift, temperatures)
    assert shifted.item() == pytest.approx(base.item(), rel=1e-9)
    scaled = variational_self_distillation(
        teacher * temperatures, student * temperatures, temperatures
    )
    plain = variational_self_distillation(teacher, student, torch.ones(NUM_CLASSES))
    assert scaled.item() == pytest.approx(plain.item(), rel=1e-9)


# ---- gradient paths ---------------------------------------------------------------------------


def test_self_distillation_teacher_is_detached() -> None:
    generator = torch.Generator().manual_seed(1)
    teacher = random_logits(generator).requires_grad_()
    student = random_logits(generator).requires_grad_()
    variational_self_distillation(teacher, student, torch.ones(NUM_CLASSES)).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_bib_gradient_on_f_comes_from_its_bsc_loss_alone() -> None:
    generator = torch.Generator().manual_seed(2)
    v_logits = random_logits(generator).requires_grad_()
    z_logits, labels = random_logits(generator), random_labels(generator)
    tensors = class_tensors(0.5, 0.1)
    (full,) = torch.autograd.grad(
        bib_loss(v_logits, z_logits, labels, beta=5.0, **tensors), v_logits
    )
    bsc = weighted_balanced_softmax_cross_entropy(
        v_logits, labels, tensors["log_prior"], tensors["weights"]
    )
    (alone,) = torch.autograd.grad(bsc, v_logits)
    assert torch.allclose(full, alone, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "method_type", [BalancedInformationBottleneck, MixtureOfBalancedInformationBottlenecks]
)
def test_distillation_gives_no_gradient_to_the_observation_classifiers(
    method_type: type[BalancedInformationBottleneck],
) -> None:
    """beta changes the gradients of g and z but not those of f, h, u (their q is the teacher)."""
    stages = random_stages()
    labels = random_labels(torch.Generator().manual_seed(3), 8)
    gradients = []
    for beta in (0.0, 5.0):
        method = build(method_type, beta=beta)
        method.loss_from_stages(stages, labels).loss.backward()
        gradients.append(
            {name: p.grad.clone() for name, p in method.named_parameters() if p.grad is not None}
        )
    without, with_distillation = gradients
    observation_heads = [n for n in without if n.startswith(("backbone.fc", "exit_heads"))]
    assert len(observation_heads) == (2 if method_type is BalancedInformationBottleneck else 6)
    for name in observation_heads:
        assert torch.equal(without[name], with_distillation[name]), name
    assert not torch.equal(
        without["bottleneck_head.weight"], with_distillation["bottleneck_head.weight"]
    )


def test_bib_has_no_exit_heads_and_no_gradient_to_v1_v2() -> None:
    method = build()
    assert len(method.exit_heads) == 0
    stages = random_stages()
    loss = method.loss_from_stages(stages, random_labels(torch.Generator().manual_seed(0), 8)).loss
    grad_v1, grad_v2, grad_v3 = torch.autograd.grad(loss, stages, allow_unused=True)
    assert grad_v1 is None and grad_v2 is None
    assert grad_v3 is not None and grad_v3.abs().sum() > 0


def test_mbib_builds_and_trains_only_the_weighted_exits() -> None:
    method = build(MixtureOfBalancedInformationBottlenecks, a=0.0)
    assert set(method.exit_heads) == {"v2"}
    stages = random_stages()
    loss = method.loss_from_stages(stages, random_labels(torch.Generator().manual_seed(0), 8)).loss
    grad_v1, grad_v2, _ = torch.autograd.grad(loss, stages, allow_unused=True)
    assert grad_v1 is None
    assert grad_v2 is not None and grad_v2.abs().sum() > 0


@pytest.mark.parametrize(
    ("method_type", "a", "b"),
    [
        (BalancedInformationBottleneck, 0.0, 0.0),
        (MixtureOfBalancedInformationBottlenecks, 0.1, 0.3),
    ],
)
def test_method_loss_wires_the_heads_into_eq11(
    method_type: type[BalancedInformationBottleneck], a: float, b: float
) -> None:
    method = build(method_type, beta=2.0, gamma=0.5)
    stages = random_stages(seed=4)
    labels = random_labels(torch.Generator().manual_seed(4), 8)
    output = method.loss_from_stages(stages, labels)
    with torch.no_grad():
        v3_logits = method.backbone.fc(stages[2])
        z_logits = method.bottleneck_head(method.bottleneck(stages[2]))
        exit_logits = [
            method.exit_heads[name](stage) if name in method.exit_heads else v3_logits
            for name, stage in zip(("v1", "v2"), stages[:2], strict=True)
        ]
    expected = mbib_by_hand(
        exit_logits[0].tolist(),
        exit_logits[1].tolist(),
        v3_logits.tolist(),
        z_logits.tolist(),
        labels.tolist(),
        COUNTS,
        a=a,
        b=b,
        beta=2.0,
        gamma=0.5,
        m=0.1,
    )
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)
    assert torch.allclose(output.logits, (v3_logits + z_logits) / 2)


# ---- the method interface ---------------------------------------------------------------------


def test_options_defaults_and_parsing() -> None:
    assert (BIBOptions().a, BIBOptions().b) == (0.0, 0.0)
    assert (MBIBOptions().a, MBIBOptions().b) == (0.1, 0.3)
    assert (MBIBOptions().beta, MBIBOptions().gamma, MBIBOptions().m) == (5.0, 0.0, 0.1)
    parsed = parse_options(MBIBOptions, {"beta": 2, "z_dim": 32}, "mbib")
    assert parsed == MBIBOptions(beta=2.0, z_dim=32)
    with pytest.raises(PipelineError, match="MBIBOptions.gama is not an option"):
        parse_options(MBIBOptions, {"gama": 0.5}, "mbib")


@pytest.mark.parametrize("key", ["a", "b", "beta", "z_dim"])
def test_negative_options_are_refused(key: str) -> None:
    with pytest.raises(PipelineError, match=f"BIBOptions.{key} must be >= 0"):
        build(**{key: -1 if key == "z_dim" else -0.5})


def test_a_class_without_images_is_refused() -> None:
    backbone = build_backbone("resnet20", num_classes=3, in_channels=1)
    with pytest.raises(PipelineError, match="no training images"):
        BalancedInformationBottleneck(backbone, torch.tensor([5, 0, 1]), BIBOptions())


@pytest.mark.parametrize(("z_dim", "width"), [(0, 64), (24, 24)])
def test_embed_shapes_and_ensemble_prediction(z_dim: int, width: int) -> None:
    method = build(MixtureOfBalancedInformationBottlenecks, z_dim=z_dim).eval()
    images, _, _ = batch(size=5)
    with torch.no_grad():
        embedding = method.embed(images)
        v1, v2, v3 = method.backbone.forward_stages(images)
        ensemble = (method.backbone.fc(v3) + method.bottleneck_head(method.bottleneck(v3))) / 2
        prediction = method.predict(images)
    assert embedding.features.shape == (5, 64)
    assert embedding.logits.shape == (5, NUM_CLASSES)
    assert {k: tuple(t.shape) for k, t in embedding.extra.items()} == {
        "z": (5, width),
        "v1": (5, 16),
        "v2": (5, 32),
    }
    assert torch.equal(embedding.features, v3)
    assert torch.equal(embedding.extra["v1"], v1) and torch.equal(embedding.extra["v2"], v2)
    assert torch.allclose(embedding.logits, ensemble)
    assert torch.equal(prediction, embedding.logits)


def one_sgd_step(method: BalancedInformationBottleneck) -> float:
    optimizer = torch.optim.SGD(method.parameter_groups(), lr=0.1, momentum=0.9)
    output = method.training_step(*batch())
    optimizer.zero_grad()
    output.loss.backward()
    optimizer.step()
    method.after_optimizer_step()
    return output.loss.item()


def test_training_step_and_sgd_step_are_deterministic() -> None:
    first, second = (
        build(MixtureOfBalancedInformationBottlenecks),
        build(MixtureOfBalancedInformationBottlenecks),
    )
    before = {name: t.clone() for name, t in first.state_dict().items()}
    first_loss, second_loss = one_sgd_step(first), one_sgd_step(second)
    assert math.isfinite(first_loss) and first_loss == second_loss
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    changed = [
        n
        for n in (
            "bottleneck.weight",
            "bottleneck_head.weight",
            "exit_heads.v1.weight",
            "exit_heads.v2.weight",
            "backbone.fc.weight",
        )
        if not torch.equal(before[n], first.state_dict()[n])
    ]
    assert len(changed) == 5


def test_state_dict_round_trips_the_method() -> None:
    trained = build(MixtureOfBalancedInformationBottlenecks, seed=0)
    one_sgd_step(trained)
    restored = build(MixtureOfBalancedInformationBottlenecks, seed=1)
    restored.load_state_dict(trained.state_dict())
    keys = set(trained.state_dict())
    assert {"bottleneck.weight", "bottleneck_head.bias", "exit_heads.v1.weight"} <= keys
    assert not {"weights", "temperatures", "log_prior", "class_counts"} & keys
    images, _, _ = batch(seed=5)
    trained.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(trained.predict(images), restored.predict(images))
    assert one_sgd_step(trained.train()) == one_sgd_step(restored.train())
