"""A bank's splits as one value: read in memory or streamed, fitted on, scored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.splits import SPLITS
from features.bank import Bank
from features.bank.rows import ArrayRows, BankRows
from features.bank.splits import BankSplits, SplitRows
from features.configs import ProbeConfig
from features.errors import FeaturesError
from tests.features.synthetic import write_bank

FAST = ProbeConfig(epochs=2, crt_epochs=2, lws_epochs=2, batch_size=16, seed=0)


@pytest.fixture()
def bank(tmp_path: Path):
    path = tmp_path / "ce.h5"
    write_bank(path)
    with Bank.open(path) as opened:
        yield opened


def test_read_holds_every_split_and_the_test_index(bank: Bank) -> None:
    notes: list[str] = []
    splits = BankSplits.read(bank, None, notes.append, "classify ce")
    assert tuple(splits) == SPLITS and not notes
    for split in SPLITS:
        features, labels, logits = splits[split]
        assert isinstance(features, ArrayRows) and isinstance(logits, ArrayRows)
        assert torch.equal(features.values, torch.from_numpy(bank.features(split)))
        assert torch.equal(logits.values, torch.from_numpy(bank.logits(split)))
        np.testing.assert_array_equal(labels, bank.labels(split))
    np.testing.assert_array_equal(splits.test_index, bank.index("test"))


def test_rows_over_the_budget_are_streamed_and_said_once(bank: Bank) -> None:
    notes: list[str] = []
    splits = BankSplits.read(bank, 1024, notes.append, "classify ce")
    assert isinstance(splits["train"].features, BankRows)
    assert len(notes) == 1 and notes[0].startswith("classify ce: the bank's rows take ")


@pytest.mark.parametrize("kind", ["head", "linear", "crt"])
def test_a_fitted_classifier_scores_a_split_as_its_input_field_says(bank: Bank, kind: str) -> None:
    splits = BankSplits.read(bank, None)
    fitted = splits.fit(kind, bank.meta.class_counts, FAST)
    test = splits["test"]
    expected = fitted.logits(test.logits if kind == "head" else test.features)
    np.testing.assert_array_equal(fitted.split_logits(test), expected)


def test_a_head_classifier_refuses_a_split_without_logits(bank: Bank) -> None:
    splits = BankSplits.read(bank, None)
    fitted = splits.fit("head", bank.meta.class_counts, FAST)
    test = splits["test"]
    with pytest.raises(FeaturesError, match="classifier 'head' needs the bank's logits"):
        fitted.split_logits(SplitRows(test.features, test.labels, None))
