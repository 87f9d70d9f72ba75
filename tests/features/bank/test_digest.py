"""The per-chunk digests of a bank: the digest itself, and damage found by whole and windowed
reads (a flipped bit in the middle of a chunk, swapped row blocks, swapped chunks)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
import xxhash

from features.bank import Bank, BankMeta, BankWriter
from features.bank.chunkio import (
    ChunkSource,
    read_verified,
    stored_chunks,
    stored_chunks_one_by_one,
)
from features.bank.digest import block_digest
from features.errors import FeaturesError

ROWS, DIM, CLASSES = 200, 16, 5
CHUNK_ROWS = 64  # 4 KiB chunks of 16 float32: chunks at rows 0, 64, 128 and a partial 192


def xorshift_bytes(size: int) -> bytes:
    """The input of LLVM's XXH3 unit test (xorshift64 from 1, the low byte of each state)."""
    state, out = 1, bytearray()
    for _ in range(size):
        state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
        state ^= state >> 7
        state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
        out.append(state & 0xFF)
    return bytes(out)


# XXH3_64bits (seed 0) of the first n bytes of `xorshift_bytes`, as published with LLVM's
# implementation (llvm/unittests/Support/xxhashTest.cpp). The lengths reach each of XXH3's
# paths: empty, 1-3, 4-8, 9-16, 17-128, 129-240 bytes, and long inputs over 1 and 2 blocks.
XXH3_VECTORS = {
    0: 0x2D06800538D394C2, 1: 0xD0D496E05C553485, 3: 0x6EA2D59ACA5C3778,
    4: 0xBF65290914E80242, 7: 0x9DA8B60540644F5A, 8: 0xABC1413DA6CD0209, 9: 0x8BC89400BFED51F6,
    16: 0x7E46916754D7C9B8, 17: 0xED4BE912BA5F836D, 128: 0x06A146EE9A2DA378,
    129: 0xBC7138129BF065DA, 403: 0xCEFEB3FFA532AD8C, 2048: 0x330CE110CBB79EAE,
    2049: 0x3BA6AFA0249FEF9A, 2243: 0x0979F786A24EDDE7,
}


@pytest.mark.parametrize("size", sorted(XXH3_VECTORS))
def test_digest_is_xxh3_64_by_its_published_vectors(size: int) -> None:
    data = np.frombuffer(xorshift_bytes(size), dtype=np.uint8)
    assert block_digest(data) == XXH3_VECTORS[size]


@pytest.mark.parametrize("size", [0, 1, 7, 8, 12, 1000, 4096])
def test_digest_matches_its_definition(size: int) -> None:
    # D = XXH3_64bits(bytes(block)); the vectors above pin the library to XXH3 itself
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
    assert block_digest(data) == xxhash.xxh3_64_intdigest(data.tobytes())


def test_digest_reads_any_dtype_as_its_bytes_in_row_order() -> None:
    block = np.random.default_rng(2).standard_normal((7, 3)).astype(np.float32)
    as_bytes = np.frombuffer(block.tobytes(), dtype=np.uint8)
    assert block_digest(block) == block_digest(as_bytes)
    # a strided view is digested as the bytes of its rows, in order
    assert block_digest(block[::2]) == block_digest(np.ascontiguousarray(block[::2]))


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


def force_hdf5_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunk read by `H5Dread_chunk`, as on a platform without preadv."""
    monkeypatch.setattr(ChunkSource, "of", classmethod(lambda cls, dataset: None))


@pytest.fixture(params=["preadv", "hdf5"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Reads through `ChunkSource` (preadv at the indexed offsets) or through HDF5."""
    if request.param == "hdf5":
        force_hdf5_reads(monkeypatch)
    return str(request.param)


def expected_rows(read: str) -> list[np.ndarray]:
    """What each of `READS` returns from the undamaged bank, as a list of blocks."""
    features = rows_data()["features"]
    return {
        "whole": [features],
        "window inside the chunk": [features[70:71]],
        "window across chunks": [features[30:100]],
        "blocks": [features[start : start + 50] for start in range(0, ROWS, 50)],
        "gather": [features[[150, 99, 3]]],
    }[read]


def assert_reads_back(path: Path, read: str) -> None:
    with Bank.open(path) as bank:
        got = READS[read](bank)
    blocks = got if read == "blocks" else [got]
    for got_block, expected_block in zip(blocks, expected_rows(read), strict=True):
        np.testing.assert_array_equal(got_block, expected_block)


@pytest.mark.parametrize("read", sorted(READS))
def test_both_read_paths_return_the_written_rows(
    bank_path: Path, read_path: str, read: str
) -> None:
    assert_reads_back(bank_path, read)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("read", sorted(READS))
def test_damaged_feature_chunk_is_refused(bank_path: Path, damage: str, read: str) -> None:
    DAMAGE[damage](bank_path)
    assert_refused(bank_path, READS[read], "train/features")


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("read", sorted(READS))
def test_damaged_feature_chunk_is_refused_through_hdf5(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str, read: str
) -> None:
    force_hdf5_reads(monkeypatch)
    test_damaged_feature_chunk_is_refused(bank_path, damage, read)


