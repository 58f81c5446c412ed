"""Metrics of the final model, recomputed from the predictions frame."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, roc_auc_score

from reports.final import (
    PROBA_COLUMNS,
    Z_95,
    compute_metrics,
    final_figures,
    predictions_frame,
    read_predictions,
    wilson_interval,
    write_predictions,
)
from trainer.classes import CLASS_NAMES
from trainer.metrics import classification_metrics


def random_frame(n: int, seed: int, classes: tuple[int, ...] = (0, 1, 2, 3)) -> pd.DataFrame:
    """Labels from ``classes`` and probabilities that lean towards the true class."""
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, size=n)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), y] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return predictions_frame([f"img_{i}.png" for i in range(n)], "test", y, proba)


@pytest.mark.parametrize("n,seed", [(40, 0), (250, 1), (7, 2)])
def test_metrics_match_scikit_learn(n: int, seed: int) -> None:
    frame = random_frame(n, seed, classes=(0, 1, 2, 3) if n > 7 else (0, 1, 3))
    metrics = compute_metrics(frame)
    y = frame["true_index"].to_numpy()
    proba = frame[list(PROBA_COLUMNS)].to_numpy()
    pred = proba.argmax(axis=1)
    assert metrics["confusion"]["counts"] == confusion_matrix(y, pred, labels=range(4)).tolist()
    assert metrics["accuracy"] == pytest.approx(float((y == pred).mean()))
    present = sorted(set(y))
    for k in present:
        expected = roc_auc_score(y == k, proba[:, k])
        assert metrics["roc_auc"]["per_class"][CLASS_NAMES[k]] == pytest.approx(expected)
    onehot = np.eye(4)[y]
    assert metrics["roc_auc"]["micro"] == pytest.approx(
        roc_auc_score(onehot.ravel(), proba.ravel())
    )
    if len(present) == 4:
        # scikit-learn's one-vs-rest macro AUC is the mean of the class AUCs
        expected = roc_auc_score(y, proba, multi_class="ovr", average="macro")
        assert metrics["roc_auc"]["macro"] == pytest.approx(expected)
    else:
        missing = CLASS_NAMES[2]
        assert metrics["roc_auc"]["per_class"][missing] is None
        assert missing not in metrics["roc_auc"]["macro_over"]
    # metrics.json must be strict JSON: no NaN for an absent class's row
    json.dumps(metrics, allow_nan=False)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("classes", [(0, 1, 2, 3), (0, 1, 3), (1, 2)])
def test_report_numbers_are_the_epoch_selection_numbers(classes) -> None:
    # one definition: what chose the epoch is what the report shows, absent classes too
    frame = random_frame(90, 9, classes=classes)
    metrics = compute_metrics(frame)
    y = frame["true_index"].to_numpy()
    chosen = classification_metrics(y, frame[list(PROBA_COLUMNS)].to_numpy())
    for key in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert metrics[key] == pytest.approx(chosen[key])
    assert metrics["roc_auc"]["macro"] == pytest.approx(chosen["auc_macro"])
    for name, value in metrics["roc_auc"]["per_class"].items():
        expected = chosen[f"auc_{name}"]
        assert (value is None and math.isnan(expected)) or value == pytest.approx(expected)


def test_row_normalized_confusion_rows_sum_to_one() -> None:
    metrics = compute_metrics(random_frame(120, 3))
    counts = np.array(metrics["confusion"]["counts"])
    normalized = np.array(metrics["confusion"]["row_normalized"], dtype=float)
    np.testing.assert_allclose(normalized.sum(axis=1), 1.0)
    np.testing.assert_allclose(normalized * counts.sum(axis=1, keepdims=True), counts)


def test_csv_round_trip_keeps_every_number(tmp_path) -> None:
    frame = random_frame(60, 4)
    write_predictions(frame, tmp_path / "p.csv")
    back = read_predictions(tmp_path / "p.csv")
    np.testing.assert_array_equal(back[list(PROBA_COLUMNS)].to_numpy(), frame[list(PROBA_COLUMNS)])
    assert compute_metrics(back) == compute_metrics(frame)


def test_prediction_is_argmax_and_names_follow_indices() -> None:
    frame = random_frame(30, 5)
    proba = frame[list(PROBA_COLUMNS)].to_numpy()
    assert (frame["pred_index"].to_numpy() == proba.argmax(axis=1)).all()
    assert [CLASS_NAMES[i] for i in frame["true_index"]] == list(frame["true_label"])


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (37, 50), (930, 1000)])
def test_wilson_interval(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    assert 0.0 <= low <= k / n <= high <= 1.0
    # mirror symmetry: failures' interval is the reflection of successes'
    mlow, mhigh = wilson_interval(n - k, n)
    assert mlow == pytest.approx(1 - high) and mhigh == pytest.approx(1 - low)
    if k == 0:
        # closed form at zero successes: upper bound z^2 / (n + z^2)
        assert high == pytest.approx(Z_95**2 / (n + Z_95**2))
    # four times the data, about half the width
    low4, high4 = wilson_interval(4 * k, 4 * n)
    assert (high4 - low4) < (high - low) * 0.6


def test_wilson_rejects_bad_counts() -> None:
    with pytest.raises(ValueError, match="total=0"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="successes=11"):
        wilson_interval(11, 10)


def test_mixed_splits_are_refused() -> None:
    frame = pd.concat([random_frame(5, 6), random_frame(5, 7).assign(split="validation")])
    with pytest.raises(ValueError, match="mix splits"):
        compute_metrics(frame)


def test_figures_show_the_split_and_the_aucs() -> None:
    frame = random_frame(80, 8)
    metrics = compute_metrics(frame)
    figures = final_figures(frame, metrics)
    assert set(figures) == {"confusion_counts", "confusion_normalized", "roc"}
    for fig in figures.values():
        assert "test split, n = 80" in fig.layout.title.text
    names = [trace.name for trace in figures["roc"].data]
    macro = metrics["roc_auc"]["macro"]
    assert any(f"{macro:.3f}" in name for name in names if name.startswith("macro"))
    assert sum(name.split(" ")[0] in CLASS_NAMES for name in names) == 4
    assert math.isclose(
        figures["confusion_counts"].data[0].z[0][0], metrics["confusion"]["counts"][0][0]
    )
