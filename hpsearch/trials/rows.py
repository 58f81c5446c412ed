"""One row per trial of a study: the data behind every trials table.

The report's table (``reports.study.trials_table``), the terminal's
(``hpsearch.study.summary.format_trials_table``) and the wandb Table
(``hpsearch.run.tracking.log_study_table``) all render these rows, each in its own format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.trials.record import PAUSED_AT, TrialRecord
from hpsearch.trials.selection import trial_seconds

#: The state a copied trial (``hpsearch run --from-study``) shows in every trials table.
COPIED_STATE = "COPIED"
#: The state a trial stopped by Ctrl-C or a scheduler shows (Optuna records it as FAIL).
INTERRUPTED_STATE = "INTERRUPTED"
PAUSED_STATE = "PAUSED"
"""A trial that waits at a rung of the promotion pruner (running, to Optuna)."""

#: The columns every row starts with; the trial's parameters follow, sorted by name.
BASE_COLUMNS: tuple[str, ...] = (
    "number",
    "state",
    "interrupted",
    "value",
    "best_epoch",
    "epochs_run",
    "seconds",
)


@dataclass(frozen=True)
class TrialRows:
    """Column names and one dict per trial (every dict has every column, in order)."""

    columns: tuple[str, ...]
    params: tuple[str, ...]
    """The parameter columns, sorted by name."""
    rows: tuple[dict[str, Any], ...]


def trial_rows(study: optuna.Study, *, user_attrs: bool = False) -> TrialRows:
    """One row per trial, in trial order.

    Columns: ``number``; ``state`` (Optuna's state name, e.g. ``COMPLETE``, or
    ``COPIED`` for a trial copied in by ``--from-study``); ``interrupted``
    (stopped by Ctrl-C); ``value`` (the objective, None when the trial has none or it is
    not finite); ``best_epoch``; ``epochs_run`` (as recorded, else the epochs it reported,
    else None); ``seconds`` (the recorded training time, else start to end, to 0.1 s);
    then the parameters. With ``user_attrs``, every numeric value of the trials' recorded
    results (metrics, timing) that is not a column already follows.
    """
    trials = study.get_trials(deepcopy=False)
    records = [TrialRecord.read(t) for t in trials]
    params = tuple(sorted({name for t in trials for name in t.params}))
    attrs: tuple[str, ...] = ()
    if user_attrs:
        numeric = {k for r in records for k in r.numbers()}
        attrs = tuple(sorted(numeric - {*BASE_COLUMNS, *params}))
    rows = tuple(_row(t, r, params, attrs) for t, r in zip(trials, records, strict=True))
    return TrialRows((*BASE_COLUMNS, *params, *attrs), params, rows)


def _row(
    t: FrozenTrial, record: TrialRecord, params: tuple[str, ...], attrs: tuple[str, ...]
) -> dict[str, Any]:
    first = t.values[0] if t.values else None  # a study of several objectives: the first
    value = first if first is not None and math.isfinite(first) else None
    epochs_run = record.epochs_run
    row: dict[str, Any] = {
        "number": t.number,
        "state": shown_state(t, record),
        "interrupted": record.interrupted,
        "value": value,
        "best_epoch": record.best_epoch,
        "epochs_run": epochs_run if epochs_run is not None else len(t.intermediate_values) or None,
        "seconds": trial_seconds(t),
    }
    row.update({name: t.params.get(name) for name in params})
    numbers = record.numbers()
    row.update({name: numbers.get(name) for name in attrs})
    return row


def shown_state(t: FrozenTrial, record: TrialRecord | None = None) -> str:
    """The state a trial shows in every view: Optuna's state name, but ``COPIED`` for a
    trial copied in by ``--from-study`` and ``INTERRUPTED`` for a trial a stop signal
    ended (Optuna records it as FAIL; it was not the trial's failure), ``PAUSED`` for one
    that waits at a rung of the promotion pruner (running, to Optuna)."""
    record = record or TrialRecord.read(t)
    if record.copied_from is not None:
        return COPIED_STATE
    if t.state == TrialState.FAIL and record.interrupted:
        return INTERRUPTED_STATE
    if t.state == TrialState.RUNNING and t.user_attrs.get(PAUSED_AT):
        return PAUSED_STATE
    return t.state.name
