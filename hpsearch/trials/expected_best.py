"""Expected best validation value against the number of trials.

How good a result would a search of ``n`` trials have found? Following Dodge et al.
("Show Your Work", EMNLP 2019), the search's ``N`` complete trials are taken as draws
from the distribution of results its space and sampler give, and the curve is the
expected best of ``n`` of them, for ``n = 1 .. N``. The estimator is the unbiased one of
Tang et al. (2020): the expected maximum of ``n`` draws *without* replacement from the
``N`` observed values. With the values sorted ascending ``v_1 <= .. <= v_N``,

    E[max_n] = sum_{i=n}^{N} v_i * C(i - 1, n - 1) / C(N, n)

(``v_i`` is the maximum of an ``n``-subset when the subset holds it and ``n - 1`` of the
``i - 1`` values below it). For a minimised metric the minimum is taken the same way on
the values sorted descending. ``n = 1`` gives the mean, ``n = N`` the observed best, and
the curve never gets worse as ``n`` grows.

A flat curve says more trials would barely have helped; a curve still rising at ``N``
says the search had not settled. The band is a percentile bootstrap: the ``N`` values
resampled with replacement, the curve recomputed on each resample, and the 2.5 and
97.5 percentiles at each ``n`` (a fixed seed, so the same study gives the same band).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Bootstrap resamples of the band, and the seed that makes the band reproducible.
N_BOOT = 1000
BOOT_SEED = 20190
#: How many of the best values give the fallback standard error (see :func:`top_values_se`).
TOP_FOR_SE = 5
#: Points of the curve at most: a study of more trials gets them spread over 1 .. N (the
#: weights are a points x N matrix, so 10,000 trials stay at a few MB and well under 1 s).
MAX_POINTS = 200
#: Resamples x trials at most for the band; larger studies get fewer resamples (>= 100).
BOOT_BUDGET = 2_000_000


def curve_points(size: int) -> np.ndarray:
    """The ``n`` at which the curve is given: every ``n`` up to :data:`MAX_POINTS` trials,
    else :data:`MAX_POINTS` of them spread geometrically, 1 and ``size`` included."""
    if size <= MAX_POINTS:
        return np.arange(1, size + 1)
    spread = np.geomspace(1, size, MAX_POINTS).round().astype(int)
    return np.unique(np.concatenate(([1], spread, [size])))


@dataclass(frozen=True)
class ExpectedBest:
    """The expected-best curve of a search, its bootstrap band and its read-out."""

    n: list[int]
    value: list[float]
    low: list[float]
    high: list[float]
    within_one_se_at: int | None
    """Smallest ``n`` whose expected best is within ``se`` of the observed best."""
    se: float | None
    """The standard error used for ``within_one_se_at`` (see :func:`expected_best`)."""
    se_source: str | None
    """Where ``se`` came from, in words."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "within_one_se_at": self.within_one_se_at,
            "se": self.se,
            "se_source": self.se_source,
        }


def _weights(size: int, points: np.ndarray | None = None) -> np.ndarray:
    """``W[n - 1, i - 1] = C(i - 1, n - 1) / C(N, n)`` for ``N = size`` (0 where ``i < n``):
    the probability that the ``i``-th smallest of ``N`` values is the largest of a random
    ``n``-subset. Each row sums to 1 (rescaled so that rounding does not move it);
    computed through log-factorials, so a large ``N`` neither overflows nor needs big
    integers."""
    log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, size + 1)))))
    n = (np.arange(1, size + 1) if points is None else points)[:, None]
    i = np.arange(1, size + 1)[None, :]
    valid = i >= n
    k = np.where(valid, i - n, 0)
    log_w = (
        log_fact[i - 1]
        - log_fact[n - 1]
        - log_fact[k]
        - (log_fact[size] - log_fact[n] - log_fact[size - n])
    )
    weights = np.where(valid, np.exp(np.where(valid, log_w, 0.0)), 0.0)
    normalised: np.ndarray = weights / weights.sum(axis=1, keepdims=True)  # rounding only
    return normalised


