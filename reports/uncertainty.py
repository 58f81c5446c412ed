"""How sure the final numbers are: bootstrap intervals and paired comparisons.

Pure functions of labels and probabilities; the metrics themselves are passed in (the
export passes ``trainer.metrics``'s, so an interval is always around the number reported).

The resampling is fixed so anyone can redo it: ``rng = np.random.default_rng(seed)``,
then for each resample ``idx = rng.integers(0, n, size=n)`` (images drawn with
replacement), the metric computed on ``y_true[idx], proba[idx]``. The interval is the
percentile interval of those values (``np.nanpercentile``, linear interpolation). A
resample can leave a metric undefined (no image of a class: that class's AUC is NaN);
such resamples are skipped for that metric and the count of usable ones is reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.metrics import roc_auc_macro, roc_auc_per_class

#: Resamples of every bootstrap in an export (the floor the project promises).
N_RESAMPLES = 1000
#: The bootstrap's seed in an export, recorded in metrics.json.
BOOTSTRAP_SEED = 0
#: Two-sided coverage of every interval.
LEVEL = 0.95

#: ``metric(y_true, proba)``: a number, or a (nested) mapping of numbers by name.
MetricFunction = Callable[[np.ndarray, np.ndarray], Any]


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval; ``low``/``high`` are None when no resample was usable."""

    low: float | None
    high: float | None
    usable: int
    """Resamples on which the metric was defined (not NaN)."""
    n_resamples: int

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "usable": self.usable}


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two classifiers on the same images."""

    n01: int
    """Images A got wrong and B got right."""
    n10: int
    """Images A got right and B got wrong."""
    p_value: float
    """Two-sided exact binomial p of ``n10`` among ``n01 + n10`` at one half."""


@dataclass(frozen=True)
class PairedDifference:
    """``metric(A) - metric(B)`` on the same images, with its paired bootstrap interval."""

    difference: float
    low: float | None
    high: float | None
    p_value: float | None
    """Two-sided: twice the smaller share of resampled differences on one side of zero,
    with the usual +1 so it is never 0 (about where the percentile interval touches 0)."""
    usable: int
    n_resamples: int


def resample_indices(n: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The bootstrap's image indices, one array of ``n`` per resample (see the module doc)."""
    if n <= 0:
        raise ValueError(f"n={n}: nothing to resample")
    if n_resamples <= 0:
        raise ValueError(f"n_resamples={n_resamples}: need at least one resample")
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        yield rng.integers(0, n, size=n)


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """A number or nested mapping of numbers as ``{"a/b": x}``; None becomes NaN."""
    if isinstance(value, Mapping):
        out: dict[str, float] = {}
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}/{key}" if prefix else str(key)))
        return out
    return {prefix: math.nan if value is None else float(value)}


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    """The nan-aware percentile interval of bootstrap ``values``."""
    values = np.asarray(values, dtype=np.float64)
    usable = int(np.isfinite(values).sum())
    if usable == 0:
        return Interval(None, None, 0, values.size)
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values[np.isfinite(values)], [tail, 100 - tail])
    return Interval(float(low), float(high), usable, values.size)


def bootstrap_values(
    y_true: np.ndarray, proba: np.ndarray, metrics: Mapping[str, MetricFunction], **resampling: int
) -> dict[str, np.ndarray]:
    """Every metric on every resample, flattened by name (see :func:`flatten`)."""
    y_true, proba = np.asarray(y_true), np.asarray(proba)
    rows: list[dict[str, float]] = []
    n_resamples = resampling.get("n_resamples", N_RESAMPLES)
    seed = resampling.get("seed", BOOTSTRAP_SEED)
    for idx in resample_indices(len(y_true), n_resamples, seed):
        y, p = y_true[idx], proba[idx]
        row: dict[str, float] = {}
        for name, metric in metrics.items():
            row.update(flatten(metric(y, p), name))
        rows.append(row)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return {k: np.array([row.get(k, math.nan) for row in rows]) for k in keys}


