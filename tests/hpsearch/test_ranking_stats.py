"""The confirmed ranking's statistics: the paired comparison and intervals kept in range."""

from __future__ import annotations

import math

import numpy as np
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, create_trial
from scipy import stats

from hpsearch.study.ranking import (
    INDISTINGUISHABLE,
    format_ranking,
    mean_interval,
    paired_comparison,
    rank,
)


def _run(source: int, seed: int, value: float) -> FrozenTrial:
    return create_trial(
        params={"lr": [0.001, 0.01, 0.1][source]},
        distributions={"lr": CategoricalDistribution([0.001, 0.01, 0.1])},
        value=value,
        user_attrs={"confirm_of": source, "seed": seed},
    )


def _trials(values: dict[int, dict[int, float]]) -> list[FrozenTrial]:
    return [_run(src, seed, v) for src, runs in values.items() for seed, v in runs.items()]


def test_the_paired_t_equals_scipy_ttest_rel() -> None:
    a = {11: 0.83, 12: 0.80, 13: 0.86, 14: 0.84, 15: 0.79, 16: 0.88, 17: 0.82}
    b = {11: 0.81, 12: 0.80, 13: 0.83, 14: 0.80, 15: 0.78, 16: 0.84, 17: 0.83}
    ranking = rank(_trials({0: a, 1: b}), "maximize")
    paired = ranking.paired
    assert paired is not None and paired.leader == 0 and paired.other == 1
    seeds = sorted(a)
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    scipy_t = stats.ttest_rel(x, y)
    assert paired.t == pytest.approx(float(scipy_t.statistic), rel=1e-12)
    assert paired.p_value == pytest.approx(float(scipy_t.pvalue), rel=1e-10)
    assert paired.df == int(scipy_t.df) == 6
    low, high = scipy_t.confidence_interval(0.95)
    assert paired.ci95 == pytest.approx((low, high), abs=1e-12)
    assert paired.mean == pytest.approx(float((x - y).mean()), abs=1e-12)
    # 7 pairs: no exact test is added
    assert paired.exact_test is None and paired.exact_p is None


def test_pairs_are_matched_by_seed_not_by_position() -> None:
    # the runner-up ran its seeds in another order and has one seed the leader lacks
    leader = {5: 0.90, 6: 0.70, 7: 0.80}
    other = {7: 0.78, 9: 0.10, 5: 0.85, 6: 0.69}
    ranking = rank(_trials({0: leader, 1: other}), "maximize")
    paired = ranking.paired
    assert paired is not None and paired.seeds == [5, 6, 7]
    assert paired.differences == pytest.approx([0.05, 0.01, 0.02], abs=1e-12)
    expected = stats.ttest_rel([0.90, 0.70, 0.80], [0.85, 0.69, 0.78])
    assert paired.t == pytest.approx(float(expected.statistic), rel=1e-12)


def test_a_winner_on_every_seed_is_called_better_though_the_intervals_overlap() -> None:
    # Seed effects are shared: every seed of A beats the same seed of B by about 0.01,
    # while the seeds spread each configuration over 0.2. The unpaired intervals overlap.
    a = {1: 0.71, 2: 0.91, 3: 0.81, 4: 0.76, 5: 0.86}
    b = {1: 0.70, 2: 0.898, 3: 0.797, 4: 0.745, 5: 0.846}
    ranking = rank(_trials({0: a, 1: b}), "maximize", "val_accuracy")
    assert ranking.top_two_overlap  # the old, unpaired reading could not tell them apart
    assert ranking.top_two_distinguished
    verdict = ranking.verdict()
    assert verdict.startswith("the winner is better than the runner-up on paired seeds")
    paired = ranking.paired
    assert paired is not None and paired.ci95[0] > 0
    assert f"95 % CI {paired.ci95[0]:+.4f}..{paired.ci95[1]:+.4f}, 5 pairs" in verdict
    # Fewer than 6 pairs: the exact test is given beside the t interval.
    assert paired.exact_test == "Wilcoxon signed-rank"
    assert paired.exact_p == pytest.approx(float(stats.wilcoxon(paired.differences).pvalue))
    assert paired.exact_p == pytest.approx(2 / 2**5)  # all five positive: the smallest p
    assert "exact Wilcoxon signed-rank p = 0.0625" in verdict
    assert verdict in format_ranking(ranking, "val_accuracy")


def test_tied_differences_fall_back_to_the_exact_sign_test() -> None:
    a = {1: 0.80, 2: 0.82, 3: 0.84, 4: 0.86}
    b = {1: 0.78, 2: 0.80, 3: 0.84, 4: 0.81}  # differences 0.02, 0.02, 0, 0.05
    paired = rank(_trials({0: a, 1: b}), "maximize").paired
    assert paired is not None and paired.exact_test == "sign test"
    assert paired.exact_p == pytest.approx(float(stats.binomtest(3, 3, 0.5).pvalue))


