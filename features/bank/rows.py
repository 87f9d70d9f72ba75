"""Feature rows held in memory or read from a bank split, so stage 2 fits a memory budget.

Stage 2 reads feature rows three ways: minibatches in a shuffled order (training),
consecutive blocks (scoring, column statistics, the kNN index and its queries) and subsets
or gathered rows (the rows a DLSA filter passes on, the seeded samples of the analysis).
`FeatureRows` offers those three over an array in memory (`ArrayRows`) and over a bank split
read chunk by chunk (`BankRows`). Both return the same tensors for the same request, so a
stage run with the whole bank in memory and one under a small budget write the same bytes.

To keep that promise, every block size that touches arithmetic (`MOMENT_ROWS` here, the eval
blocks of the callers) is a constant. The budget only sets how many rows a training window
gathers in one sweep over the file: it changes how often the file is read, never a value.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np
import torch

from features.arrays import float_matrix
from features.bank import Bank, position_vector
from features.errors import FeaturesError

# Rows per block of the column statistics: fixed, so the float64 sums add up in the same order
# whether the rows are in memory or read from a bank.
MOMENT_ROWS = 1024


class FeatureRows(ABC):
    """float32 [N, D] rows, returned as tensors on `device`.

    Attributes:
        num_rows: N.
        dim: D.
        device: Where `take`, `blocks` and `batches` put their tensors.
    """

    num_rows: int
    dim: int
    device: torch.device

    def __len__(self) -> int:
        return self.num_rows

    @abstractmethod
    def take(self, positions: torch.Tensor) -> torch.Tensor:
        """Rows at `positions`.

        Args:
            positions: int64 [B], positions in [0, N), any order, repeats allowed.

        Returns:
            float32 [B, D] on `device`.
        """

    @abstractmethod
    def subset(self, positions: np.ndarray) -> FeatureRows:
        """The rows at `positions` (int [M]) as rows of their own, in that order."""

    @abstractmethod
    def to(self, device: torch.device | str) -> FeatureRows:
        """The same rows, returned on another device."""

    @abstractmethod
    def batches(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive minibatches of `order`.

        Args:
            order: int64 [S], the positions of an epoch (a permutation, or a sample with
                repeats for class-balanced sampling).
            batch_size: Rows per batch; the last batch may be shorter.

        Yields:
            (positions int64 [b] on `device`, rows float32 [b, D] on `device`).
        """

    def blocks(self, rows: int) -> Iterator[torch.Tensor]:
        """Consecutive blocks of `rows` rows (the last may be shorter), float32 [r, D]."""
        if rows < 1:
            raise FeaturesError(f"blocks of {rows} rows: need at least 1")
        for start in range(0, self.num_rows, rows):
            stop = min(start + rows, self.num_rows)
            yield self.take(torch.arange(start, stop, dtype=torch.int64))

    def numpy_blocks(self, rows: int) -> Iterator[np.ndarray]:
        """`blocks` as float32 [r, D] NumPy arrays on the CPU, for libraries such as faiss."""
        for block in self.blocks(rows):
            yield block.detach().cpu().numpy()

    def take_numpy(self, positions: np.ndarray) -> np.ndarray:
        """`take` of NumPy positions (int [B], any order, repeats allowed), as float32 [B, D]
        NumPy rows on the CPU; a bank is read one run of chunks at a time (`Bank.gather`)."""
        picked = torch.from_numpy(position_vector(positions, "row positions"))
        return self.take(picked).detach().cpu().numpy()


