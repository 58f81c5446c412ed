"""The final model's evidence: predictions.csv -> metrics -> figures.

Everything here starts from the predictions frame (one row per image: true label,
predicted label, four probabilities), so every number in ``metrics.json`` and in the
report can be recomputed by anyone from ``predictions.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from sklearn.metrics import roc_curve

from reports.layout import fit_figure
from reports.per_class import per_class_rows
from trainer.classes import CLASS_NAMES
from trainer.metrics import (
    balanced_accuracy,
    confusion,
    macro_f1,
    roc_auc_macro,
    roc_auc_micro,
    roc_auc_per_class,
)

#: z of a two-sided 95 % normal interval.
Z_95 = 1.959963984540054

PROBA_COLUMNS: tuple[str, ...] = tuple(f"p_{name}" for name in CLASS_NAMES)
PREDICTION_COLUMNS: tuple[str, ...] = (
    "name",
    "split",
    "true_index",
    "true_label",
    "pred_index",
    "pred_label",
    *PROBA_COLUMNS,
)


def predictions_frame(
    names: Sequence[str], split: str, y_true: Sequence[int] | np.ndarray, proba: np.ndarray
) -> pd.DataFrame:
    """One row per image: name, split, true and predicted index and name, probabilities.

    The prediction is the arg-max of ``proba`` (rows of the four class probabilities
    in competition order).
    """
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if proba.ndim != 2 or proba.shape[1] != len(CLASS_NAMES):
        raise ValueError(f"proba has shape {proba.shape}; expected (N, {len(CLASS_NAMES)})")
    if not len(names) == len(y) == len(proba):
        raise ValueError(f"{len(names)} names, {len(y)} labels and {len(proba)} rows differ")
    pred = proba.argmax(axis=1)
    frame = pd.DataFrame(
        {
            "name": list(names),
            "split": split,
            "true_index": y,
            "true_label": [CLASS_NAMES[i] for i in y],
            "pred_index": pred,
            "pred_label": [CLASS_NAMES[i] for i in pred],
        }
    )
    for i, column in enumerate(PROBA_COLUMNS):
        frame[column] = proba[:, i]
    return frame


def write_predictions(frame: pd.DataFrame, path: Path) -> None:
    """Write the frame as CSV with round-trip float precision."""
    frame.loc[:, list(PREDICTION_COLUMNS)].to_csv(path, index=False, float_format="%.17g")


def read_predictions(path: Path) -> pd.DataFrame:
    """Read ``predictions.csv`` back, checking its columns."""
    frame = pd.read_csv(path, dtype={"name": str, "split": str})
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame


def split_sentence(split: str, n: int) -> str:
    """Which split the final numbers come from: the one wording of report, card and notes."""
    if split == "test":
        where = (
            f"the held-out test split ({n} images), used neither for training nor for "
            "choosing the trial"
        )
    else:
        where = (
            f"the VALIDATION split ({n} images), the split the best trial was selected on: "
            "the study holds out no test split (test_fraction 0), so these numbers are "
            "optimistic"
        )
    return (
        f"Every final number comes from {where}. They are computed from predictions.csv "
        "(see metrics.json)."
    )


def onnx_sentence(onnx: dict[str, Any], split: str) -> str:
    """The ONNX check in words: the largest difference in predicted probability between
    ``model.onnx`` and PyTorch (``onnx``: ``max_abs_prob_diff``, ``batch``)."""
    return (
        f"largest difference in predicted probability between ONNX Runtime and PyTorch: "
        f"{onnx['max_abs_prob_diff']:.1e}, over the four class probabilities of "
        f"{onnx['batch']} {split} images"
    )


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (stays inside [0, 1], good at small n)."""
    if total <= 0:
        raise ValueError(f"total={total}: need at least one trial")
    if not 0 <= successes <= total:
        raise ValueError(f"successes={successes} outside [0, {total}]")
    p = successes / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    # The bounds at 0 and n successes are exactly 0 and 1; rounding would nudge them.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == total else min(1.0, centre + half)
    return low, high


