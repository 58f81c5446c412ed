"""Trials and their records: what a trial writes, how it is read, which trials count.

The one part of hpsearch that ``reports`` imports, and a leaf: it imports nothing of the
project, only Optuna. The runner writes trial records through it; ``status``, ``best``,
the report, the stop rule and the confirmation read them through it.
"""

from hpsearch.trials.applicable import IGNORED_BY_OPTIMIZER, IGNORED_NOTE, applicable, applies
from hpsearch.trials.constraints import is_feasible
from hpsearch.trials.record import TrialRecord, is_confirmation_run, is_copied
from hpsearch.trials.rows import COPIED_STATE, TrialRows, trial_rows
from hpsearch.trials.selection import (
    best_search_trial,
    first_value,
    is_multi_objective,
    no_best_reason,
    pareto_front,
    search_trials,
    trial_seconds,
    trial_value,
)

__all__ = [
    "COPIED_STATE",
    "IGNORED_BY_OPTIMIZER",
    "IGNORED_NOTE",
    "TrialRecord",
    "TrialRows",
    "applicable",
    "applies",
    "best_search_trial",
    "first_value",
    "is_confirmation_run",
    "is_copied",
    "is_feasible",
    "is_multi_objective",
    "no_best_reason",
    "pareto_front",
    "search_trials",
    "trial_rows",
    "trial_seconds",
    "trial_value",
]
