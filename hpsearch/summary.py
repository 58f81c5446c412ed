"""Study summaries shared by ``run`` (at the end) and ``status``."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from reports.trial_record import START, TrialRecord
from reports.trials import trial_rows


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    """One trial as plain JSON-able data."""
    seconds = None
    if t.datetime_start and t.datetime_complete:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds()
    value = t.value if t.value is not None and math.isfinite(t.value) else None
    record = TrialRecord.read(t)
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "params": t.params,
        "value": value,
        "seconds": seconds,
        "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "user_attrs": {k: v for k, v in t.user_attrs.items() if k != START},
        "slot": record.slot,
        "attempt": record.attempt,
        "config": record.config,
    }


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None


def study_status(study: optuna.Study, n_slots: int | None = None) -> dict[str, Any]:
    """Counts by state, best trial, mean seconds per finished trial, ETA."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name.lower() for t in trials)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in finished
        if t.datetime_start and t.datetime_complete
    ]
    mean_s = sum(durations) / len(durations) if durations else None
    remaining = None if n_slots is None else max(0, n_slots - len(finished))
    running = max(1, states.get("running", 0))
    eta = None
    if mean_s is not None and remaining is not None:
        eta = mean_s * remaining / running
    best = best_trial(study)
    return {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "n_slots": n_slots,
        "states": dict(states),
        "finished": len(finished),
        "remaining": remaining,
        "mean_seconds_per_trial": mean_s,
        "eta_seconds": eta,
        "best": trial_record(best) if best else None,
        "checked_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def format_trials_table(study: optuna.Study, metric: str) -> str:
    """A fixed-width table of every trial.

    A trial without an objective value (pruned, say) shows the ``metric`` it recorded.
    """
    table = trial_rows(study, user_attrs=True)
    header = ["#", "state", *table.params, metric, "best ep", "epochs", "s"]
    rows = []
    for row in table.rows:
        value = row["value"] if row["value"] is not None else row.get(metric)
        rows.append(
            [
                str(row["number"]),
                row["state"].lower(),
                *[_short(row[n]) for n in table.params],
                _short(value),
                _short(row["best_epoch"]),
                _short(row["epochs_run"]),
                _short(row["seconds"], 1),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    return "\n".join(lines)


def _short(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def print_summary(study: optuna.Study, metric: str, name: str) -> None:
    """The end-of-run table and the best trial."""
    print(format_trials_table(study, metric))
    best = best_trial(study)
    if best is None:
        print(f"study {name!r}: no completed trial yet")
        return
    params = ", ".join(f"{k}={v}" for k, v in best.params.items())
    print(
        f"best trial of {name!r}: #{best.number} {metric}={best.value:.4f} "
        f"(validation, epoch {TrialRecord.read(best).best_epoch}) with {params}"
    )
