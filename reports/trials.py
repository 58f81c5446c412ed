"""One row per trial of a study: the data behind every trials table.

The report's table (``reports.study.trials_table``), the terminal's
(``hpsearch.summary.format_trials_table``) and the wandb Table
(``hpsearch.tracking.log_study_table``) all render these rows, each in its own format.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

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

    Columns: ``number``; ``state`` (Optuna's state name, e.g. ``COMPLETE``); ``interrupted``
    (stopped by Ctrl-C); ``value`` (the objective, None when the trial has none or it is
    not finite); ``best_epoch``; ``epochs_run`` (as recorded, else the epochs it reported,
    else None); ``seconds`` (the recorded training time, else start to end, to 0.1 s);
    then the parameters. With ``user_attrs``, every numeric user attribute (the slot
    number excepted) that is not a column already follows.
    """
    trials = study.get_trials(deepcopy=False)
    params = tuple(sorted({name for t in trials for name in t.params}))
    attrs: tuple[str, ...] = ()
    if user_attrs:
        numeric = {k for t in trials for k, v in t.user_attrs.items() if _is_number(v)}
        attrs = tuple(sorted(numeric - {*BASE_COLUMNS, *params, "slot"}))
    rows = tuple(_row(t, params, attrs) for t in trials)
    return TrialRows((*BASE_COLUMNS, *params, *attrs), params, rows)


def trial_seconds(t: FrozenTrial) -> float | None:
    """A trial's seconds, the one definition every view uses: the training time it
    recorded, else start to end, to 0.1 s; None while it has neither."""
    seconds = t.user_attrs.get("wall_seconds")
    if seconds is None and t.duration is not None:
        seconds = t.duration.total_seconds()
    return round(seconds, 1) if seconds is not None else None


def _row(t: FrozenTrial, params: tuple[str, ...], attrs: tuple[str, ...]) -> dict[str, Any]:
    value = t.value if t.value is not None and math.isfinite(t.value) else None
    row: dict[str, Any] = {
        "number": t.number,
        "state": t.state.name,
        "interrupted": bool(t.user_attrs.get("interrupted", False)),
        "value": value,
        "best_epoch": t.user_attrs.get("best_epoch"),
        "epochs_run": t.user_attrs.get("epochs_run", len(t.intermediate_values) or None),
        "seconds": trial_seconds(t),
    }
    row.update({name: t.params.get(name) for name in params})
    row.update({name: _number_or_none(t.user_attrs.get(name)) for name in attrs})
    return row


def _number_or_none(value: Any) -> float | int | None:
    return value if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
