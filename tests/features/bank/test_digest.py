"""The per-chunk digests of a bank: the digest itself, and damage found by whole and windowed
reads (a flipped bit in the middle of a chunk, swapped row blocks, swapped chunks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from features.bank import Bank, BankMeta, BankWriter
from features.bank.digest import LENGTH_WEIGHT, _weights, block_digest
from features.errors import FeaturesError

ROWS, DIM, CLASSES = 200, 16, 5
CHUNK_ROWS = 64  # 4 KiB chunks of 16 float32: chunks at rows 0, 64, 128 and a partial 192


def reference_digest(data: bytes) -> int:
    """The digest as the module docstring defines it, in plain Python integers."""
    padded = data + b"\0" * (-len(data) % 8)
    words = [int.from_bytes(padded[i : i + 8], "little") for i in range(0, len(padded), 8)]
    weights = _weights(len(words)) if words else []
    total = len(data) * LENGTH_WEIGHT + sum(w * int(c) for w, c in zip(words, weights, strict=True))
    return total % 2**64


@pytest.mark.parametrize("size", [0, 1, 7, 8, 12, 1000, 4096])
def test_digest_matches_its_definition(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    assert block_digest(data) == reference_digest(data.tobytes())


def test_every_single_bit_flip_changes_the_digest() -> None:
    block = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)  # 80 bytes
    digest = block_digest(block)
    raw = block.view(np.uint8).reshape(-1)
    for byte in range(raw.size):
        for bit in range(8):
            flipped = raw.copy()
            flipped[byte] ^= 1 << bit
            assert block_digest(flipped) != digest, (byte, bit)


def test_swapped_rows_and_trailing_zeros_change_the_digest() -> None:
    block = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
    swapped = block[[0, 5, 2, 3, 4, 1, 6, 7]]
    assert block_digest(swapped) != block_digest(block)
    # a block and its mirror image, whose position-linear (Fletcher-like) sums can agree
    assert block_digest(block[::-1]) != block_digest(block)
    assert block_digest(np.zeros(8, np.uint8)) != block_digest(np.zeros(16, np.uint8))


def rows_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {
        "features": rng.standard_normal((ROWS, DIM)).astype(np.float32),
        "labels": rng.integers(0, CLASSES, ROWS),
        "index": np.arange(ROWS, dtype=np.int64),
    }


@pytest.fixture()
def bank_path(tmp_path: Path) -> Path:
    data = rows_data()
    meta = BankMeta(
        method="ce", backbone="b", dataset="d", num_classes=CLASSES, feature_dim=DIM, seed=0,
        params_digest="p", checkpoint_sha256="c",
        class_counts=np.bincount(data["labels"], minlength=CLASSES).astype(np.int64),
    )
    path = tmp_path / "bank.h5"
    with BankWriter(path, meta, chunk_bytes=CHUNK_ROWS * DIM * 4) as writer:
        for start in range(0, ROWS, 50):  # appends that do not line up with the chunks
            writer.append("train", **{k: v[start : start + 50] for k, v in data.items()})
    return path


def chunk_offset(path: Path, field: str, first_row: int) -> int:
    """Byte offset in the file of the chunk of train/<field> that starts at `first_row`."""
    with h5py.File(path, "r") as file:
        dataset = file[f"train/{field}"]
        coord = (first_row,) + (0,) * (dataset.ndim - 1)
        return int(dataset.id.get_chunk_info_by_coord(coord).byte_offset)


def flip_bit(path: Path, offset: int, bit: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def swap(path: Path, first: int, second: int, length: int) -> None:
    data = bytearray(path.read_bytes())
    a, b = bytes(data[first : first + length]), bytes(data[second : second + length])
    data[first : first + length], data[second : second + length] = b, a
    path.write_bytes(bytes(data))


ROW_BYTES = DIM * 4


def flip_mid_chunk(path: Path) -> None:
    # a bit of row 96, the middle of the chunk of rows 64-127
    flip_bit(path, chunk_offset(path, "features", 64) + 32 * ROW_BYTES + 5)


def swap_row_blocks(path: Path) -> None:
    # rows 72-79 and 104-111 of the same chunk trade places
    base = chunk_offset(path, "features", 64)
    swap(path, base + 8 * ROW_BYTES, base + 40 * ROW_BYTES, 8 * ROW_BYTES)


def swap_chunks(path: Path) -> None:
    # the chunks of rows 64-127 and 128-191 trade places on disk
    chunk = CHUNK_ROWS * ROW_BYTES
    swap(path, chunk_offset(path, "features", 64), chunk_offset(path, "features", 128), chunk)


DAMAGE = {"flipped bit": flip_mid_chunk, "swapped row blocks": swap_row_blocks,
          "swapped chunks": swap_chunks}
READS: dict[str, Callable[[Bank], object]] = {
    "whole": lambda bank: bank.features("train"),
    "window inside the chunk": lambda bank: bank.read_rows("train", "features", 70, 71),
    "window across chunks": lambda bank: bank.read_rows("train", "features", 30, 100),
    "blocks": lambda bank: list(bank.iter_chunks("train", "features", rows=50)),
    "gather": lambda bank: bank.gather("train", "features", np.array([150, 99, 3])),
}


def assert_refused(path: Path, read: Callable[[Bank], object], dataset: str) -> None:
    with Bank.open(path) as bank, pytest.raises(FeaturesError) as error:
        read(bank)
    message = str(error.value)
    assert "\n" not in message
    assert f"{path}:{dataset}" in message and "re-run `tailbank dump`" in message


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("read", sorted(READS))
def test_damaged_feature_chunk_is_refused(bank_path: Path, damage: str, read: str) -> None:
    DAMAGE[damage](bank_path)
    assert_refused(bank_path, READS[read], "train/features")


def test_windows_away_from_the_damage_still_read(bank_path: Path) -> None:
    flip_mid_chunk(bank_path)
    expected = rows_data()["features"]
    with Bank.open(bank_path) as bank:
        np.testing.assert_array_equal(bank.read_rows("train", "features", 0, 64), expected[:64])
        np.testing.assert_array_equal(bank.read_rows("train", "features", 130, 200),
                                      expected[130:])
        np.testing.assert_array_equal(bank.labels("train"), rows_data()["labels"])


def test_flipped_bit_in_labels_is_refused(bank_path: Path) -> None:
    # labels are int64: 512 rows per 4 KiB chunk, so one chunk of 200 rows; flip bit 40 of
    # row 100, which leaves the label in range
    flip_bit(bank_path, chunk_offset(bank_path, "labels", 0) + 100 * 8 + 5, bit=0)
    assert_refused(bank_path, lambda bank: bank.labels("train"), "train/labels")
    assert_refused(bank_path, lambda bank: bank.read_rows("train", "labels", 10, 11),
                   "train/labels")


def test_damaged_digest_table_is_refused(bank_path: Path) -> None:
    with h5py.File(bank_path, "r") as file:
        table = file["digests/train/features"]
        offset = int(table.id.get_chunk_info(0).byte_offset)
    flip_bit(bank_path, offset + 9)
    with pytest.raises(FeaturesError) as error:
        Bank.open(bank_path)
    assert str(bank_path) in str(error.value) and "\n" not in str(error.value)


def test_missing_digest_table_is_refused(bank_path: Path) -> None:
    with h5py.File(bank_path, "r+") as file:
        del file["digests/train/index"]
    with pytest.raises(FeaturesError, match=r"train/index: its digest table .* re-run"):
        Bank.open(bank_path)


def test_a_schema_1_bank_is_refused_with_the_way_out(bank_path: Path) -> None:
    with h5py.File(bank_path, "r+") as file:
        file.attrs["schema_version"] = np.int64(1)
    with pytest.raises(FeaturesError, match=r"schema_version 1 .* re-run `tailbank dump`"):
        Bank.open(bank_path)


def test_chunks_are_written_whole_with_one_digest_each(bank_path: Path) -> None:
    with h5py.File(bank_path, "r") as file:
        features = file["train/features"]
        assert features.chunks == (CHUNK_ROWS, DIM) and not features.fletcher32
        assert file["digests/train/features"].shape == (4,)
        assert file["digests/train/features"].fletcher32
        digests = file["digests/train/features"][...]
    expected = rows_data()["features"]
    for chunk, first in enumerate(range(0, ROWS, CHUNK_ROWS)):
        assert int(digests[chunk]) == block_digest(expected[first : first + CHUNK_ROWS])