class ArrayRows(FeatureRows):
    """Rows of a float32 tensor held in memory (on the CPU or an accelerator)."""

    def __init__(self, values: np.ndarray | torch.Tensor, name: str = "features") -> None:
        """Args:
        values: float [N, D]; a NumPy array is checked (finite, 2-D) and copied to float32.
        name: How errors name the rows.
        """
        if isinstance(values, torch.Tensor):
            tensor = values.to(torch.float32)
        else:
            tensor = torch.from_numpy(float_matrix(values, name))
        self.values = tensor
        self.num_rows, self.dim = int(tensor.shape[0]), int(tensor.shape[1])
        self.device = tensor.device

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        return self.values[positions.to(self.device)]

    def subset(self, positions: np.ndarray) -> ArrayRows:
        picked = position_vector(positions, "row positions")
        if len(picked) == self.num_rows and np.array_equal(picked, np.arange(self.num_rows)):
            return self  # all rows in order (the first DLSA filter): no copy of the bank
        return ArrayRows(self.values[torch.from_numpy(picked).to(self.device)])

    def to(self, device: torch.device | str) -> ArrayRows:
        return ArrayRows(self.values.to(device))

    def batches(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = order.to(self.device)
        for start in range(0, len(order), batch_size):
            positions = order[start : start + batch_size]
            yield positions, self.values[positions]

    def blocks(self, rows: int) -> Iterator[torch.Tensor]:
        if rows < 1:
            raise FeaturesError(f"blocks of {rows} rows: need at least 1")
        for start in range(0, self.num_rows, rows):
            yield self.values[start : start + rows]


class BankRows(FeatureRows):
    """Rows of a bank split read on demand; the bank must stay open while they are used.

    Memory: a training window holds max(window_rows, batch_size) rows, rounded down to whole
    batches, twice while it is gathered; scoring holds one block (4096 rows at most, a
    constant); reading holds one run of at most 16 HDF5 chunks (~16 MiB).
    """

    def __init__(
        self,
        bank: Bank,
        split: str,
        field: str = "features",
        *,
        window_rows: int,
        positions: np.ndarray | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        """Args:
        bank: An open bank.
        split: The split to read.
        field: `features`, `logits` or `extra/<name>`.
        window_rows: Most rows a training window gathers at once (>= 1).
        positions: int [M], the split's rows these rows are (all rows, in order, when None).
        device: Where returned tensors go.
        """
        shape = bank.shape(split, field)
        if len(shape) != 2:
            raise FeaturesError(f"{bank.path}:{split}/{field}: expected [N, D] rows, got {shape}")
        if window_rows < 1:
            raise FeaturesError(f"window_rows must be >= 1, got {window_rows}")
        self.bank, self.split, self.field = bank, split, field
        self.window_rows = window_rows
        self.positions = (
            None if positions is None else position_vector(positions, "row positions")
        )
        self.num_rows = shape[0] if self.positions is None else len(self.positions)
        self.dim = shape[1]
        self.device = torch.device(device)

    def take(self, positions: torch.Tensor) -> torch.Tensor:
        wanted = positions.detach().to("cpu").numpy().astype(np.int64, copy=False)
        if self.positions is not None:
            wanted = self.positions[wanted]
        rows = self.bank.gather(self.split, self.field, wanted).astype(np.float32, copy=False)
        return torch.from_numpy(rows).to(self.device)

    def subset(self, positions: np.ndarray) -> BankRows:
        picked = position_vector(positions, "row positions")
        parent = picked if self.positions is None else self.positions[picked]
        return BankRows(
            self.bank,
            self.split,
            self.field,
            window_rows=self.window_rows,
            positions=parent,
            device=self.device,
        )

    def to(self, device: torch.device | str) -> BankRows:
        return BankRows(
            self.bank,
            self.split,
            self.field,
            window_rows=self.window_rows,
            positions=self.positions,
            device=device,
        )

    def batches(
        self, order: torch.Tensor, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # a window is a whole number of batches, so the batches are those of the in-memory path
        window = max(1, self.window_rows // batch_size) * batch_size
        order = order.to(self.device)
        for start in range(0, len(order), window):
            positions = order[start : start + window]
            rows = self.take(positions)
            for offset in range(0, len(positions), batch_size):
                # a copy, not a view: a batch the caller still holds must not keep the whole
                # window alive while the next one is gathered
                batch = rows[offset : offset + batch_size].clone()
                yield positions[offset : offset + batch_size], batch
            del rows

    def blocks(self, rows: int) -> Iterator[torch.Tensor]:
        if self.positions is not None:
            yield from super().blocks(rows)
            return
        if rows < 1:
            raise FeaturesError(f"blocks of {rows} rows: need at least 1")
        for start in range(0, self.num_rows, rows):
            block = self.bank.read_rows(self.split, self.field, start, start + rows)
            yield torch.from_numpy(block.astype(np.float32, copy=False)).to(self.device)

    def numpy_blocks(self, rows: int) -> Iterator[np.ndarray]:
        if self.positions is not None:
            yield from super().numpy_blocks(rows)
            return
        # straight from the file: the blocks of a whole split need no round trip through torch
        for block in self.bank.iter_chunks(self.split, self.field, rows=rows):
            yield block.astype(np.float32, copy=False)


def as_rows(values: np.ndarray | FeatureRows, name: str, dim: int | None = None) -> FeatureRows:
    """Rows as given, or an array wrapped as `ArrayRows` after checking it.

    Args:
        values: float [N, D] array, or rows.
        name: How errors name them.
        dim: Required D (any when None).
    """
    rows = (
        values
        if isinstance(values, FeatureRows)
        else ArrayRows(float_matrix(values, name, dim), name)
    )
    if dim is not None and rows.dim != dim:
        raise FeaturesError(f"{name}: expected {dim} columns, got {rows.dim}")
    return rows


def column_moments(rows: FeatureRows) -> tuple[torch.Tensor, torch.Tensor]:
    """Column mean and standard deviation (1/N), in two float64 passes of `MOMENT_ROWS` blocks.

    Args:
        rows: N >= 1 rows of width D.

    Returns:
        (mean float64 [D], std float64 [D]) on `rows.device`.
    """
    if rows.num_rows == 0:
        raise FeaturesError("column statistics of zero rows")
    total = torch.zeros(rows.dim, dtype=torch.float64, device=rows.device)
    for block in rows.blocks(MOMENT_ROWS):
        total += block.to(torch.float64).sum(dim=0)
    mean = total / rows.num_rows
    squares = torch.zeros_like(total)
    for block in rows.blocks(MOMENT_ROWS):
        squares += (block.to(torch.float64) - mean).square().sum(dim=0)
    return mean, (squares / rows.num_rows).sqrt()


def load_rows(
    bank: Bank, datasets: list[tuple[str, str]], budget_bytes: int | None
) -> dict[tuple[str, str], FeatureRows]:
    """Rows of several (split, field) datasets of a bank: all in memory when they fit the
    budget together, otherwise each read on demand in windows of a quarter of the budget.

    Args:
        bank: An open bank; it must stay open while `BankRows` are used.
        datasets: (split, field) pairs, field `features`, `logits` or `extra/<name>`.
        budget_bytes: Bytes of rows stage 2 may hold; None for no limit.

    Returns:
        (split, field) -> rows, on the CPU.
    """
    shapes = {key: bank.shape(*key) for key in datasets}
    if budget_bytes is None or dataset_bytes(bank, datasets) <= budget_bytes:
        return {
            key: ArrayRows(
                bank.read_rows(*key, 0, shapes[key][0]), f"{bank.path}:{key[0]}/{key[1]}"
            )
            for key in datasets
        }
    return {
        key: BankRows(bank, *key, window_rows=window_rows(shapes[key][1], budget_bytes))
        for key in datasets
    }


def dataset_bytes(bank: Bank, datasets: list[tuple[str, str]]) -> int:
    """Bytes the float32 rows of (split, field) datasets take in memory."""
    return sum(4 * math.prod(bank.shape(*key)) for key in datasets)


def window_rows(dim: int, budget_bytes: int) -> int:
    """Rows of float32 width `dim` one training window gathers: a quarter of the budget.

    Gathering a window holds it twice (the rows as read, then in the epoch's order) next to
    the chunks being read; the rest is for the blocks scoring reads.
    """
    return max(1, budget_bytes // 4 // (4 * max(dim, 1)))
