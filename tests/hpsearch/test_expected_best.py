"""The expected best validation value against the number of trials."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hpsearch.trials.expected_best import (
    MAX_POINTS,
    bootstrap_band,
    expected_best,
    expected_best_curve,
    first_within,
    top_values_se,
    within_one_se_at,
)

CASES = [
    [0.5],
    [0.3, 0.9],
    [0.7, 0.2, 0.9, 0.4],
    [0.8, 0.8, 0.6, 0.8, 0.1],  # ties
    [0.61, 0.55, 0.72, 0.72, 0.40, 0.66],
    [2.0, -1.0, 0.5, 0.5, 3.5, -1.0, 0.0],  # N = 7, ties, negative values
]


def _brute_force(values: list[float], maximize: bool) -> list[float]:
    """Mean over every n-subset (by position, so tied values count apart) of its best."""
    best = max if maximize else min
    return [
        float(np.mean([best(s) for s in itertools.combinations(values, n)]))
        for n in range(1, len(values) + 1)
    ]


@pytest.mark.parametrize("maximize", [True, False])
@pytest.mark.parametrize("values", CASES)
def test_the_estimator_equals_every_subset_enumerated(values: list[float], maximize: bool) -> None:
    curve = expected_best_curve(values, maximize)
    assert curve.tolist() == pytest.approx(_brute_force(values, maximize), abs=1e-12)
    # n = 1 is the mean; n = N the observed best
    assert curve[0] == pytest.approx(np.mean(values), abs=1e-12)
    assert curve[-1] == (max(values) if maximize else min(values))


@pytest.mark.parametrize("values", CASES)
def test_the_curve_never_gets_worse_with_more_trials(values: list[float]) -> None:
    assert np.all(np.diff(expected_best_curve(values, True)) >= -1e-12)
    assert np.all(np.diff(expected_best_curve(values, False)) <= 1e-12)


def test_a_large_search_neither_overflows_nor_loses_the_ends() -> None:
    values = np.random.default_rng(3).uniform(0.5, 0.9, size=1500)
    curve = expected_best_curve(values)
    assert np.all(np.isfinite(curve))
    assert curve[0] == pytest.approx(values.mean(), abs=1e-9)
    assert curve[-1] == pytest.approx(values.max(), abs=1e-12)
    assert np.all(np.diff(curve) >= -1e-12)


def test_the_band_is_reproducible_and_brackets_plausible_curves() -> None:
    values = [0.62, 0.70, 0.55, 0.81, 0.77, 0.68, 0.73]
    low, high = bootstrap_band(values, n_boot=400)
    again = bootstrap_band(values, n_boot=400)
    assert low.tolist() == again[0].tolist() and high.tolist() == again[1].tolist()
    assert np.all(low <= high)
    # a resample's best can never exceed the observed best, nor its worst fall below
    # the observed worst: the band stays within the values' range
    assert np.all(high <= max(values) + 1e-12) and np.all(low >= min(values) - 1e-12)
    # n = 1: the band is that of a resample's mean, around the mean
    assert low[0] < np.mean(values) < high[0]
    other_seed = bootstrap_band(values, n_boot=400, seed=1)
    assert other_seed[0].tolist() != low.tolist()


def test_one_standard_error_reads_the_first_n_close_enough() -> None:
    curve = np.array([0.60, 0.70, 0.76, 0.79, 0.80])
    assert within_one_se_at(curve, 0.80, 0.05) == 3  # 0.76 is within 0.05 of 0.80
    assert within_one_se_at(curve, 0.80, 0.01) == 4
    assert within_one_se_at(curve, 0.80, 0.0) == 5  # only the best itself
    assert within_one_se_at(curve, 0.80, math.nan) is None
    # minimising: distances count the same way
    assert within_one_se_at(-curve, -0.80, 0.05) == 3


def test_the_read_out_uses_the_seed_noise_when_given() -> None:
    values = [0.62, 0.70, 0.55, 0.81, 0.77, 0.68, 0.73]
    curve = expected_best_curve(values)
    measured = expected_best(values, seed_sd=0.02, n_boot=200)
    assert measured is not None and measured.se == 0.02
    assert measured.se_source == "sd of the confirmed leader's seeds"
    k = measured.within_one_se_at
    assert k is not None and 0.81 - curve[k - 1] <= 0.02 < 0.81 - curve[k - 2]
    fallback = expected_best(values, n_boot=200)
    assert fallback is not None and fallback.se_source == "sd of the top 5 values"
    assert fallback.se == pytest.approx(np.std([0.81, 0.77, 0.73, 0.70, 0.68], ddof=1))
    assert fallback.n == list(range(1, 8)) and fallback.value == pytest.approx(curve.tolist())


def test_top_values_se_takes_the_best_end() -> None:
    values = [0.1, 0.2, 0.9, 0.8, 0.85]
    assert top_values_se(values, True, top=2) == pytest.approx(np.std([0.9, 0.85], ddof=1))
    assert top_values_se(values, False, top=2) == pytest.approx(np.std([0.1, 0.2], ddof=1))
    assert math.isnan(top_values_se([0.5]))


def test_no_values_no_curve() -> None:
    assert expected_best([]) is None
    single = expected_best([0.7])
    assert single is not None and single.value == [0.7] and single.within_one_se_at is None


def test_a_large_study_gets_a_bounded_curve_and_the_exact_read_out() -> None:
    import time

    rng = np.random.default_rng(3)
    values = list(rng.normal(0.8, 0.05, 10_000))
    started = time.process_time()
    summary = expected_best(values, True, seed_sd=0.01)
    assert summary is not None
    # at most MAX_POINTS points, from 1 to N, and the ends are the mean and the best
    assert len(summary.n) <= MAX_POINTS and summary.n[0] == 1 and summary.n[-1] == 10_000
    assert summary.value[0] == pytest.approx(np.mean(values))
    assert summary.value[-1] == pytest.approx(max(values))
    # the bisection's k is the first n of the full curve within one se of the best
    small = values[:300]
    full = expected_best_curve(small, True)
    assert first_within(small, True, max(small), 0.01) == within_one_se_at(full, max(small), 0.01)
    # CPU seconds, not wall time: a figure for the record, far from any limit
    print(f"10,000 trials: {time.process_time() - started:.2f} CPU s")
