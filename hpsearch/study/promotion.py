"""Successive halving with promotion: where trials pause, and which paused trial goes on.

Asynchronous successive halving (ASHA, Li et al., 2020) as a pruner that can resume: a
trial trains to its next *rung* (``min_resource`` x ``reduction_factor`` ** k epochs)
and pauses there, its checkpoint on disk. A free worker first looks for a paused trial
to *promote*: one that ranks in the top 1 / ``reduction_factor`` of every trial that
reached its rung so far (the best of a rung always), the highest rung first; only when
there is none does it start a new trial. A promoted trial resumes from its checkpoint,
under its own trial number, and trains to the next rung, or to its last epoch. When no
trial runs, none can start and none can be promoted, the trials still paused are pruned
where they stand.

This module is the rule alone, on plain numbers: the workers (``hpsearch.run.claims``)
apply it to what the storage holds, and ``benchmarks/pruning.py replay`` to recorded
curves, so the replay measures the pruner that ships.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial

K = TypeVar("K", bound=Hashable)

KIND = "promotion"
"""The pruner's name in a study file (``[pruner] kind``)."""

DEFAULT_MIN_RESOURCE = 1
DEFAULT_REDUCTION_FACTOR = 3


@dataclass(frozen=True)
class Rungs:
    """The epochs at which a trial of ``epochs`` epochs pauses."""

    min_resource: int = DEFAULT_MIN_RESOURCE
    reduction_factor: int = DEFAULT_REDUCTION_FACTOR

    def epochs_of(self, epochs: int) -> tuple[int, ...]:
        """Rung epochs below ``epochs`` (the last epoch is the end, not a rung)."""
        rungs, at = [], max(1, self.min_resource)
        while at < epochs:
            rungs.append(at)
            at *= self.reduction_factor
        return tuple(rungs)

    def rung_at(self, epoch: int, epochs: int) -> int | None:
        """The rung index of ``epoch`` (None when a trial does not pause there)."""
        rungs = self.epochs_of(epochs)
        return rungs.index(epoch) if epoch in rungs else None


def promotable(
    rungs: Sequence[Mapping[K, float]],
    paused: Mapping[K, int],
    reduction_factor: int,
    *,
    maximize: bool = True,
) -> list[K]:
    """Paused trials that may go on, the first to promote first.

    ``rungs[k]`` maps every trial that reached rung k to its value there; ``paused`` maps
    each paused trial to the rung it waits at. A paused trial may go on when it ranks in
    the top ``max(1, len(rungs[k]) // reduction_factor)`` of its rung: the best of a rung
    always may, as in Optuna's successive halving, so that however few trials a study has,
    at least one reaches its last epoch. Higher rungs come first, and within a rung the
    better value (ties: the trial that reached the rung first, in ``rungs[k]``'s order).
    """
    out: list[K] = []
    for k in reversed(range(len(rungs))):
        members = list(rungs[k].items())
        order = sorted(range(len(members)), key=lambda i: _rank(members[i][1], i, maximize))
        top = [members[i][0] for i in order[: max(1, len(members) // reduction_factor)]]
        # A value that is not a number (training diverged) never goes on.
        out.extend(key for key in top if paused.get(key) == k and math.isfinite(rungs[k][key]))
    return out


def _rank(value: float, arrival: int, maximize: bool) -> tuple[bool, float, int]:
    """Sort key of a rung's member: numbers best first, then what is not a number."""
    if not math.isfinite(value):
        return (True, 0.0, arrival)
    return (False, -value if maximize else value, arrival)


class PromotionPruner(optuna.pruners.BasePruner):
    """Optuna's side of the promotion pruner: a trial stops at each rung it reaches.

    Stopping here is a *pause*, not an end: the worker records the trial as paused at its
    rung, and the promotion rule decides whether it goes on. ``prune`` answers True at a
    rung epoch; the objective never pauses a trial at its last epoch.
    """

    def __init__(
        self,
        min_resource: int = DEFAULT_MIN_RESOURCE,
        reduction_factor: int = DEFAULT_REDUCTION_FACTOR,
    ) -> None:
        if min_resource < 1 or reduction_factor < 2:
            raise ValueError("min_resource must be >= 1 and reduction_factor >= 2")
        self.rungs = Rungs(min_resource, reduction_factor)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        at, factor = self.rungs.min_resource, self.rungs.reduction_factor
        while at < step:
            at *= factor
        return at == step


def is_promotion(pruner: Any) -> bool:
    """True for the promotion pruner (a study whose trials pause and resume)."""
    return isinstance(pruner, PromotionPruner)
