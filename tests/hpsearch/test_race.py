"""The confirmation race on scripted values: who leaves at which round, and where it ends.

Each configuration's value for each seed is scripted; a round "trains" the next seed of
each contender (builds its trial) and judges. The departure round is checked against an
independent computation: the first number of pairs whose 95 % paired t interval,
from ``scipy.stats``, lies wholly on the leader's side of 0.
"""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial
from scipy import stats

from hpsearch.study.race import FIRST_SEEDS, RaceState, describe_round
from hpsearch.study.ranking import rank

LRS = [0.1, 0.01, 0.001, 0.0001]


def _trial(source: int, seed: int, value: float) -> optuna.trial.FrozenTrial:
    return create_trial(
        params={"lr": LRS[source]},
        distributions={"lr": CategoricalDistribution(LRS)},
        value=value,
        user_attrs={"confirm_of": source, "seed": seed},
    )


def _race(values: dict[int, list[float]], state: RaceState, direction: str = "maximize") -> int:
    """Run ``state`` to its end on ``values`` (per configuration, per seed); the runs it
    trained. A configuration that left keeps the runs it had."""
    runs: dict[int, int] = {c: 0 for c in values}
    for judged in state.rounds:  # a continued race: the runs of its judged rounds exist
        for c in judged.contenders:
            runs[c] = judged.seeds
    spent = 0
    while not state.finished:
        seeds = state.seeds
        for c in state.contenders:
            spent += seeds - runs[c]
            runs[c] = seeds
        trials = [_trial(c, s, values[c][s]) for c in values for s in range(runs[c])]
        state.judge(rank(trials, direction), seeds)
    return spent


def _first_departure(leader: list[float], other: list[float], sign: float = 1.0) -> int | None:
    """The number of pairs at which ``other`` leaves, by scipy: the interval of the
    leader's paired advantage lies above 0."""
    for n in range(FIRST_SEEDS, len(leader) + 1):
        d = sign * (np.array(leader[:n]) - np.array(other[:n]))
        sem = stats.sem(d) if d.std() > 0 else 0.0
        low = d.mean() - stats.t.ppf(0.975, n - 1) * sem
        if low > 0:
            return n
    return None


# The leader (0); one clearly worse on every seed (1); one close behind (2).
A = [0.90, 0.88, 0.91, 0.89, 0.90, 0.92, 0.90, 0.91]
B = [a - d for a, d in zip(A, [0.10, 0.11, 0.09, 0.10, 0.12, 0.10, 0.11, 0.10], strict=True)]
C = [a - d for a, d in zip(A, [0.03, 0.01, 0.04, 0.035, 0.03, 0.02, 0.03, 0.03], strict=True)]


def test_a_decided_race_leaves_and_ends_where_it_should() -> None:
    state = RaceState(max_seeds=8, contenders=[0, 1, 2])
    spent = _race({0: A, 1: B, 2: C}, state)
    left_at = {d.trial: r.seeds for r in state.rounds for d in r.left}
    # the oracle: B leaves at 2 pairs, C at 4, each the first n scipy's interval allows
    assert _first_departure(A, B) == 2 and _first_departure(A, C) == 4
    assert left_at == {1: 2, 2: 4}
    assert [r.seeds for r in state.rounds] == [2, 3, 4]
    assert state.decided and state.finished and state.contenders == [0]
    assert state.summary() == "race decided after 4 seed(s): search trial 0 wins"
    # 3 x 2, then 2 configurations x 1 seed twice: 10 runs against 24 for 3 x 8 fixed
    assert spent == 10
    departure = state.rounds[0].left[0]
    assert departure.leader == 0 and departure.pairs == 2
    assert departure.mean_difference == pytest.approx(0.105, abs=1e-12)
    assert "left: trial 1 (leader 0 better by +0.1050" in describe_round(state.rounds[0])


def test_an_undecided_race_ends_at_max_seeds_with_its_contenders() -> None:
    # D alternates above and below A: never distinguished.
    d = [a + s for a, s in zip(A, [0.02, -0.02] * 4, strict=True)]
    state = RaceState(max_seeds=5, contenders=[0, 3, 1])
    spent = _race({0: A, 3: d, 1: B}, state)
    assert state.finished and not state.decided
    assert sorted(state.contenders) == [0, 3]
    assert state.rounds[-1].seeds == 5 and [r.seeds for r in state.rounds] == [2, 3, 4, 5]
    assert "race undecided at --max-seeds 5" in state.summary()
    assert spent == 3 * 2 + 2 * 3  # B left after the first round


def test_a_rerun_continues_the_race_where_it_stopped() -> None:
    values = {0: A, 1: B, 2: C}
    whole = RaceState(max_seeds=8, contenders=[0, 1, 2])
    _race(values, whole)
    # Stopped after the first judged round: the state goes through the stored plan (JSON).
    first = RaceState(max_seeds=8, contenders=[0, 1, 2])
    first.judge(rank([_trial(c, s, values[c][s]) for c in values for s in range(2)], "maximize"), 2)
    stored = json.loads(json.dumps(first.to_dict()))
    again = RaceState.from_dict(stored)
    assert again.to_dict() == stored and again.seeds == 3
    spent = _race(values, again)
    assert again.to_dict() == whole.to_dict()
    assert spent == 2 + 2  # only rounds 3 and 4, for the two still in


def test_a_minimised_metric_races_the_other_way() -> None:
    loss = {0: [1 - a for a in A], 1: [1 - b for b in B], 2: [1 - c for c in C]}
    state = RaceState(max_seeds=8, contenders=[0, 1, 2])
    _race(loss, state, direction="minimize")
    assert _first_departure(loss[0], loss[1], sign=-1.0) == 2
    assert {d.trial: r.seeds for r in state.rounds for d in r.left} == {1: 2, 2: 4}
    assert state.contenders == [0]


def test_a_race_judged_at_its_limit_is_finished_before_any_round() -> None:
    state = RaceState(max_seeds=2, contenders=[0, 3])
    assert not state.finished and state.seeds == FIRST_SEEDS
    d = [a + s for a, s in zip(A, [0.02, -0.02] * 4, strict=True)]
    _race({0: A, 3: d}, state)
    assert state.finished and not state.decided and len(state.rounds) == 1
