"""The per-class table: one class against the rest, as numbers and as displayed.

The rows keep the original team's columns (``trainer.metrics.per_class_table``) and add
recall (sensitivity), specificity and F1, the columns a reader of scikit-learn's
``classification_report`` looks for first. :data:`PER_CLASS_COLUMNS` says how each
column is shown; a new column (an interval, say) is one more :class:`PerClassColumn`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from reports.jsonable import plain
from trainer.classes import CLASS_NAMES
from trainer.metrics import confusion, per_class_table

#: Decimals of every ratio in the displayed table: one format for every number.
RATIO_DIGITS = 3
#: Shown for a ratio with no images to count it on.
NO_VALUE = "–"


def per_class_rows(y_true: np.ndarray, y_pred: np.ndarray) -> list[dict[str, Any]]:
    """One JSON-ready row per class: the original team's columns plus recall, specificity, F1.

    A ratio whose denominator is zero (no image of the class, none predicted as it) is
    None.
    """
    matrix = confusion(y_true, y_pred, len(CLASS_NAMES))
    total = int(matrix.sum())
    rows = []
    for k, original in enumerate(per_class_table(y_true, y_pred)):
        tp = int(matrix[k, k])
        fn = int(matrix[k].sum()) - tp
        fp = int(matrix[:, k].sum()) - tp
        tn = total - tp - fn - fp
        added = {
            "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }
        rows.append({k2: plain(v) for k2, v in {**original, **added}.items()})
    return rows


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def format_ratio(value: Any) -> str:
    """A ratio with :data:`RATIO_DIGITS` decimals; None as an en dash."""
    return NO_VALUE if value is None else f"{float(value):.{RATIO_DIGITS}f}"


def format_count(value: Any) -> str:
    return NO_VALUE if value is None else f"{int(value):d}"


def format_text(value: Any) -> str:
    return NO_VALUE if value is None else str(value)


@dataclass(frozen=True)
class PerClassColumn:
    """One displayed column: the row key it shows, its header, how a value is written."""

    key: str
    header: str
    format: Callable[[Any], str]


#: What scikit-learn's classification_report shows first, then the original team's columns.
PER_CLASS_COLUMNS: tuple[PerClassColumn, ...] = (
    PerClassColumn("class", "class", format_text),
    PerClassColumn("support", "support", format_count),
    PerClassColumn("precision", "precision", format_ratio),
    PerClassColumn("recall", "recall (sensitivity)", format_ratio),
    PerClassColumn("f1", "F1", format_ratio),
    PerClassColumn("specificity", "specificity", format_ratio),
    PerClassColumn("accuracy", "accuracy (one vs rest)", format_ratio),
    PerClassColumn("false_positive_rate", "false positive rate", format_ratio),
    PerClassColumn("false_negative_rate", "false negative rate", format_ratio),
    PerClassColumn("predicted_normal_rate", "predicted normal rate", format_ratio),
)

PER_CLASS_CAPTION = (
    "One class against the rest. support = images of the class; recall (sensitivity) = "
    "share of the class found; specificity = share of the other classes not called this "
    "class; predicted normal rate = share of the class predicted as normal (missed as "
    "healthy); – = nothing to count on."
)


def per_class_frame(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[PerClassColumn] = PER_CLASS_COLUMNS,
) -> pd.DataFrame:
    """The rows as displayed text, one column per :class:`PerClassColumn` (all strings)."""
    return pd.DataFrame(
        [[column.format(row.get(column.key)) for column in columns] for row in rows],
        columns=[column.header for column in columns],
    )
