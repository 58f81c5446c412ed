"""Seeded, stratified train/validation/test split of labelled images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainer.config import check_fractions, check_seed


@dataclass(frozen=True)
class Split:
    """Row indices of each split, sorted ascending; disjoint, and together all rows."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_sizes(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, validation, test) rows that one class of ``count`` rows gives each split."""
    n_test = round(count * test_fraction)
    n_val = round(count * val_fraction)
    return count - n_test - n_val, n_val, n_test


def split_indices(
    labels: Sequence[int] | np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> Split:
    """Cut rows into train, validation and test, class by class.

    Each class gives ``round(n_c * fraction)`` of its rows to validation and to test, so
    every split's class proportions match the whole within one image per class. The
    shuffle uses NumPy's legacy ``RandomState``, whose stream NumPy keeps fixed across
    versions and platforms: the same labels and seed give the same split anywhere.
    """
    check_fractions(val_fraction, test_fraction)
    check_seed("split seed", int(seed))
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    rng = np.random.RandomState(int(seed))
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        _, n_val, n_test = split_sizes(len(rows), val_fraction, test_fraction)
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test : n_test + n_val])
        parts["train"].append(rows[n_test + n_val :])
    joined = {
        name: np.sort(np.concatenate(chunks)).astype(np.int64)
        if chunks
        else np.zeros(0, dtype=np.int64)
        for name, chunks in parts.items()
    }
    return Split(**joined)