def expected_best_curve(
    values: Sequence[float], maximize: bool = True, points: np.ndarray | None = None
) -> np.ndarray:
    """The expected best of ``n`` of ``values`` drawn without replacement, for each ``n``
    of ``points`` (default ``1 .. N``; the estimator in the module's docstring); an empty
    array for no values."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.empty(0)
    ordered = np.sort(v) if maximize else -np.sort(-v)  # ascending, or descending to minimise
    curve: np.ndarray = _weights(v.size, points) @ ordered
    return curve


def bootstrap_band(
    values: Sequence[float],
    maximize: bool = True,
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    points: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """2.5 and 97.5 percentiles, at each ``n``, of the curve over ``n_boot`` resamples of
    ``values`` with replacement (each resample has ``N`` values, so each curve has ``N``
    points); the same ``seed`` gives the same band."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return np.empty(0), np.empty(0)
    n_boot = min(n_boot, max(100, BOOT_BUDGET // v.size))
    rng = np.random.default_rng(seed)
    samples = np.sort(rng.choice(v, size=(n_boot, v.size), replace=True), axis=1)
    if not maximize:
        samples = samples[:, ::-1]
    curves = samples @ _weights(v.size, points).T
    low, high = np.percentile(curves, [2.5, 97.5], axis=0)
    return low, high


def within_one_se_at(curve: np.ndarray, best: float, se: float) -> int | None:
    """The smallest ``n`` (1-based) whose expected best is no more than ``se`` away from
    ``best``, on a curve given at every ``n``; None without a curve or a finite,
    non-negative ``se``."""
    if curve.size == 0 or not math.isfinite(se) or se < 0:
        return None
    close = np.flatnonzero(np.abs(best - curve) <= se * (1 + 1e-12) + 1e-15)
    return int(close[0]) + 1 if close.size else None


def first_within(values: Sequence[float], maximize: bool, best: float, se: float) -> int | None:
    """:func:`within_one_se_at` for a study of any size: the curve never gets worse as
    ``n`` grows, so the smallest ``n`` is found by bisection, one curve point at a time."""
    if not values or not math.isfinite(se) or se < 0:
        return None

    def close(n: int) -> bool:
        point = expected_best_curve(values, maximize, np.array([n]))[0]
        return bool(abs(best - point) <= se * (1 + 1e-12) + 1e-15)

    low, high = 1, len(values)
    if not close(high):
        return None
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if close(middle) else (middle + 1, high)
    return low


def top_values_se(values: Sequence[float], maximize: bool = True, top: int = TOP_FOR_SE) -> float:
    """Sample standard deviation (n - 1) of the ``top`` best values (all when fewer);
    NaN with fewer than two values. A stand-in for run-to-run noise where no seed was
    repeated (see :func:`expected_best`)."""
    v = np.sort(np.asarray(values, dtype=float))
    best = v[::-1][:top] if maximize else v[:top]
    return float(best.std(ddof=1)) if best.size >= 2 else math.nan


def expected_best(
    values: Sequence[float],
    maximize: bool = True,
    seed_sd: float | None = None,
    n_boot: int = N_BOOT,
) -> ExpectedBest | None:
    """The curve, its band and the read-out "k trials reach within one standard error of
    the best"; None without values.

    The standard error is that of one trial's value, the observed best included: a
    trial is one training run, so its value carries the run-to-run (seed) noise whole.
    ``seed_sd`` is that noise measured directly, the standard deviation over the seeds
    of the confirmation's leading configuration (``hpsearch confirm``), used when given.
    Without it, the standard deviation of the best :data:`TOP_FOR_SE` values stands in:
    those configurations are near the top, so much of their spread is seed noise, but
    any real difference between them adds to it, so this ``se`` is larger than the
    noise and ``k`` is then a lenient (smaller) reading. ``k`` is the smallest ``n``
    whose expected best is within ``se`` of the observed best: a search of ``k`` trials
    would on average have ended within noise of this one's answer.
    """
    v = [float(x) for x in values]
    if not v:
        return None
    points = curve_points(len(v))
    curve = expected_best_curve(v, maximize, points)
    low, high = bootstrap_band(v, maximize, n_boot, points=points)
    if seed_sd is not None and math.isfinite(seed_sd):
        se, source = seed_sd, "sd of the confirmed leader's seeds"
    else:
        se, source = top_values_se(v, maximize), f"sd of the top {TOP_FOR_SE} values"
    best = max(v) if maximize else min(v)
    finite = math.isfinite(se)
    return ExpectedBest(
        n=[int(x) for x in points],
        value=[float(x) for x in curve],
        low=[float(x) for x in low],
        high=[float(x) for x in high],
        within_one_se_at=first_within(v, maximize, best, se) if finite else None,
        se=se if finite else None,
        se_source=source if finite else None,
    )