def _py(value: Any) -> Any:
    """numpy scalars -> Python numbers; NaN -> None (JSON has no NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def roc_auc_scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """One-vs-rest ROC AUC per class, micro average and macro average (mean of class AUCs).

    A class with no positive (or no negative) image in the split has no AUC (None) and
    is left out of the macro average. The numbers are ``trainer.metrics``'s.
    """
    per_class = roc_auc_per_class(y_true, proba)
    return {
        "per_class": {name: _py(v) for name, v in per_class.items()},
        "micro": _py(roc_auc_micro(y_true, proba)),
        "macro": _py(roc_auc_macro(per_class)),
        "macro_over": [name for name, v in per_class.items() if not math.isnan(v)],
    }


def compute_metrics(frame: pd.DataFrame) -> dict[str, Any]:
    """All numbers of the final-model report, from the predictions frame alone."""
    if frame.empty:
        raise ValueError("no predictions: the evaluated split is empty")
    splits = sorted(set(frame["split"]))
    if len(splits) != 1:
        raise ValueError(f"predictions mix splits {splits}; evaluate one split at a time")
    y = frame["true_index"].to_numpy(dtype=np.int64)
    pred = frame["pred_index"].to_numpy(dtype=np.int64)
    proba = frame.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=np.float64)
    counts = confusion(y, pred, len(CLASS_NAMES))
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalized = np.where(rows > 0, counts / np.maximum(rows, 1), np.nan)
    correct = int((y == pred).sum())
    low, high = wilson_interval(correct, len(y))
    return {
        "split": splits[0],
        "n": len(y),
        "class_names": list(CLASS_NAMES),
        "support": {name: int(rows[i, 0]) for i, name in enumerate(CLASS_NAMES)},
        "correct": correct,
        "accuracy": correct / len(y),
        "accuracy_ci95": [low, high],
        "accuracy_ci_method": "Wilson score interval, 95 %",
        "balanced_accuracy": balanced_accuracy(y, pred),
        "macro_f1": macro_f1(y, pred),
        "confusion": {
            "labels": list(CLASS_NAMES),
            "counts": counts.tolist(),
            "row_normalized": [[_py(v) for v in row] for row in normalized],
            "rows": "true class",
            "columns": "predicted class",
        },
        "roc_auc": roc_auc_scores(y, proba),
        "per_class": per_class_rows(y, pred),
    }


def roc_curves(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(FPR, TPR) per class (one-vs-rest), micro average and macro average (mean TPR)."""
    y = frame["true_index"].to_numpy(dtype=np.int64)
    proba = frame.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=np.float64)
    onehot = np.eye(len(CLASS_NAMES), dtype=np.int64)[y]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, name in enumerate(CLASS_NAMES):
        if 0 < onehot[:, i].sum() < len(y):
            fpr, tpr, _ = roc_curve(onehot[:, i], proba[:, i])
            curves[name] = (fpr, tpr)
    if curves:
        fpr, tpr, _ = roc_curve(onehot.ravel(), proba.ravel())
        curves["micro"] = (fpr, tpr)
        grid = np.unique(np.concatenate([c[0] for n, c in curves.items() if n != "micro"]))
        mean_tpr = np.mean(
            [np.interp(grid, *curves[n]) for n in CLASS_NAMES if n in curves], axis=0
        )
        curves["macro"] = (grid, mean_tpr)
    return curves


def _split_label(metrics: dict[str, Any]) -> str:
    return f"{metrics['split']} split, n = {metrics['n']}"


def confusion_figure(metrics: dict[str, Any], normalized: bool = False) -> go.Figure:
    """Heat map of the confusion matrix (counts, or rows normalized to 1)."""
    conf = metrics["confusion"]
    z = conf["row_normalized"] if normalized else conf["counts"]
    text = "%{z:.2f}" if normalized else "%{z:d}"
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=conf["labels"],
            y=conf["labels"],
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalized else None,
            texttemplate=text,
            hovertemplate="true %{y}<br>predicted %{x}<br>" + text + "<extra></extra>",
        )
    )
    kind = "row-normalized (recall per true class)" if normalized else "counts"
    fig.update_layout(
        xaxis_title="predicted class", yaxis_title="true class", yaxis_autorange="reversed"
    )
    title = f"Confusion matrix, {kind} — {_split_label(metrics)}"
    return fit_figure(fig, title, width=620, height=540)


def roc_figure(frame: pd.DataFrame, metrics: dict[str, Any]) -> go.Figure:
    """One-vs-rest ROC curves per class with their AUC, plus micro and macro averages."""
    curves = roc_curves(frame)
    aucs = metrics["roc_auc"]
    fig = go.Figure()
    for name in CLASS_NAMES:
        if name in curves:
            fpr, tpr = curves[name]
            label = f"{name} (AUC {aucs['per_class'][name]:.3f})"
            fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=label))
    if "micro" in curves:
        fig.add_trace(
            go.Scatter(
                x=curves["micro"][0],
                y=curves["micro"][1],
                mode="lines",
                line={"dash": "dot", "color": "black"},
                name=f"micro average (AUC {aucs['micro']:.3f})",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=curves["macro"][0],
                y=curves["macro"][1],
                mode="lines",
                line={"dash": "dash", "color": "grey"},
                name=f"macro average (mean of class AUCs {aucs['macro']:.3f})",
            )
        )
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"color": "lightgrey"}, name="chance")
    )
    fig.update_layout(xaxis_title="false positive rate", yaxis_title="true positive rate")
    title = f"ROC curves, one class vs rest — {_split_label(metrics)}"
    return fit_figure(fig, title, width=860, height=560)


def final_figures(frame: pd.DataFrame, metrics: dict[str, Any]) -> dict[str, go.Figure]:
    """The final model's figures by file stem: confusion counts, normalized, ROC."""
    return {
        "confusion_counts": confusion_figure(metrics),
        "confusion_normalized": confusion_figure(metrics, normalized=True),
        "roc": roc_figure(frame, metrics),
    }
