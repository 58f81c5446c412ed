"""The final model's evidence: predictions.csv -> metrics -> figures.

Everything here starts from the predictions frame (one row per image: true label,
predicted label, four probabilities), so every number in ``metrics.json`` and in the
report can be recomputed by anyone from ``predictions.csv``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reports.html import format_value
from reports.jsonable import plain
from reports.per_class import per_class_rows
from reports.sizing import fit_figure
from reports.uncertainty import (
    BOOTSTRAP_SEED,
    LEVEL,
    N_RESAMPLES,
    MetricFunction,
    PairedDifference,
    bootstrap_intervals,
    defined_auc_classes,
    macro_auc_over,
    mcnemar_exact,
    paired_bootstrap,
    paired_bootstrap_auc,
)
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


def roc_auc_scores(y_true: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """One-vs-rest ROC AUC per class, micro average and macro average (mean of class AUCs).

    A class with no positive (or no negative) image in the split has no AUC (None) and
    is left out of the macro average. The numbers are ``trainer.metrics``'s.
    """
    per_class = roc_auc_per_class(y_true, proba)
    return {
        "per_class": {name: plain(v) for name, v in per_class.items()},
        "micro": plain(roc_auc_micro(y_true, proba)),
        "macro": plain(roc_auc_macro(per_class)),
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
            "row_normalized": [[plain(v) for v in row] for row in normalized],
            "rows": "true class",
            "columns": "predicted class",
        },
        "roc_auc": roc_auc_scores(y, proba),
        "per_class": per_class_rows(y, pred),
    }


def roc_curves(frame: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(FPR, TPR) per class (one-vs-rest), micro average and macro average (mean TPR)."""
    # Imported here: scikit-learn takes most of a second to import, and the study
    # report (``hpsearch report``) draws no ROC curve.
    from sklearn.metrics import roc_curve

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
        averages = (
            ("micro", "dot", "black", f"micro average (AUC {aucs['micro']:.3f})"),
            ("macro", "dash", "grey", f"macro average (mean of class AUCs {aucs['macro']:.3f})"),
        )
        for key, dash, color, name in averages:
            x, y = curves[key][0], curves[key][1]
            line = {"dash": dash, "color": color}
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines", line=line, name=name))
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


# -- uncertainty: intervals, validation vs test, winner vs runner-up -------------------


def _arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, predicted labels and probabilities of a predictions frame."""
    y = frame["true_index"].to_numpy(dtype=np.int64)
    pred = frame["pred_index"].to_numpy(dtype=np.int64)
    proba = frame.loc[:, list(PROBA_COLUMNS)].to_numpy(dtype=np.float64)
    return y, pred, proba


def _per_class_ratios(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict[str, float]]:
    """The per-class table's ratios by class (its counts and undefined cells left out)."""
    return {
        str(row["class"]): {k: v for k, v in row.items() if isinstance(v, float)}
        for row in per_class_rows(y_true, y_pred)
    }


def bootstrap_metric_functions(y_true: np.ndarray, proba: np.ndarray) -> dict[str, MetricFunction]:
    """The report's numbers as functions of a resample (``trainer.metrics``'s definitions).

    The macro AUC of a resample averages the classes the full split defines (NaN when one
    is missing), so every resample measures the same quantity as the reported value.
    """
    classes = defined_auc_classes(y_true, proba)

    def aucs(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
        per_class = roc_auc_per_class(y, p)
        macro = macro_auc_over(per_class, classes)
        return {"per_class": per_class, "macro": macro, "micro": roc_auc_micro(y, p)}

    return {
        "balanced_accuracy": lambda y, p: balanced_accuracy(y, p.argmax(axis=1)),
        "macro_f1": lambda y, p: macro_f1(y, p.argmax(axis=1)),
        "roc_auc": aucs,
        "per_class": lambda y, p: _per_class_ratios(y, p.argmax(axis=1)),
    }


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}``."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def metric_intervals(
    frame: pd.DataFrame, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, Any]:
    """95 % intervals of every reported number (metrics.json's ``ci95``), from the frame alone.

    Accuracy: Wilson score interval. Everything else: percentile bootstrap over the
    evaluated images (``reports.uncertainty``), ``usable`` resamples out of ``n_resamples``.
    """
    y, pred, proba = _arrays(frame)
    low, high = wilson_interval(int((y == pred).sum()), len(y))
    found = bootstrap_intervals(y, proba, bootstrap_metric_functions(y, proba), n_resamples, seed)
    return {
        "level": LEVEL,
        "method": f"percentile bootstrap over the {len(y)} images of the evaluated split",
        "n_resamples": n_resamples,
        "seed": seed,
        "accuracy": {"low": low, "high": high, "method": "Wilson score interval"},
        **_nest({name: interval.to_dict() for name, interval in found.items()}),
    }


