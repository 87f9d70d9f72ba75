"""The dataset splits every layer names: a long-tailed train, a balanced val and test."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""In the order they are prepared, dumped into a bank and read back."""