def bootstrap_intervals(
    y_true: np.ndarray,
    proba: np.ndarray,
    metrics: Mapping[str, MetricFunction],
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """Percentile bootstrap interval of each metric over resamples of the images.

    A metric that returns a mapping gets one interval per leaf, named ``metric/key/...``.
    """
    values = bootstrap_values(y_true, proba, metrics, n_resamples=n_resamples, seed=seed)
    return {name: percentile_interval(v, level) for name, v in values.items()}


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact (binomial) McNemar test on the discordant images of two classifiers:
    scipy's two-sided binomial test of ``n10`` among ``n01 + n10`` at one half."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"correct_a has shape {a.shape} but correct_b has {b.shape}")
    n01 = int((~a & b).sum())
    n10 = int((a & ~b).sum())
    n = n01 + n10
    if n == 0:
        return McNemar(0, 0, 1.0)
    from scipy.stats import binomtest

    return McNemar(n01, n10, float(binomtest(n10, n, 0.5).pvalue))


def paired_bootstrap(
    y_true: np.ndarray,
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = LEVEL,
) -> PairedDifference:
    """``metric(A) - metric(B)``; each resample draws the same images for both models."""
    y_true, proba_a, proba_b = np.asarray(y_true), np.asarray(proba_a), np.asarray(proba_b)
    if proba_a.shape != proba_b.shape or len(proba_a) != len(y_true):
        raise ValueError(
            f"{len(y_true)} labels, probabilities {proba_a.shape} and {proba_b.shape} differ"
        )
    observed = metric(y_true, proba_a) - metric(y_true, proba_b)
    diffs = np.array(
        [
            metric(y_true[idx], proba_a[idx]) - metric(y_true[idx], proba_b[idx])
            for idx in resample_indices(len(y_true), n_resamples, seed)
        ],
        dtype=np.float64,
    )
    interval = percentile_interval(diffs, level)
    return PairedDifference(
        difference=float(observed),
        low=interval.low,
        high=interval.high,
        p_value=bootstrap_p_value(diffs),
        usable=interval.usable,
        n_resamples=n_resamples,
    )


def bootstrap_p_value(diffs: np.ndarray) -> float | None:
    """Two-sided p that the difference is 0, from the resampled differences (NaN skipped)."""
    usable: np.ndarray = diffs[np.isfinite(diffs)]
    if usable.size == 0:
        return None
    below = (1 + int((usable <= 0).sum())) / (usable.size + 1)
    above = (1 + int((usable >= 0).sum())) / (usable.size + 1)
    return min(1.0, 2 * min(below, above))


def paired_bootstrap_auc(
    y_true: np.ndarray,
    proba_a: np.ndarray,
    proba_b: np.ndarray,
    seed: int = BOOTSTRAP_SEED,
    n_resamples: int = N_RESAMPLES,
) -> PairedDifference:
    """Macro ROC-AUC of A minus B (``trainer.metrics``'s), paired bootstrap.

    The macro mean is over the classes whose AUC the full split defines; a resample that
    leaves one of them undefined is not usable (a mean over fewer classes is another number).
    """
    classes = defined_auc_classes(y_true, proba_a)

    def macro(y: np.ndarray, proba: np.ndarray) -> float:
        return macro_auc_over(roc_auc_per_class(y, proba), classes)

    return paired_bootstrap(y_true, proba_a, proba_b, macro, n_resamples, seed)


def defined_auc_classes(y_true: np.ndarray, proba: np.ndarray) -> tuple[str, ...]:
    """Classes whose one-vs-rest AUC is defined on these labels."""
    return tuple(k for k, v in roc_auc_per_class(y_true, proba).items() if not math.isnan(v))


def macro_auc_over(per_class: Mapping[str, float], classes: tuple[str, ...]) -> float:
    """``trainer.metrics``'s macro mean of ``per_class``, NaN unless all ``classes`` are defined."""
    if any(math.isnan(per_class[c]) for c in classes):
        return math.nan
    return roc_auc_macro({c: per_class[c] for c in classes})
