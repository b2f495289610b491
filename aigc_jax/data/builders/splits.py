"""Fixed random splits for builders whose source has none."""

import numpy as np


def split_of(num_items: int, fractions: dict[str, float], seed: int) -> np.ndarray:
    """The split name of each item, from one fixed permutation: test, then validation, then train."""
    perm = np.random.default_rng(seed).permutation(num_items)
    n_test = round(fractions["test"] * num_items)
    n_validation = round(fractions["validation"] * num_items)
    names = np.full(num_items, "train", dtype=object)
    names[perm[:n_test]] = "test"
    names[perm[n_test : n_test + n_validation]] = "validation"
    return names
