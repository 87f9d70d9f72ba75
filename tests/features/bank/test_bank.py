"""Tests of the HDF5 feature bank: round trip, atomicity, byte identity, validation, fuzzing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.bank import SCHEMA_VERSION, Bank, BankMeta, BankWriter
from features.errors import FeaturesError

NUM_CLASSES = 3
FEATURE_DIM = 4


def make_meta(**overrides: object) -> BankMeta:
    fields: dict[str, object] = dict(
        method="ce",
        backbone="resnet32",
        dataset="digits_lt",
        num_classes=NUM_CLASSES,
        feature_dim=FEATURE_DIM,
        seed=7,
        params_digest="a" * 64,
        checkpoint_sha256="b" * 64,
        class_counts=np.array([50, 10, 2], dtype=np.int64),
        class_names=("zero", "one", "två"),
        tailbank_version="0.1.0",
    )
    fields.update(overrides)
    return BankMeta(**fields)  # type: ignore[arg-type]


def make_split(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "features": rng.normal(size=(rows, FEATURE_DIM)).astype(np.float32),
        "labels": rng.integers(0, NUM_CLASSES, size=rows),
        "index": np.arange(rows, dtype=np.int64) + 1000 * seed,
        "logits": rng.normal(size=(rows, NUM_CLASSES)).astype(np.float32),
        "extra_z": rng.normal(size=(rows, 2)).astype(np.float32),
    }


def write_bank(path: Path, blocks: int = 3, chunk_bytes: int = 64) -> dict[str, list[dict]]:
    """Writes train in `blocks` appends (with logits and an extra view) and val/test in one."""
    written: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    train = [make_split(7, seed=block) for block in range(blocks)]
    counts = np.bincount(concat(train, "labels"), minlength=NUM_CLASSES).astype(np.int64)
    with BankWriter(path, make_meta(class_counts=counts), chunk_bytes=chunk_bytes) as writer:
        for data in train:
            writer.append(
                "train",
                features=data["features"],
                labels=data["labels"],
                index=data["index"],
                logits=data["logits"],
                extra={"z": data["extra_z"]},
            )
            written["train"].append(data)
        for seed, split in ((10, "val"), (11, "test")):
            data = make_split(5, seed=seed)
            writer.append(
                split, features=data["features"], labels=data["labels"], index=data["index"]
            )
            written[split].append(data)
    return written


def concat(blocks: list[dict], key: str) -> np.ndarray:
    return np.concatenate([block[key] for block in blocks])


def test_train_labels_that_disagree_with_class_counts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    data = make_split(7, seed=0)
    with BankWriter(path, make_meta(class_counts=np.array([50, 10, 2]))) as writer:
        writer.append("train", features=data["features"], labels=data["labels"],
                      index=data["index"])
    with Bank.open(path) as bank, pytest.raises(
        FeaturesError, match=r"ce.h5: class_counts says class 0 has 50 training rows but "
                             r"train/labels has \d+; re-dump the bank"):
        bank.labels("train")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    written = write_bank(path)
    counts = np.bincount(concat(written["train"], "labels"), minlength=NUM_CLASSES)
    with Bank.open(path) as bank:
        assert bank.meta == make_meta(class_counts=counts.astype(np.int64))
        assert bank.meta.class_names == ("zero", "one", "två")
        assert bank.meta.class_counts.dtype == np.int64
        assert bank.splits == ("train", "val", "test")
        assert bank.size("train") == 21 and bank.size("val") == 5
        features = bank.features("train")
        assert features.dtype == np.float32 and features.shape == (21, FEATURE_DIM)
        np.testing.assert_array_equal(features, concat(written["train"], "features"))
        np.testing.assert_array_equal(bank.labels("train"), concat(written["train"], "labels"))
        assert bank.labels("train").dtype == np.int64
        np.testing.assert_array_equal(bank.index("train"), concat(written["train"], "index"))
        np.testing.assert_array_equal(bank.logits("train"), concat(written["train"], "logits"))
        assert bank.extra_names("train") == ("z",)
        np.testing.assert_array_equal(bank.extra("train", "z"), concat(written["train"], "extra_z"))
        assert bank.logits("val") is None
        assert bank.extra_names("test") == ()
        np.testing.assert_array_equal(bank.features("test"), written["test"][0]["features"])


def test_round_trip_without_class_names(tmp_path: Path) -> None:
    path = tmp_path / "bank.h5"
    with BankWriter(path, make_meta(class_names=None)) as writer:
        writer.append("val", features=np.zeros((2, FEATURE_DIM)), labels=[0, 2], index=[4, 5])
    with Bank.open(path) as bank:
        assert bank.meta.class_names is None
        assert bank.splits == ("val",)
        np.testing.assert_array_equal(bank.index("val"), [4, 5])


def test_file_layout_follows_schema(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    write_bank(path, chunk_bytes=1 << 20)
    with h5py.File(path, "r") as file:
        assert file.attrs["schema_version"] == SCHEMA_VERSION
        assert set(file.attrs) == {
            "schema_version",
            "method",
            "backbone",
            "dataset",
            "num_classes",
            "feature_dim",
            "seed",
            "params_digest",
            "checkpoint_sha256",
            "augment",
            "tailbank_version",
        }
        features = file["train/features"]
        assert features.maxshape == (None, FEATURE_DIM)
        assert features.chunks == ((1 << 20) // (4 * FEATURE_DIM), FEATURE_DIM)
        assert file["class_counts"].dtype == np.int64
        assert h5py.check_string_dtype(file["class_names"].dtype).encoding == "utf-8"


def test_same_appends_give_same_bytes(tmp_path: Path) -> None:
    write_bank(tmp_path / "first.h5")
    write_bank(tmp_path / "second.h5")
    assert (tmp_path / "first.h5").read_bytes() == (tmp_path / "second.h5").read_bytes()


def test_exception_inside_with_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    with pytest.raises(RuntimeError, match="interrupted"):
        with BankWriter(path, make_meta()) as writer:
            writer.append("val", features=np.ones((2, FEATURE_DIM)), labels=[0, 1], index=[0, 1])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_exception_inside_with_keeps_old_bank(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    write_bank(path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with BankWriter(path, make_meta(method="other")) as writer:
            writer.append("val", features=np.ones((2, FEATURE_DIM)), labels=[0, 1], index=[0, 1])
            raise RuntimeError("interrupted")
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_inconsistent_append_is_rejected_and_cleaned_up(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    with pytest.raises(FeaturesError, match="logits"):
        with BankWriter(path, make_meta()) as writer:
            data = make_split(3, seed=0)
            writer.append(
                "train",
                features=data["features"],
                labels=data["labels"],
                index=data["index"],
                logits=data["logits"],
            )
            writer.append(
                "train", features=data["features"], labels=data["labels"], index=data["index"]
            )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"features": np.ones((2, FEATURE_DIM + 1))}, "features"),
        ({"labels": np.array([0, NUM_CLASSES])}, "labels"),
        ({"labels": np.array([0.0, 1.0])}, "labels"),
        ({"index": np.arange(3)}, "differ in length"),
        ({"features": np.full((2, FEATURE_DIM), np.nan)}, "NaN"),
        ({"logits": np.ones((2, NUM_CLASSES + 1))}, "logits"),
    ],
)
def test_append_rejects_bad_arrays(tmp_path: Path, arrays: dict, message: str) -> None:
    good = {
        "features": np.ones((2, FEATURE_DIM)),
        "labels": np.array([0, 1]),
        "index": np.array([0, 1]),
    }
    with pytest.raises(FeaturesError, match=message):
        with BankWriter(tmp_path / "ce.h5", make_meta()) as writer:
            writer.append("train", **(good | arrays))
    assert list(tmp_path.iterdir()) == []


def test_unknown_split_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FeaturesError, match="holdout"):
        with BankWriter(tmp_path / "ce.h5", make_meta()) as writer:
            writer.append("holdout", features=np.ones((1, FEATURE_DIM)), labels=[0], index=[0])


def test_bad_meta_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(FeaturesError, match="class_counts"):
        BankWriter(tmp_path / "ce.h5", make_meta(class_counts=np.array([1, 2])))


def test_iter_chunks_equals_full_read(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    write_bank(path)
    with Bank.open(path) as bank:
        full_reads = {
            "features": bank.features("train"),
            "labels": bank.labels("train"),
            "index": bank.index("train"),
            "logits": bank.logits("train"),
            "extra/z": bank.extra("train", "z"),
        }
        for field, full in full_reads.items():
            for rows in (None, 1, 4, 100):
                blocks = list(bank.iter_chunks("train", field, rows=rows))
                np.testing.assert_array_equal(np.concatenate(blocks), full)
        assert len(list(bank.iter_chunks("train", rows=4))) == 6


def _rewrite(path: Path, edit: Callable[[h5py.File], object]) -> None:
    with h5py.File(path, "r+") as file:
        edit(file)


INVALID_EDITS = {
    "no schema_version": lambda f: f.attrs.__delitem__("schema_version"),
    "wrong schema_version": lambda f: f.attrs.__setitem__("schema_version", 99),
    "missing attribute": lambda f: f.attrs.__delitem__("params_digest"),
    "attribute of wrong type": lambda f: f.attrs.__setitem__("num_classes", "three"),
    "variable-length string attribute": lambda f: f.attrs.__setitem__("method", "ce"),
    "missing class_counts": lambda f: f.__delitem__("class_counts"),
    "missing labels": lambda f: f["val"].__delitem__("labels"),
    "features of wrong dtype": lambda f: (
        f["val"].__delitem__("features"),
        f["val"].create_dataset("features", data=np.ones((5, FEATURE_DIM), np.float64)),
    ),
    "features of wrong width": lambda f: (
        f["val"].__delitem__("features"),
        f["val"].create_dataset("features", data=np.ones((5, FEATURE_DIM + 1), np.float32)),
    ),
    "logits of wrong width": lambda f: (
        f["val"].create_dataset("logits", data=np.ones((5, NUM_CLASSES + 2), np.float32)),
    ),
    "class_counts of wrong length": lambda f: (
        f.__delitem__("class_counts"),
        f.create_dataset("class_counts", data=np.ones(NUM_CLASSES + 1, np.int64)),
    ),
    "inconsistent lengths": lambda f: f["val/index"].resize(4, axis=0),
    "non-finite features": lambda f: f["train/features"].__setitem__((slice(19, 20),), np.nan),
    "labels out of range": lambda f: f["test/labels"].__setitem__(0, NUM_CLASSES),
}


@pytest.mark.parametrize("case", sorted(INVALID_EDITS))
def test_invalid_bank_raises_features_error_naming_file(tmp_path: Path, case: str) -> None:
    path = tmp_path / "ce.h5"
    write_bank(path)
    _rewrite(path, INVALID_EDITS[case])
    with pytest.raises(FeaturesError) as error, Bank.open(path) as bank:
        # values are checked as they are read: whole splits and chunk by chunk alike
        for split in bank.splits:
            bank.features(split), bank.labels(split)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FeaturesError, match="no such bank") as error:
        Bank.open(tmp_path / "absent.h5")
    assert str(tmp_path / "absent.h5") in str(error.value)


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    path.write_text("method: ce\n")
    with pytest.raises(FeaturesError, match="not a readable HDF5") as error:
        Bank.open(path)
    assert str(path) in str(error.value)


def test_truncated(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    write_bank(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FeaturesError, match=str(path)):
        Bank.open(path)


def test_foreign_hdf5_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("x", data=np.arange(3))
    with pytest.raises(FeaturesError, match="schema_version") as error:
        Bank.open(path)
    assert str(path) in str(error.value)


def test_reads_after_close_raise_features_error(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    write_bank(path)
    bank = Bank.open(path)
    bank.close()
    with pytest.raises(FeaturesError):
        bank.features("train")


def test_unknown_split_or_view_on_read(tmp_path: Path) -> None:
    path = tmp_path / "ce.h5"
    write_bank(path)
    with Bank.open(path) as bank:
        with pytest.raises(FeaturesError, match="holdout"):
            bank.features("holdout")
        with pytest.raises(FeaturesError, match="nope"):
            bank.extra("train", "nope")


@pytest.fixture(scope="module")
def valid_bank_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "ce.h5"
    write_bank(path)
    return path.read_bytes()


def _read_everything(path: Path) -> None:
    with Bank.open(path) as bank:
        for split in bank.splits:
            bank.features(split)
            bank.labels(split)
            bank.index(split)
            bank.logits(split)
            for name in bank.extra_names(split):
                bank.extra(split, name)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    truncate_to=st.one_of(st.none(), st.floats(0.0, 1.0, exclude_max=True)),
    flips=st.lists(
        st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.integers(0, 255)), max_size=4
    ),
)
def test_corrupted_bank_only_raises_features_error(
    tmp_path: Path,
    valid_bank_bytes: bytes,
    truncate_to: float | None,
    flips: list[tuple[float, int]],
) -> None:
    data = bytearray(valid_bank_bytes)
    for position, value in flips:
        data[int(position * len(data))] = value
    if truncate_to is not None:
        data = data[: int(truncate_to * len(data))]
    path = tmp_path / "corrupt.h5"
    path.write_bytes(bytes(data))
    try:
        _read_everything(path)
    except FeaturesError as error:
        assert str(path) in str(error)
        assert "\n" not in str(error)


@pytest.mark.parametrize("field", ["features", "labels"])
def test_chunked_reads_refuse_bad_values_too(tmp_path: Path, field: str) -> None:
    path = tmp_path / "ce.h5"
    write_bank(path)
    _rewrite(path, INVALID_EDITS["non-finite features" if field == "features" else
                                 "labels out of range"])
    split = "train" if field == "features" else "test"
    with Bank.open(path) as bank, pytest.raises(FeaturesError, match=f"{split}/{field}"):
        list(bank.iter_chunks(split, field, rows=4))
