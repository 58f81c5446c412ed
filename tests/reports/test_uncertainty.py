"""Bootstrap intervals, exact McNemar and the paired bootstrap, against direct computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from reports.final import (
    PROBA_COLUMNS,
    compare_predictions,
    compute_metrics,
    metric_intervals,
    per_class_interval_table,
    selection_rows,
    wilson_interval,
)
from reports.uncertainty import (
    N_RESAMPLES,
    bootstrap_intervals,
    mcnemar_exact,
    paired_bootstrap_auc,
)
from tests.reports.test_final import random_frame
from trainer.classes import CLASS_NAMES
from trainer.metrics import balanced_accuracy, roc_auc_macro, roc_auc_per_class

B = 100  # resamples in these tests; an export uses N_RESAMPLES


def labelled(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    frame = random_frame(n, seed)
    return frame["true_index"].to_numpy().copy(), frame[list(PROBA_COLUMNS)].to_numpy()


def direct(y: np.ndarray, proba: np.ndarray, metric, seed: int, n_resamples: int = B):
    """The bootstrap written out: numpy's generator, one index draw per resample."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(y), size=len(y))
        values.append(metric(y[idx], proba[idx]))
    return np.array(values)


def test_export_default_is_at_least_a_thousand_resamples() -> None:
    assert N_RESAMPLES >= 1000


def test_intervals_equal_direct_numpy_computation() -> None:
    y, proba = labelled(60, 0)

    def bal(y_, p_):
        return balanced_accuracy(y_, p_.argmax(axis=1))

    def macro(y_, p_):
        return roc_auc_macro(roc_auc_per_class(y_, p_))

    found = bootstrap_intervals(y, proba, {"bal": bal, "auc": macro}, n_resamples=B, seed=7)
    for name, metric in (("bal", bal), ("auc", macro)):
        low, high = np.nanpercentile(direct(y, proba, metric, seed=7), [2.5, 97.5])
        assert (found[name].low, found[name].high) == (pytest.approx(low), pytest.approx(high))
        assert found[name].usable == B


def test_same_seed_same_interval_other_seed_other_interval() -> None:
    y, proba = labelled(60, 1)
    metrics = {"auc": lambda y_, p_: roc_auc_per_class(y_, p_)["covid"]}
    first = bootstrap_intervals(y, proba, metrics, n_resamples=50, seed=3)
    assert first == bootstrap_intervals(y, proba, metrics, n_resamples=50, seed=3)
    assert first != bootstrap_intervals(y, proba, metrics, n_resamples=50, seed=4)


def test_resample_without_a_class_is_not_usable_for_its_auc() -> None:
    y, proba = labelled(30, 2)
    y[y == 2] = 0
    y[0] = 2  # one image of class 2: most resamples leave it out (or keep only it)
    found = bootstrap_intervals(y, proba, {"auc": roc_auc_per_class}, n_resamples=B, seed=0)
    values = direct(y, proba, lambda y_, p_: roc_auc_per_class(y_, p_)["pneumonia"], seed=0)
    usable = np.isfinite(values)
    assert 0 < found["auc/pneumonia"].usable == usable.sum() < B
    low, high = np.nanpercentile(values, [2.5, 97.5])
    assert found["auc/pneumonia"].low == pytest.approx(low)
    assert found["auc/pneumonia"].high == pytest.approx(high)
    assert found["auc/covid"].usable == B


@pytest.mark.parametrize(
    "n01,n10,concordant", [(0, 0, 20), (3, 3, 10), (2, 9, 30), (12, 1, 0), (1480, 1570, 100)]
)
def test_mcnemar_equals_binomtest_on_discordant_pairs(n01: int, n10: int, concordant: int):
    a = np.array([False] * n01 + [True] * n10 + [True] * concordant)
    b = np.array([True] * n01 + [False] * n10 + [True] * concordant)
    result = mcnemar_exact(a, b)
    assert (result.n01, result.n10) == (n01, n10)
    expected = binomtest(n10, n01 + n10, 0.5).pvalue if n01 + n10 else 1.0
    assert result.p_value == pytest.approx(expected, rel=1e-9)


def test_paired_bootstrap_auc_equals_direct_computation() -> None:
    y, proba_a = labelled(80, 3)
    _, proba_b = labelled(80, 4)

    def macro(y_, p_):
        return roc_auc_macro(roc_auc_per_class(y_, p_))

    result = paired_bootstrap_auc(y, proba_a, proba_b, seed=5, n_resamples=B)
    rng = np.random.default_rng(5)
    diffs = []
    for _ in range(B):
        idx = rng.integers(0, len(y), size=len(y))
        diffs.append(macro(y[idx], proba_a[idx]) - macro(y[idx], proba_b[idx]))
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    assert result.difference == pytest.approx(macro(y, proba_a) - macro(y, proba_b))
    assert (result.low, result.high) == (pytest.approx(low), pytest.approx(high))
    diffs = np.array(diffs)
    side = min((diffs <= 0).sum(), (diffs >= 0).sum())
    assert result.p_value == pytest.approx(min(1.0, 2 * (1 + side) / (B + 1)))


