"""Metrics against scikit-learn on random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    roc_auc_score,
)

from trainer.classes import CLASS_NAMES
from trainer.metrics import (
    classification_metrics,
    confusion,
    per_class_table,
    roc_auc_micro,
    roc_auc_per_class,
)


def _random_case(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4)) + 1.5 * np.eye(4)[y]
    if ties:  # coarse scores, so many are equal
        logits = np.round(logits)
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ties", [False, True])
def test_classification_metrics_match_sklearn(seed, ties):
    y, proba = _random_case(seed, ties=ties)
    pred = proba.argmax(axis=1)
    got = classification_metrics(y, proba, loss=0.7)
    assert got["accuracy"] == pytest.approx(np.mean(pred == y))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    for k, name in enumerate(CLASS_NAMES):
        assert got[f"auc_{name}"] == pytest.approx(roc_auc_score(y == k, proba[:, k]))
    assert got["auc_macro"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    assert got["loss"] == 0.7


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_absent_class_has_nan_auc_and_is_left_out_of_the_macro():
    y, proba = _random_case(3)
    keep = y != 2
    y, proba = y[keep], proba[keep]
    got = classification_metrics(y, proba)
    assert math.isnan(got["auc_pneumonia"])
    present = [roc_auc_score(y == k, proba[:, k]) for k in (0, 1, 3)]
    assert got["auc_macro"] == pytest.approx(np.mean(present))
    pred = proba.argmax(axis=1)
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert got["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))


@pytest.mark.parametrize("seed", [0, 7])
def test_micro_auc_pools_every_image_and_class(seed):
    y, proba = _random_case(seed)
    expected = roc_auc_score(np.eye(4)[y], proba, average="micro")
    assert roc_auc_micro(y, proba) == pytest.approx(expected)


def test_one_class_split_has_no_auc_at_all():
    y, proba = np.full(10, 1), _random_case(8, n=10)[1]
    assert all(math.isnan(v) for v in roc_auc_per_class(y, proba).values())
    assert math.isnan(roc_auc_micro(y, proba))  # no class has both positives and negatives
    assert math.isnan(classification_metrics(y, proba)["auc_macro"])


def test_no_labels_give_zero_accuracy_and_nan_elsewhere():
    got = classification_metrics(np.zeros(0, int), np.zeros((0, 4)))
    assert got["accuracy"] == 0.0
    assert all(math.isnan(v) for k, v in got.items() if k != "accuracy")


def test_nan_probabilities_count_as_uniform():
    y, proba = _random_case(4, n=40)
    proba[::2] = np.nan  # half the rows from a diverged model
    got = classification_metrics(y, proba)
    cleaned = proba.copy()
    cleaned[::2] = 0.25
    for k, name in enumerate(CLASS_NAMES):
        assert got[f"auc_{name}"] == pytest.approx(roc_auc_score(y == k, cleaned[:, k]))
    assert all(math.isfinite(v) for v in got.values())


@pytest.mark.parametrize("seed", [0, 5])
def test_confusion_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    expected = confusion_matrix(y, pred, labels=[0, 1, 2, 3])
    assert np.array_equal(confusion(y, pred), expected)


@pytest.mark.parametrize("seed", [0, 6])
def test_per_class_table_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 500)
    pred = np.where(rng.random(500) < 0.6, y, rng.integers(0, 4, 500))
    rows = per_class_table(y, pred)
    assert [r["class"] for r in rows] == list(CLASS_NAMES)
    precision = precision_score(y, pred, labels=[0, 1, 2, 3], average=None)
    matrix = confusion_matrix(y, pred, labels=[0, 1, 2, 3])
    for k, row in enumerate(rows):
        positive, predicted = y == k, pred == k
        assert row["support"] == positive.sum()
        assert row["precision"] == pytest.approx(precision[k])
        assert row["accuracy"] == pytest.approx(np.mean(positive == predicted))
        assert row["false_positive_rate"] == pytest.approx(np.mean(predicted[~positive]))
        assert row["false_negative_rate"] == pytest.approx(np.mean(~predicted[positive]))
        if CLASS_NAMES[k] == "normal":
            assert row["predicted_normal_rate"] is None
        else:
            assert row["predicted_normal_rate"] == pytest.approx(matrix[k, 3] / matrix[k].sum())


def test_per_class_table_never_predicted_class_has_nan_precision():
    y = np.array([0, 1, 2, 3, 3])
    pred = np.array([3, 1, 2, 3, 3])
    covid = per_class_table(y, pred)[0]
    assert math.isnan(covid["precision"])
    assert covid["false_negative_rate"] == 1.0
    assert covid["predicted_normal_rate"] == 1.0


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="3 labels"):
        classification_metrics(np.zeros(3, int), np.full((4, 4), 0.25))
