"""Classification metrics of the four-class task: the one definition of each number.

The epoch selection during training (``trainer.fit``) and the final report
(``reports.final``) both take their numbers from here, so they cannot disagree.
Everything is scikit-learn's: balanced accuracy over the classes present in ``y_true``,
macro F1 over the classes present in ``y_true`` or the predictions, one-vs-rest
ROC-AUC (ties count one half). A class's AUC is undefined (NaN) when the split has no
image of it, or only images of it, and is left out of the macro mean.

scikit-learn is imported where a number is computed, not with this module: it takes
most of a second, which commands that only read a study (``status``, ``report``) need
not pay.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from trainer.classes import CLASS_NAMES

NORMAL = CLASS_NAMES.index("normal")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 4) -> np.ndarray:
    """Counts ``[true, predicted]`` as an int64 ``(num_classes, num_classes)`` array."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has shape {y_true.shape} but y_pred has {y_pred.shape}")
    if y_true.size == 0:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    from sklearn.metrics import confusion_matrix

    matrix: np.ndarray = confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))
    return matrix.astype(np.int64)


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``; NaN for no labels."""
    if len(y_true) == 0:
        return math.nan
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # A prediction may name a class the split lacks: that class has no recall, as meant.
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(y_true, y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the classes present in ``y_true`` or ``y_pred``; NaN for no labels."""
    if len(y_true) == 0:
        return math.nan
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro"))


def recall_and_specificity(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """One-vs-rest recall (sensitivity) and specificity of each class: ``recall_<class>``
    is the share of the class's images predicted as it, ``specificity_<class>`` the share
    of the other images not predicted as it; NaN where the class has no image (or every
    image is of it)."""
    matrix = confusion(y_true, y_pred, len(CLASS_NAMES))
    total = matrix.sum()
    out: dict[str, float] = {}
    for k, name in enumerate(CLASS_NAMES):
        tp, positives, predicted = matrix[k, k], matrix[k].sum(), matrix[:, k].sum()
        negatives = total - positives
        out[f"recall_{name}"] = float(tp / positives) if positives else math.nan
        true_negatives = negatives - (predicted - tp)
        out[f"specificity_{name}"] = float(true_negatives / negatives) if negatives else math.nan
    return out


def roc_auc_per_class(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """One-vs-rest ROC-AUC by class name; NaN where the split lacks positives or negatives.

    Rows of ``proba`` with a NaN (a diverged model) count as uniform.
    """
    from sklearn.metrics import roc_auc_score

    y_true, proba = _checked(y_true, proba)
    out: dict[str, float] = {}
    for k, name in enumerate(CLASS_NAMES):
        positive = y_true == k
        defined = 0 < int(positive.sum()) < positive.size
        out[name] = float(roc_auc_score(positive, proba[:, k])) if defined else math.nan
    return out


def roc_auc_macro(per_class: dict[str, float]) -> float:
    """Mean of the defined class AUCs of :func:`roc_auc_per_class`; NaN if none is."""
    defined = [v for v in per_class.values() if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def roc_auc_micro(y_true: np.ndarray, proba: np.ndarray) -> float:
    """ROC-AUC of all (image, class) pairs pooled; NaN when no class AUC is defined."""
    y_true, proba = _checked(y_true, proba)
    if np.unique(y_true).size < 2:  # no class has both positives and negatives
        return math.nan
    from sklearn.metrics import roc_auc_score

    onehot = np.eye(len(CLASS_NAMES), dtype=np.int64)[y_true]
    return float(roc_auc_score(onehot.ravel(), proba.ravel()))


def classification_metrics(
    y_true: np.ndarray, proba: np.ndarray, loss: float | None = None
) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 and one-vs-rest ROC-AUC from class probabilities.

    Keys: ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``recall_<class>`` and
    ``specificity_<class>`` (:func:`recall_and_specificity`), ``auc_<class>`` for each class,
    ``auc_macro`` (mean over the classes whose AUC is defined; a class absent from
    ``y_true`` gets NaN) and ``loss`` when given. Rows of ``proba`` with a NaN (a diverged
    model) count as uniform.
    """
    from sklearn.metrics import accuracy_score

    y_true, proba = _checked(y_true, proba)
    y_pred = proba.argmax(axis=1)
    out: dict[str, float] = {
        "accuracy": float(accuracy_score(y_true, y_pred)) if y_true.size else 0.0,
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
        "macro_f1": macro_f1(y_true, y_pred),
    }
    out.update(recall_and_specificity(y_true, y_pred))
    aucs = roc_auc_per_class(y_true, proba)
    out.update({f"auc_{name}": auc for name, auc in aucs.items()})
    out["auc_macro"] = roc_auc_macro(aucs)
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


def _checked(y_true: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 and probabilities as float64 (N, classes), NaN rows made uniform."""
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
    return y_true, proba
