"""Confirming a search's answer: the top configurations trained again with new seeds.

A search scores each configuration once, with one seed, and keeps the best epoch: the
winner is the configuration whose single run came out highest, which favours lucky
runs. ``hpsearch confirm`` trains the ``top`` configurations ``seeds`` more times each,
with seeds derived from the study's seed, in a companion study ``<name>.confirm`` (its
own trials, visible in optuna-dashboard and ``optuna trials``). The search's own trial
is not counted as one of the seeds: it is the run that was selected for coming out
highest, so its value is biased upwards; the new runs are not.

Every run's value is its best epoch's validation metric, in the search and here alike
(the checkpoint kept is that epoch's weights, which is what an export ships).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.trials import (
    is_feasible,
    is_multi_objective,
    no_best_reason,
    search_trials,
    trial_value,
)
from trainer.errors import UserError

#: Suffix of the companion study that holds the confirmation runs.
CONFIRM_SUFFIX = ".confirm"


@dataclass(frozen=True)
class ConfirmRun:
    """One run of a confirmation: a configuration of the search with a new seed."""

    params: dict[str, Any]
    seed: int
    source_trial: int
    """Number of the search trial whose configuration this repeats."""
    rank: int
    """Rank of that trial in the search (0 = its best)."""


def confirm_study_name(name: str) -> str:
    return f"{name}{CONFIRM_SUFFIX}"


def confirm_seeds(study_seed: int, count: int) -> list[int]:
    """``count`` training seeds derived from the study's seed (never the seed itself)."""
    state = np.random.SeedSequence([study_seed, 0xC0F1]).generate_state(count + 1)
    seeds = [int(s) for s in state if int(s) != study_seed]
    return seeds[:count]


def top_configurations(study: optuna.Study, top: int) -> list[FrozenTrial]:
    """The ``top`` best complete trials of the search, one per distinct configuration."""
    if is_multi_objective(study):
        raise UserError(
            f"study {study.study_name!r} has several objectives: confirm ranks one metric "
            "(export a point of its Pareto front with `hpsearch best --export DIR --trial N`)"
        )
    complete = search_trials(study, (TrialState.COMPLETE,))
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ranked = sorted(
        (t for t in complete if t.value is not None and math.isfinite(t.value) and is_feasible(t)),
        key=lambda t: (trial_value(t), -t.number) if reverse else (-trial_value(t), -t.number),
        reverse=True,
    )
    chosen: list[FrozenTrial] = []
    seen: set[tuple[tuple[str, Any], ...]] = set()
    for trial in ranked:
        key = _key(trial.params)
        if key not in seen:
            seen.add(key)
            chosen.append(trial)
        if len(chosen) == top:
            break
    if not chosen:
        raise UserError(
            f"study {study.study_name!r} has nothing to confirm: {no_best_reason(study)}"
        )
    return chosen


def extend_runs(
    done: tuple[ConfirmRun, ...], wanted: tuple[ConfirmRun, ...]
) -> tuple[ConfirmRun, ...]:
    """A confirmation's runs grown to cover ``wanted``: the runs it has first, in their
    slots, then each wanted (configuration, seed) it lacks. More seeds or a larger top
    thus add runs and keep those done; a smaller request adds nothing."""
    have = {(_key(r.params), r.seed) for r in done}
    added = [r for r in wanted if (_key(r.params), r.seed) not in have]
    return done + tuple(added)


def _key(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def plan_runs(study: optuna.Study, study_seed: int, top: int, seeds: int) -> tuple[ConfirmRun, ...]:
    """The runs of a confirmation, one per slot: configuration-major, seed-minor."""
    if top < 1:
        raise UserError(f"--top must be >= 1, not {top}")
    if seeds < 2:
        raise UserError(
            f"--seeds must be >= 2, not {seeds}: one seed per configuration gives no "
            "interval, so it confirms nothing"
        )
    derived = confirm_seeds(study_seed, seeds)
    return tuple(
        ConfirmRun(params=dict(trial.params), seed=seed, source_trial=trial.number, rank=rank)
        for rank, trial in enumerate(top_configurations(study, top))
        for seed in derived
    )
