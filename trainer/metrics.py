"""Classification metrics of the four-class task, in plain numpy.

Conventions follow scikit-learn where it has one (balanced accuracy over the classes
present in ``y_true``, macro F1 over the classes present in ``y_true`` or the predictions,
one-vs-rest ROC-AUC with ties counted as one half).
"""

from __future__ import annotations

import math

import numpy as np

from trainer.classes import CLASS_NAMES

NORMAL = CLASS_NAMES.index("normal")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 4) -> np.ndarray:
    """Counts ``[true, predicted]`` as an int64 ``(num_classes, num_classes)`` array."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, loss: float | None = None
) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 and one-vs-rest ROC-AUC from class probabilities.

    Keys: ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``auc_<class>`` for each class,
    ``auc_macro`` (mean over the classes whose AUC is defined; a class absent from
    ``y_true`` gets NaN) and ``loss`` when given. Rows of ``proba`` with a NaN (a diverged
    model) count as uniform.
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    num_classes = len(CLASS_NAMES)
    if proba.ndim != 2 or proba.shape[1] != num_classes:
        raise ValueError(f"proba has shape {proba.shape}; expected (N, {num_classes})")
    if proba.shape[0] != y_true.shape[0]:
        raise ValueError(f"{y_true.shape[0]} labels but {proba.shape[0]} rows of probabilities")
    bad_rows = ~np.isfinite(proba).all(axis=1)
    if bad_rows.any():
        proba = proba.copy()
        proba[bad_rows] = 1.0 / num_classes
    y_pred = proba.argmax(axis=1)
    matrix = confusion(y_true, y_pred, num_classes)

    true_counts = matrix.sum(axis=1)
    pred_counts = matrix.sum(axis=0)
    hits = np.diag(matrix)
    present = true_counts > 0
    recall = hits[present] / true_counts[present]
    scored = present | (pred_counts > 0)
    f1 = 2 * hits[scored] / (true_counts[scored] + pred_counts[scored])

    out: dict[str, float] = {
        "accuracy": float(hits.sum() / max(1, y_true.size)),
        "balanced_accuracy": float(recall.mean()) if recall.size else math.nan,
        "macro_f1": float(f1.mean()) if f1.size else math.nan,
    }
    aucs = [_binary_auc(y_true == k, proba[:, k]) for k in range(num_classes)]
    for name, auc in zip(CLASS_NAMES, aucs, strict=True):
        out[f"auc_{name}"] = auc
    defined = [a for a in aucs if not math.isnan(a)]
    out["auc_macro"] = float(np.mean(defined)) if defined else math.nan
    if loss is not None:
        out["loss"] = float(loss)
    return out


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray) -> list[dict[str, object]]:
    """One row per class, as the original team tabulated their validation results.

    Each row: ``class``, ``support`` (true images of the class), one-vs-rest ``accuracy``,
    ``false_positive_rate``, ``false_negative_rate``, ``precision`` and, for the diseases,
    ``predicted_normal_rate`` (share of that class predicted as normal, i.e. missed as
    healthy); normal's own row has None there. A ratio with a zero denominator is NaN.
    """
    matrix = confusion(y_true, y_pred, len(CLASS_NAMES))
    total = matrix.sum()
    rows = []
    for k, name in enumerate(CLASS_NAMES):
        tp = matrix[k, k]
        fn = matrix[k].sum() - tp
        fp = matrix[:, k].sum() - tp
        tn = total - tp - fn - fp
        rows.append(
            {
                "class": name,
                "support": int(tp + fn),
                "accuracy": _ratio(tp + tn, total),
                "false_positive_rate": _ratio(fp, fp + tn),
                "false_negative_rate": _ratio(fn, tp + fn),
                "precision": _ratio(tp, tp + fp),
                "predicted_normal_rate": None
                if k == NORMAL
                else _ratio(matrix[k, NORMAL], tp + fn),
            }
        )
    return rows


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else math.nan


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC-AUC as the Mann-Whitney statistic (ties count one half); NaN if one side is empty."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], values.size] - 1
    mean_rank = (first + last) / 2 + 1
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = mean_rank[group]
    return ranks