def _accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    return float((proba.argmax(axis=1) == y_true).mean())


def compare_predictions(
    winner: pd.DataFrame,
    runner_up: pd.DataFrame,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """Winner against runner-up on the same images: exact McNemar for accuracy, paired
    bootstrap for the accuracy and macro ROC-AUC differences (winner minus runner-up)."""
    if list(winner["name"]) != list(runner_up["name"]) or not np.array_equal(
        winner["true_index"].to_numpy(), runner_up["true_index"].to_numpy()
    ):
        raise ValueError("the two predictions frames are not of the same images in one order")
    y, pred_a, proba_a = _arrays(winner)
    _, pred_b, proba_b = _arrays(runner_up)
    test = mcnemar_exact(pred_a == y, pred_b == y)
    acc = paired_bootstrap(y, proba_a, proba_b, _accuracy, n_resamples, seed)
    auc = paired_bootstrap_auc(y, proba_a, proba_b, seed, n_resamples)
    macro = (
        roc_auc_macro(roc_auc_per_class(y, proba_a)),
        roc_auc_macro(roc_auc_per_class(y, proba_b)),
    )
    return {
        "split": str(winner["split"].iloc[0]),
        "n": len(y),
        "level": LEVEL,
        "n_resamples": n_resamples,
        "seed": seed,
        "accuracy": {
            "winner": _accuracy(y, proba_a),
            "runner_up": _accuracy(y, proba_b),
            **_difference(acc),
            "n01": test.n01,
            "n10": test.n10,
            "p_value": test.p_value,
            "test": "exact McNemar (two-sided binomial test on the discordant images)",
        },
        "roc_auc_macro": {
            "winner": plain(macro[0]),
            "runner_up": plain(macro[1]),
            **_difference(auc),
            "p_value": auc.p_value,
            "test": "paired bootstrap (same resampled images for both models)",
        },
    }


def _difference(paired: PairedDifference) -> dict[str, Any]:
    return {
        "difference": plain(paired.difference),
        "ci95": [paired.low, paired.high],
        "interval": "paired percentile bootstrap",
        "usable": paired.usable,
    }


# -- uncertainty tables (report.html and MODEL_CARD.md) ---------------------------------


def interval_text(interval: dict[str, Any] | None) -> str:
    """``[low, high]`` of an interval entry of ``ci95`` ('–' when there is none).

    Brackets, not a dash: a difference's bounds can be negative.
    """
    if not interval or interval.get("low") is None:
        return "–"
    return f"[{format_value(interval['low'])}, {format_value(interval['high'])}]"


def interval_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Every headline number with its 95 % interval; [] for metrics without ``ci95``."""
    ci = metrics.get("ci95")
    if not ci:
        return []
    auc, ci_auc = metrics["roc_auc"], ci.get("roc_auc", {})
    boot = f"bootstrap, {ci['n_resamples']} resamples"
    entries = [
        ("accuracy", metrics["accuracy"], ci["accuracy"], ci["accuracy"]["method"]),
        ("balanced accuracy", metrics["balanced_accuracy"], ci.get("balanced_accuracy"), boot),
        ("macro F1", metrics["macro_f1"], ci.get("macro_f1"), boot),
        ("ROC AUC, macro", auc["macro"], ci_auc.get("macro"), boot),
        ("ROC AUC, micro", auc["micro"], ci_auc.get("micro"), boot),
    ]
    per_class = ci_auc.get("per_class", {})
    entries += [
        (f"ROC AUC, {name}", value, per_class.get(name), boot)
        for name, value in auc["per_class"].items()
    ]
    return [
        {
            "metric": label,
            "value": value,
            "95 % interval": interval_text(interval),
            "method": method,
            "usable resamples": (interval or {}).get("usable", "–"),
        }
        for label, value, interval, method in entries
    ]


def per_class_interval_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """The per-class table's ratios with their 95 % intervals: one row per ratio, one
    column per class, cells ``value [low, high]`` (empty without ``ci95``).

    Ratios as rows keep it narrow however many columns the per-class table has.
    """
    ci = (metrics.get("ci95") or {}).get("per_class")
    if not ci:
        return pd.DataFrame()
    rows = {str(row["class"]): row for row in metrics.get("per_class", [])}
    found = {k for by_ratio in ci.values() for k in by_ratio}
    # In the per-class table's column order.
    ratios = [k for k in dict.fromkeys(k for row in rows.values() for k in row) if k in found]

    def cell(name: str, ratio: str) -> str:
        value, interval = rows.get(name, {}).get(ratio), ci.get(name, {}).get(ratio)
        return f"{format_value(value)} {interval_text(interval)}" if interval else "–"

    return pd.DataFrame(
        [{"ratio": ratio, **{name: cell(name, ratio) for name in CLASS_NAMES}} for ratio in ratios]
    )


def _class_auc(name: str) -> Callable[[dict[str, Any]], Any]:
    """Reads class ``name``'s ROC AUC from metrics.json."""
    return lambda m: m["roc_auc"]["per_class"][name]


#: Validation metrics the trial recorded -> where the same number is in metrics.json.
_SELECTED_AS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "val_accuracy": ("accuracy", lambda m: m["accuracy"]),
    "val_balanced_accuracy": ("balanced accuracy", lambda m: m["balanced_accuracy"]),
    "val_macro_f1": ("macro F1", lambda m: m["macro_f1"]),
    "val_auc_macro": ("ROC AUC, macro", lambda m: m["roc_auc"]["macro"]),
    **{f"val_auc_{name}": (f"ROC AUC, {name}", _class_auc(name)) for name in CLASS_NAMES},
}