def test_differences_of_either_sign_are_not_distinguished() -> None:
    a = {1: 0.86, 2: 0.80, 3: 0.85}
    b = {1: 0.81, 2: 0.84, 3: 0.79}
    ranking = rank(_trials({0: a, 1: b}), "maximize")
    assert not ranking.top_two_distinguished
    verdict = ranking.verdict()
    assert verdict.startswith(f"the top two configurations are {INDISTINGUISHABLE}")
    assert "3 pairs" in verdict and "better" not in verdict


def test_minimising_a_loss_the_smaller_is_better() -> None:
    a = {1: 0.30, 2: 0.41, 3: 0.35}
    b = {1: 0.40, 2: 0.52, 3: 0.44}
    ranking = rank(_trials({0: a, 1: b}), "minimize", "val_loss")
    assert [c.source_trial for c in ranking.configs] == [0, 1]
    paired = ranking.paired
    assert paired is not None and paired.ci95[1] < 0  # leader minus runner-up: negative
    assert ranking.verdict().startswith("the winner is better than the runner-up")


def test_fewer_than_two_shared_seeds_decide_nothing() -> None:
    a = {1: 0.90, 2: 0.91}
    b = {2: 0.50, 3: 0.51}  # one shared seed
    ranking = rank(_trials({0: a, 1: b}), "maximize")
    assert ranking.has_intervals and not ranking.top_two_distinguished
    paired = ranking.paired
    assert paired is not None and paired.n == 1 and math.isnan(paired.ci95[0])
    assert ranking.verdict() == (
        "not decided: the top two share 1 seed(s); a paired comparison needs 2 or more"
    )
    assert "CI" not in ranking.verdict()


def test_the_leader_is_compared_with_every_other_configuration() -> None:
    values = {0: {1: 0.9, 2: 0.8}, 1: {1: 0.7, 2: 0.75}, 2: {1: 0.5, 2: 0.45}}
    ranking = rank(_trials(values), "maximize")
    comparisons = ranking.comparisons()
    assert [(p.leader, p.other) for p in comparisons] == [(0, 1), (0, 2)]
    assert comparisons[1].differences == pytest.approx([0.4, 0.35])
    assert [p["other"] for p in ranking.to_dict()["paired"]] == [1, 2]


def test_two_seeds_of_a_bounded_metric_give_an_interval_inside_zero_one() -> None:
    mean, _, (low, high) = mean_interval([0.40, 0.95], bounded=True)
    assert 0 < low < mean < high < 1
    # the plain t interval leaves [0, 1] on both sides here
    _, _, (t_low, t_high) = mean_interval([0.40, 0.95])
    assert t_low < 0 and t_high > 1
    # and the ranking of an accuracy uses the bounded one; of a loss, the t interval
    trials = _trials({0: {1: 0.40, 2: 0.95}})
    assert rank(trials, "maximize", "val_accuracy").configs[0].ci95 == (low, high)
    assert rank(trials, "minimize", "val_loss").configs[0].ci95 == (t_low, t_high)


@pytest.mark.parametrize(
    "values",
    [[0.5, 1.0], [0.0, 0.02, 0.01], [0.97, 0.99, 1.0, 0.98], [0.3, 0.31, 0.29, 0.3, 0.32]],
)
def test_a_bounded_interval_stays_in_range_and_holds_the_mean(values: list[float]) -> None:
    mean, _, (low, high) = mean_interval(values, bounded=True)
    assert 0 <= low <= mean <= high <= 1
    assert low < mean < high  # not a point: the runs differ


def test_a_bounded_interval_is_close_to_t_away_from_the_bounds() -> None:
    values = [0.80, 0.81, 0.79, 0.80, 0.82, 0.78, 0.80, 0.81]
    _, _, bounded = mean_interval(values, bounded=True)
    _, _, plain = mean_interval(values)
    assert bounded == pytest.approx(plain, abs=2e-3)


def test_identical_runs_at_the_bound_give_the_point() -> None:
    assert mean_interval([1.0, 1.0, 1.0], bounded=True)[2] == (1.0, 1.0)


def test_the_paired_function_on_identical_differences_matches_scipy() -> None:
    a = rank(_trials({0: {1: 0.9, 2: 0.8, 3: 0.7}}), "maximize").configs[0]
    b = rank(_trials({1: {1: 0.9, 2: 0.8, 3: 0.7}}), "maximize").configs[0]
    same = paired_comparison(a, b)  # all differences zero: scipy gives NaN
    assert math.isnan(same.t) and math.isnan(float(stats.ttest_rel([1, 2, 3], [1, 2, 3]).pvalue))
