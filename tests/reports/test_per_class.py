"""The per-class table: the original team's columns, plus recall, specificity and F1 as
scikit-learn computes them, all ratios in one format."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from reports.final import compute_metrics
from reports.model_card import render_model_card
from reports.per_class import PER_CLASS_COLUMNS, per_class_frame, per_class_rows
from tests.reports.test_final import random_frame
from tests.reports.test_model_card import _export
from trainer.classes import CLASS_NAMES

ORIGINAL = (
    "class",
    "support",
    "accuracy",
    "false_positive_rate",
    "false_negative_rate",
    "precision",
    "predicted_normal_rate",
)
HEADERS = [c.header for c in PER_CLASS_COLUMNS]


def _labels(frame) -> tuple[np.ndarray, np.ndarray]:
    return frame["true_index"].to_numpy(), frame["pred_index"].to_numpy()


@pytest.mark.parametrize("classes", [(0, 1, 2, 3), (0, 1, 3)])
def test_rows_keep_the_original_columns_and_add_three(classes) -> None:
    rows = per_class_rows(*_labels(random_frame(60, 1, classes=classes)))
    assert [row["class"] for row in rows] == list(CLASS_NAMES)
    for row in rows:
        assert set(ORIGINAL) | {"recall", "specificity", "f1"} == set(row)


@pytest.mark.parametrize("n,seed,classes", [(200, 0, (0, 1, 2, 3)), (40, 3, (0, 1, 3))])
def test_recall_precision_f1_are_scikit_learns(n: int, seed: int, classes) -> None:
    y, pred = _labels(random_frame(n, seed, classes=classes))
    rows = per_class_rows(y, pred)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=range(4), zero_division=np.nan
    )
    matrix = confusion_matrix(y, pred, labels=range(4))
    for k, row in enumerate(rows):
        assert row["support"] == support[k]
        for key, expected in (("precision", precision), ("recall", recall), ("f1", f1)):
            if np.isnan(expected[k]):
                assert row[key] is None, (key, k)  # nothing to count on: JSON null
            else:
                assert row[key] == pytest.approx(expected[k]), (key, k)
        negatives = np.delete(np.delete(matrix, k, 0), k, 1).sum()
        false_pos = matrix[:, k].sum() - matrix[k, k]
        assert row["specificity"] == pytest.approx(negatives / (negatives + false_pos))
        # recall and specificity are the complements of the original team's rates
        if row["recall"] is not None:
            assert row["recall"] == pytest.approx(1 - row["false_negative_rate"])
        assert row["specificity"] == pytest.approx(1 - row["false_positive_rate"])


def test_metrics_json_carries_the_new_columns() -> None:
    metrics = compute_metrics(random_frame(50, 2))
    assert {"recall", "specificity", "f1"} <= set(metrics["per_class"][0])


def test_displayed_table_has_one_number_format() -> None:
    frame = per_class_frame(compute_metrics(random_frame(29, 4, classes=(0, 1, 3)))["per_class"])
    assert list(frame.columns) == HEADERS
    for header in ("recall (sensitivity)", "specificity", "F1", "precision", "support"):
        assert header in HEADERS
    ratios = frame.drop(columns=["class", "support"])
    for cell in ratios.to_numpy().ravel():
        # 0.020, 0.034, 0.000 — never 0.02, 0.03448 or 0
        assert re.fullmatch(r"\d\.\d{3}|–", cell), cell
    assert all(re.fullmatch(r"\d+", cell) for cell in frame["support"])
    # pneumonia is absent: no recall, and normal has no predicted-normal rate
    pneumonia = frame.set_index("class").loc["pneumonia"]
    assert pneumonia["support"] == "0" and pneumonia["recall (sensitivity)"] == "–"
    assert frame.set_index("class").loc["normal", "predicted normal rate"] == "–"


def test_model_card_shows_the_same_table() -> None:
    metrics = compute_metrics(random_frame(40, 0))
    card = render_model_card(_export(True, 40), metrics)
    assert "| " + " | ".join(HEADERS) + " |" in card
    first = per_class_frame(metrics["per_class"]).iloc[0].tolist()
    assert "| " + " | ".join(first) + " |" in card