def selection_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """The winner's validation value (what chose it) next to its test value, per metric.

    [] unless the evaluated split is the held-out test split.
    """
    selection = (metrics.get("model") or {}).get("selection_metrics") or {}
    if metrics["split"] != "test":
        return []
    objective = (metrics.get("model") or {}).get("metric")
    rows = []
    for key, (label, read) in _SELECTED_AS.items():
        val, test = selection.get(key), plain(read(metrics))
        if val is None or test is None:
            continue
        rows.append(
            {
                "metric": label + (" (the objective)" if key == objective else ""),
                "validation (selection)": val,
                "test": test,
                "test − validation": test - val,
            }
        )
    return rows


def selection_sentence(metrics: dict[str, Any]) -> str | None:
    """One line: the objective on validation, the same number on test, the difference."""
    model = metrics.get("model") or {}
    objective, value = model.get("metric"), model.get("value")
    if metrics["split"] != "test" or objective not in _SELECTED_AS or value is None:
        return None
    label, read = _SELECTED_AS[objective]
    test = plain(read(metrics))
    if test is None:
        return None
    sentence = (
        f"Selected on {objective} = {format_value(value)} (validation split); its "
        f"{label} on the held-out test split is {format_value(test)} "
        f"({format_value(test - value)}): the difference is what choosing the best trial on "
        "the validation split added to its validation number, plus sampling noise."
    )
    if model.get("source") == "retrain":
        sentence += " (With --retrain the tested model was trained again on train+validation.)"
    return sentence


def comparison_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Winner against runner-up: both values, difference, its interval, p-value, test."""
    comparison = metrics.get("comparison") or {}
    rows = []
    for key, label in (("accuracy", "accuracy"), ("roc_auc_macro", "ROC AUC, macro")):
        entry = comparison.get(key)
        if not entry:
            continue
        low, high = entry["ci95"]
        extra = (
            f"; discordant: {entry['n10']} only winner right, {entry['n01']} only runner-up right"
            if "n01" in entry
            else ""
        )
        rows.append(
            {
                "metric": label,
                "winner": entry["winner"],
                "runner-up": entry["runner_up"],
                "difference": entry["difference"],
                "95 % interval": interval_text({"low": low, "high": high}),
                "p-value": entry["p_value"],
                "test": entry["test"] + extra,
            }
        )
    return rows
