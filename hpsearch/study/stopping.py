"""The stop rule of random and TPE studies: stop when the best has stopped improving.

``[stop] patience = P, min_delta = D``: no new trial starts once the best value has not
improved by more than D over the last P finished trials. ``min_delta = "val_se"`` is the
binomial standard error of the best validation accuracy at the validation split's size,
sqrt(p (1 - p) / n): an improvement smaller than that is within the noise of one
validation pass. Grid studies run every point and have no stop rule.
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections.abc import Sequence
from datetime import datetime

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.study.spec import StudySpec
from hpsearch.trials import is_copied, is_feasible, search_trials

#: Study user attribute holding the reason a study stopped early.
STOP_ATTR = "hpsearch_stopped"


def best_of(values: Sequence[float | None], direction: str) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if direction == "maximize" else min(finite)


def improvement(values: Sequence[float | None], direction: str, patience: int) -> float | None:
    """How much the last ``patience`` values improved the best before them (None: too few).

    ``values`` are finished trials in the order they finished; a pruned trial is None.
    """
    if len(values) <= patience:
        return None
    before = best_of(values[:-patience], direction)
    after = best_of(values, direction)
    if before is None or after is None:
        return None if before is None and after is None else math.inf
    return after - before if direction == "maximize" else before - after


def standard_error(best: float, n_val: int) -> float:
    """Binomial standard error of an accuracy ``best`` measured on ``n_val`` images."""
    if n_val < 1 or not 0.0 <= best <= 1.0:
        return 0.0
    return math.sqrt(best * (1.0 - best) / n_val)


def stop_reason(
    values: Sequence[float | None],
    direction: str,
    patience: int,
    min_delta: float | str,
    n_val: int,
) -> str | None:
    """Why the study should start no new trial, or None to go on."""
    gained = improvement(values, direction, patience)
    if gained is None:
        return None
    best = best_of(values, direction)
    delta = standard_error(best or 0.0, n_val) if min_delta == "val_se" else float(min_delta)
    if gained > delta:
        return None
    what = f"the validation standard error {delta:.4f}" if min_delta == "val_se" else f"{delta:g}"
    return (
        f"stopped early: the last {patience} finished trials improved the best "
        f"({best:.4f}) by {max(gained, 0.0):.4f}, not more than {what}"
    )


def finished_values(study: optuna.Study) -> list[float | None]:
    """Values of the finished trials in the order they finished (pruned: None)."""
    finished = search_trials(study, (TrialState.COMPLETE, TrialState.PRUNED))
    finished.sort(key=_finish_order)
    return [_stop_value(t) for t in finished]


def _finish_order(t: FrozenTrial) -> tuple[bool, datetime | None, int]:
    return (t.datetime_complete is None, t.datetime_complete, t.number)


def _stop_value(t: FrozenTrial) -> float | None:
    return t.value if t.state == TrialState.COMPLETE and is_feasible(t) else None


class FinishedValues:
    """:func:`finished_values` of one study, kept up to date at the cost of the trials
    that finished since the last look.

    A worker checks the stop rule before every trial it starts; sorting and judging
    every finished trial each time costs tens of milliseconds a check in a study of
    10,000 trials. A finished trial never changes (Optuna refuses to), so each is placed
    once, by the time it finished, among those seen before.
    """

    def __init__(self) -> None:
        self._order: list[tuple[bool, datetime | None, int]] = []
        self._values: list[float | None] = []
        self._seen: set[int] = set()

    def read(self, study: optuna.Study) -> list[float | None]:
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if len(finished) != len(self._seen):
            for t in finished:
                if t.number in self._seen:
                    continue
                self._seen.add(t.number)
                if is_copied(t):
                    continue  # not the study's own trial: see search_trials
                key = _finish_order(t)
                at = bisect.bisect(self._order, key)
                self._order.insert(at, key)
                self._values.insert(at, _stop_value(t))
        return list(self._values)


#: Each study object's finished values, for as long as the study object lives.
_FINISHED: weakref.WeakKeyDictionary[optuna.Study, FinishedValues] = weakref.WeakKeyDictionary()


def check_stop(study: optuna.Study, spec: StudySpec, n_val: int) -> str | None:
    """The study's stop reason, recorded on the study the first time it holds."""
    recorded = study.user_attrs.get(STOP_ATTR)
    if recorded:
        return str(recorded)
    if spec.stop is None:
        return None
    reason = stop_reason(
        _FINISHED.setdefault(study, FinishedValues()).read(study),
        spec.direction,
        spec.stop.patience,
        spec.stop.min_delta,
        n_val,
    )
    if reason is not None:
        study.set_user_attr(STOP_ATTR, reason)
    return reason
