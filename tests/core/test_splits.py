"""The split names are defined once."""

from core.splits import SPLITS


def test_every_layer_names_the_same_splits() -> None:
    import features.bank
    import pipeline.data

    assert SPLITS == ("train", "val", "test")
    assert pipeline.data.SPLIT_NAMES is SPLITS
    assert features.bank.SPLITS is SPLITS