def test_chunk_source_has_the_offset_of_every_chunk(bank_path: Path) -> None:
    with h5py.File(bank_path, "r") as file:
        source = ChunkSource.of(file["train/features"])
        assert source is not None and source.chunk_bytes == CHUNK_ROWS * ROW_BYTES
        assert source.descriptor == file.id.get_vfd_handle()
        assert not source.offsets.flags.writeable
    assert source.offsets.tolist() == [
        chunk_offset(bank_path, "features", first) for first in range(0, ROWS, CHUNK_ROWS)
    ]


def test_a_chunk_of_another_size_in_the_index_gets_no_offset(tmp_path: Path) -> None:
    path = tmp_path / "short.h5"
    with h5py.File(path, "w") as file:
        dataset = file.create_dataset("rows", shape=(8, 2), chunks=(4, 2), dtype="<f4")
        dataset.id.write_direct_chunk((0, 0), np.zeros((4, 2), "<f4").tobytes())
        dataset.id.write_direct_chunk((4, 0), np.zeros((2, 2), "<f4").tobytes())  # half a chunk
    with h5py.File(path, "r") as file:
        source = ChunkSource.of(file["rows"])
        assert source is not None and source.offsets[0] >= 0 and source.offsets[1] == -1


def test_the_index_walk_and_the_lookups_one_by_one_agree(bank_path: Path) -> None:
    with h5py.File(bank_path, "r") as file:
        for field in ("features", "labels", "index"):
            dataset_id = file[f"train/{field}"].id
            walked = [(i.chunk_offset, i.byte_offset, i.size) for i in stored_chunks(dataset_id)]
            looked_up = [(i.chunk_offset, i.byte_offset, i.size)
                         for i in stored_chunks_one_by_one(dataset_id)]
            assert walked == looked_up and len(walked) == dataset_id.get_num_chunks()


def test_a_file_not_on_the_posix_driver_is_read_through_hdf5(bank_path: Path) -> None:
    # the in-memory driver: the descriptor would not be the file's
    with h5py.File(bank_path, "r", driver="core") as file:
        dataset = file["train/features"]
        assert ChunkSource.of(dataset) is None
        digests = file["digests/train/features"][...]
        rows = read_verified(dataset, digests, 0, ROWS, lambda first, last: FeaturesError(""))
    np.testing.assert_array_equal(rows, rows_data()["features"])


def test_without_preadv_a_bank_reads_through_hdf5(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "preadv")
    with h5py.File(bank_path, "r") as file:
        assert ChunkSource.of(file["train/features"]) is None
    assert_reads_back(bank_path, "whole")


def test_a_file_with_a_user_block_is_read_through_hdf5(tmp_path: Path) -> None:
    # HDF5 before 1.14.4 gives chunk addresses that leave the user block out
    path = tmp_path / "user_block.h5"
    with h5py.File(path, "w", userblock_size=512) as file:
        file.create_dataset("rows", data=np.zeros((8, 2), "<f4"), chunks=(4, 2))
    with h5py.File(path, "r") as file:
        assert ChunkSource.of(file["rows"]) is None


def test_chunk_source_reports_a_chunk_it_cannot_read_whole(bank_path: Path) -> None:
    size = bank_path.stat().st_size
    with h5py.File(bank_path, "r") as file:
        source = ChunkSource.of(file["train/features"])
        assert source is not None
        into = np.empty(source.chunk_bytes, np.uint8)
        assert source.read(1, into)
        # no chunk in the index, and a chunk that would run past the end of the file
        missing = dataclasses.replace(source, offsets=np.array([-1, size - 10]))
        assert not missing.read(0, into) and not missing.read(1, into)


@pytest.mark.parametrize("stale", ["missing", "another chunk's"])
def test_a_stale_offset_is_read_again_through_hdf5(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch, stale: str
) -> None:
    # offsets that no longer match the file (say, its descriptor was closed and reused)
    # must not make a sound bank look damaged
    made = ChunkSource.of

    def with_a_stale_offset(cls: type[ChunkSource], dataset: h5py.Dataset) -> ChunkSource | None:
        source = made(dataset)
        if source is None or dataset.name != "/train/features":
            return source
        offsets = source.offsets.copy()
        offsets[2] = -1 if stale == "missing" else offsets[1]
        return dataclasses.replace(source, offsets=offsets)

    monkeypatch.setattr(ChunkSource, "of", classmethod(with_a_stale_offset))
    assert_reads_back(bank_path, "whole")
    assert_reads_back(bank_path, "gather")  # rows of chunks 0, 1 and 2


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
    assert_older_schema_refused(bank_path, 1)


def test_a_schema_2_bank_is_refused_with_the_way_out(bank_path: Path) -> None:
    # schema 2 had the same layout with another digest: its tables would all mismatch
    assert_older_schema_refused(bank_path, 2)


def assert_older_schema_refused(bank_path: Path, version: int) -> None:
    with h5py.File(bank_path, "r+") as file:
        file.attrs["schema_version"] = np.int64(version)
    with pytest.raises(
        FeaturesError, match=rf"schema_version {version} but .* reads 3 .* re-run `tailbank dump`"
    ):
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
