"""The study's constraints checked again on the evaluated split, each with its interval.

The search chose a feasible trial on the validation split; the export measures each
constraint on the held-out test split (the validation split, said so, without one):
recall and specificity with their Wilson interval (a proportion of the split's images),
any other metric with a percentile bootstrap interval over the split's images, and the
trial's cost (device-seconds, peak memory) as it was measured while it trained.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hpsearch.trials.constraints import Constraint
from trainer.classes import CLASS_NAMES


def check_on_split(
    constraints: tuple[Constraint, ...],
    split: str,
    y_true: np.ndarray,
    proba: np.ndarray,
    trained: dict[str, float],
    n_resamples: int = 1000,
) -> list[dict[str, Any]]:
    """One entry per constraint: its value on ``split`` (or as trained, for a cost), the
    95 % interval, whether the value keeps the bound and whether the whole interval does.
    ``trained`` holds the cost measures the trial recorded."""
    return [_check(c, split, y_true, proba, trained, n_resamples) for c in constraints]


def _check(
    c: Constraint,
    split: str | None,
    y_true: np.ndarray,
    proba: np.ndarray,
    trained: dict[str, float],
    n_resamples: int,
) -> dict[str, Any]:
    kind, dot, name = c.name.partition(".")
    if dot:
        value, ci, method = _proportion(kind, CLASS_NAMES.index(name), y_true, proba)
    elif c.key.startswith("val_"):
        value, ci, method = _bootstrapped(c.key.removeprefix("val_"), y_true, proba, n_resamples)
    else:
        value, ci, method = trained.get(c.key), None, "measured while the trial trained"
        split = None
    keeps = value is not None and c.violation(value) <= 0
    sure = ci is not None and all(c.violation(bound) <= 0 for bound in ci)
    return {
        "name": c.name,
        "bound": c.describe(),
        "split": split,
        "value": value,
        "ci95": list(ci) if ci is not None else None,
        "ci_method": method,
        "kept": keeps,
        "kept_by_whole_interval": sure,
    }


def _proportion(
    kind: str, k: int, y_true: np.ndarray, proba: np.ndarray
) -> tuple[float | None, tuple[float, float] | None, str]:
    """Recall (of class ``k``'s images, those predicted ``k``) or specificity (of the
    others, those not predicted ``k``), with its Wilson interval."""
    from reports.final import wilson_interval

    pred = proba.argmax(axis=1)
    if kind == "recall":
        among = y_true == k
        hits = int((pred[among] == k).sum())
    else:
        among = y_true != k
        hits = int((pred[among] != k).sum())
    total = int(among.sum())
    if total == 0:
        return None, None, f"no image of the split to measure {kind} on"
    return hits / total, wilson_interval(hits, total), f"Wilson score interval, 95 %, n = {total}"


def _bootstrapped(
    key: str, y_true: np.ndarray, proba: np.ndarray, n_resamples: int
) -> tuple[float | None, tuple[float, float] | None, str]:
    """A recorded metric (``accuracy``, ``auc_covid``...) with its bootstrap interval."""
    from reports.uncertainty import bootstrap_intervals
    from trainer.metrics import classification_metrics

    def metric(y: np.ndarray, p: np.ndarray) -> float:
        return classification_metrics(y, p).get(key, float("nan"))

    value = metric(y_true, proba)
    interval = bootstrap_intervals(y_true, proba, {key: metric}, n_resamples=n_resamples)[key]
    low, high = interval.low, interval.high
    ci = (low, high) if low is not None and high is not None else None
    method = f"percentile bootstrap, 95 %, {n_resamples} resamples"
    return (float(value) if np.isfinite(value) else None), ci, method
