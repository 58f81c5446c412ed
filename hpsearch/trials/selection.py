"""Which trials of a study count as its own, its best, and how long a trial took.

A study may hold trials it did not run: trials copied in from another study by
``hpsearch run --from-study`` are prior knowledge for its sampler. Every count, best
trial, stop rule and confirmation takes the study's own trials through here.
"""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.trials.constraints import broken, is_feasible
from hpsearch.trials.record import TrialRecord, is_copied


def search_trials(
    study: optuna.Study, states: tuple[TrialState, ...] | None = None
) -> list[FrozenTrial]:
    """The trials the study itself ran, in trial order: every trial but those copied in
    from another study by ``--from-study`` (prior knowledge for its sampler, which no
    best trial, count, stop rule or confirmation takes as the study's own)."""
    trials = study.get_trials(deepcopy=False, states=states)
    return [t for t in trials if not is_copied(t)]


def trial_value(t: FrozenTrial) -> float:
    """The objective value of a trial already known to have one (a complete trial)."""
    assert t.value is not None, f"trial {t.number} has no value"
    return float(t.value)


def best_search_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete and feasible trial the study ran (copied trials apart; a trial
    that breaks a ``[constraints]`` bound is not a candidate); None without one. Ties go
    to the earlier trial, as Optuna's ``best_trial`` does."""
    if is_multi_objective(study):
        return None  # a front, not one best: see pareto_front
    complete = [
        t
        for t in search_trials(study, (TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value) and is_feasible(t)
    ]
    if not complete:
        return None
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return min(complete, key=lambda t: (sign * trial_value(t), t.number))


def is_multi_objective(study: optuna.Study) -> bool:
    """True for a study of several objectives (a Pareto front, no single best trial)."""
    return len(study.directions) > 1


def first_value(t: FrozenTrial) -> float | None:
    """A trial's value, or its first objective's in a study of several (None: none)."""
    values = t.values
    return float(values[0]) if values else None


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The complete, feasible trials the study ran that no other such trial dominates, in
    trial order: Optuna's ``best_trials``, over the study's own trials (a study holding
    trials copied in by ``--from-study`` is read through an in-memory copy of its own)."""
    own = search_trials(study)
    if len(own) == len(study.get_trials(deepcopy=False)):
        return sorted(study.best_trials, key=lambda t: t.number)
    view = optuna.create_study(directions=study.directions)
    view.add_trials(own)  # numbered 0, 1, ... in the order of ``own``
    return sorted((own[t.number] for t in view.best_trials), key=lambda t: t.number)


def no_best_reason(study: optuna.Study) -> str:
    """Why the study has no best trial, in a few words (for a one-line refusal)."""
    if is_multi_objective(study):
        return (
            "several objectives: a Pareto front, not one best trial (`hpsearch best "
            f"--study {study.study_name}` lists it; `--export DIR --trial N` exports a point)"
        )
    complete = search_trials(study, (TrialState.COMPLETE,))
    infeasible = [t for t in complete if not is_feasible(t)]
    if complete and len(infeasible) == len(complete):
        names = sorted({name for t in infeasible for name in broken(t)})
        return (
            f"no feasible trial: each of its {len(complete)} complete trials breaks a "
            f"constraint ({', '.join(names)})"
        )
    states = sorted({t.state.name.lower() for t in search_trials(study)})
    return f"no complete trial yet (trial states: {', '.join(states) or 'no trials'})"


def trial_seconds(t: FrozenTrial) -> float | None:
    """A trial's seconds, the one definition every view uses: the training time it
    recorded, else start to end, to 0.1 s; None while it has neither."""
    seconds = TrialRecord.read(t).wall_seconds
    if seconds is None and t.duration is not None:
        seconds = t.duration.total_seconds()
    return round(seconds, 1) if seconds is not None else None
