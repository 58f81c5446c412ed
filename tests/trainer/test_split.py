"""Seeded stratified split: determinism, proportions, coverage, validation."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.errors import UserError
from trainer.split import split_indices

# Competition proportions, scaled down: covid, lung_opacity, pneumonia, normal.
LABELS = np.repeat(np.arange(4), [345, 574, 128, 973])


def _shuffled_labels(seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).permutation(LABELS)


def test_same_seed_gives_the_same_split() -> None:
    labels = _shuffled_labels()
    a = split_indices(labels, 0.1, 0.1, seed=3)
    b = split_indices(labels.tolist(), 0.1, 0.1, seed=3)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part))


def test_another_seed_gives_another_split() -> None:
    labels = _shuffled_labels()
    a = split_indices(labels, 0.1, 0.1, seed=3)
    b = split_indices(labels, 0.1, 0.1, seed=4)
    assert not np.array_equal(a.val, b.val)
    assert len(a.val) == len(b.val)


@pytest.mark.parametrize(("val", "test"), [(0.1, 0.0), (0.1, 0.1), (0.2, 0.15), (0.33, 0.33)])
def test_every_class_keeps_its_share_within_one_image(val: float, test: float) -> None:
    labels = _shuffled_labels()
    split = split_indices(labels, val, test, seed=0)
    for c in range(4):
        n_c = int((labels == c).sum())
        assert abs((labels[split.val] == c).sum() - n_c * val) <= 1
        assert abs((labels[split.test] == c).sum() - n_c * test) <= 1
        assert abs((labels[split.train] == c).sum() - n_c * (1 - val - test)) <= 1


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_splits_are_sorted_disjoint_and_cover_everything(seed: int) -> None:
    labels = _shuffled_labels(seed)
    split = split_indices(labels, 0.15, 0.1, seed=seed)
    joined = np.concatenate([split.train, split.val, split.test])
    assert np.array_equal(np.sort(joined), np.arange(len(labels)))
    for part in (split.train, split.val, split.test):
        assert np.all(np.diff(part) > 0)
        assert part.dtype == np.int64


def test_zero_test_fraction_gives_an_empty_test_split() -> None:
    split = split_indices(_shuffled_labels(), 0.1, 0.0, seed=0)
    assert split.test.shape == (0,)
    assert len(split.train) + len(split.val) == len(LABELS)


def test_labels_need_not_cover_every_class() -> None:
    labels = np.array([0, 0, 0, 3, 3, 3, 3, 3, 3, 3])
    split = split_indices(labels, 0.3, 0.0, seed=0)
    assert sorted(labels[split.val].tolist()) == [0, 3, 3]


@pytest.mark.parametrize(
    ("val", "test", "named"),
    [
        (-0.1, 0.0, "val_fraction"),
        (1.0, 0.0, "val_fraction"),
        (0.1, -0.2, "test_fraction"),
        (0.1, 1.5, "test_fraction"),
        (0.6, 0.4, "sum"),
    ],
)
def test_bad_fractions_are_user_errors(val: float, test: float, named: str) -> None:
    with pytest.raises(UserError, match=named):
        split_indices(LABELS, val, test, seed=0)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_bad_seed_is_a_user_error(seed: int) -> None:
    with pytest.raises(UserError, match="seed"):
        split_indices(LABELS, 0.1, 0.0, seed=seed)
