"""Seeded, stratified train/validation/test split of labelled images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trainer.errors import UserError


@dataclass(frozen=True)
class Split:
    """Row indices of each split, sorted ascending; disjoint, and together all rows."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise :class:`UserError` unless both fractions are in [0, 1) and sum below 1."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise UserError(f"{name}={value!r}: must be in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise UserError(
            f"val_fraction={val_fraction!r} + test_fraction={test_fraction!r} leaves no "
            "training images; their sum must be below 1"
        )


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
    if not 0 <= int(seed) < 2**32:
        raise UserError(f"split seed={seed!r}: must be in [0, 2**32)")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    rng = np.random.RandomState(int(seed))
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        n_test = round(len(rows) * test_fraction)
        n_val = round(len(rows) * val_fraction)
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