def test_a_model_against_itself_differs_by_nothing() -> None:
    y, proba = labelled(40, 5)
    result = paired_bootstrap_auc(y, proba, proba, n_resamples=50)
    assert (result.difference, result.low, result.high, result.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_every_reported_number_has_an_interval() -> None:
    frame = random_frame(80, 6)
    metrics = compute_metrics(frame)
    ci = metric_intervals(frame, n_resamples=50, seed=1)
    assert (ci["n_resamples"], ci["seed"], ci["level"]) == (50, 1, 0.95)
    correct = metrics["correct"]
    assert (ci["accuracy"]["low"], ci["accuracy"]["high"]) == wilson_interval(correct, 80)
    for key in ("balanced_accuracy", "macro_f1"):
        assert ci[key]["low"] <= metrics[key] <= ci[key]["high"]
    for key in ("macro", "micro"):
        assert ci["roc_auc"][key]["usable"] == 50
    assert set(ci["roc_auc"]["per_class"]) == set(CLASS_NAMES)
    for row in metrics["per_class"]:
        ratios = {k for k, v in row.items() if isinstance(v, float)}
        assert ratios and ratios == set(ci["per_class"][row["class"]])


def test_per_class_ratios_with_their_intervals() -> None:
    frame = random_frame(80, 7)
    metrics = {**compute_metrics(frame), "ci95": metric_intervals(frame, n_resamples=30)}
    table = per_class_interval_table(metrics).set_index("ratio")
    assert list(table.columns) == list(CLASS_NAMES)
    precision = metrics["per_class"][0]["precision"]
    interval = metrics["ci95"]["per_class"][CLASS_NAMES[0]]["precision"]
    low, high = interval["low"], interval["high"]
    assert table.loc["precision", CLASS_NAMES[0]] == f"{precision:.4g} [{low:.4g}, {high:.4g}]"
    assert table.loc["predicted_normal_rate", "normal"] == "–"  # normal's own cell: no ratio
    assert list(table.index) == [
        k for k in metrics["per_class"][0] if k not in ("class", "support")
    ]


def test_comparison_counts_and_tests_on_the_same_images() -> None:
    winner = random_frame(90, 8)
    rival = random_frame(90, 9).assign(name=winner["name"], true_index=winner["true_index"])
    proba = rival[list(PROBA_COLUMNS)].to_numpy()
    rival["pred_index"] = proba.argmax(axis=1)
    found = compare_predictions(winner, rival, n_resamples=40, seed=2)
    y = winner["true_index"].to_numpy()
    right_w = winner["pred_index"].to_numpy() == y
    right_r = rival["pred_index"].to_numpy() == y
    acc = found["accuracy"]
    assert acc["difference"] == pytest.approx(right_w.mean() - right_r.mean())
    assert (acc["n10"], acc["n01"]) == ((right_w & ~right_r).sum(), (~right_w & right_r).sum())
    expected = binomtest(acc["n10"], acc["n10"] + acc["n01"], 0.5).pvalue
    assert acc["p_value"] == pytest.approx(expected)
    auc = found["roc_auc_macro"]
    assert auc["difference"] == pytest.approx(auc["winner"] - auc["runner_up"])
    assert auc["ci95"][0] <= auc["ci95"][1] and auc["usable"] == 40
    with pytest.raises(ValueError, match="same images"):
        compare_predictions(winner, rival.iloc[::-1], n_resamples=5)


def test_validation_next_to_test() -> None:
    metrics = compute_metrics(random_frame(40, 10))
    metrics["model"] = {
        "metric": "val_accuracy",
        "value": 0.9,
        "selection_metrics": {"val_accuracy": 0.9, "val_auc_macro": 0.95, "val_loss": 0.3},
    }
    rows = {row["metric"]: row for row in selection_rows(metrics)}
    assert set(rows) == {"accuracy (the objective)", "ROC AUC, macro"}
    objective = rows["accuracy (the objective)"]
    assert objective["test"] == metrics["accuracy"]
    assert math.isclose(objective["test − validation"], metrics["accuracy"] - 0.9)
    assert selection_rows({**metrics, "split": "validation"}) == []
