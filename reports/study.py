"""The search itself: what the study is, and a table of every trial.

Works on a study that is still running: only what the storage holds now is shown.
The figures are in :mod:`reports.study_figures`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import optuna
import pandas as pd

from hpsearch.trials import best_search_trial, search_trials, trial_rows
from hpsearch.trials.applicable import IGNORED_BY_OPTIMIZER, applies


def study_metric(settings: Mapping[str, Any] | None) -> str:
    """The metric ``hpsearch run`` recorded, or "objective" for a plain Optuna study."""
    return str((settings or {}).get("metric", "objective"))


def is_synthetic(settings: Mapping[str, Any] | None) -> bool:
    """Whether ``hpsearch run`` recorded that the study ran on the synthetic demo data."""
    return bool(((settings or {}).get("data") or {}).get("synthetic", False))


def study_info(study: optuna.Study, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the report says about the study: ``settings`` (what ``hpsearch run`` recorded
    about it, as a mapping; none for a plain Optuna study), data, trial counts, best trial."""
    attrs = settings or {}
    trials = search_trials(study)
    states = Counter(t.state.name for t in trials)
    info: dict[str, Any] = {
        "study": study.study_name,
        "metric": study_metric(attrs),
        "direction": ", ".join(d.name.lower() for d in study.directions),
        "sampler": attrs.get("sampler"),
        "pruner": attrs.get("pruner"),
        "spec_file": attrs.get("spec_file"),
        "data": attrs.get("data", {}) or {},
        "synthetic": is_synthetic(attrs),
        "n_trials": len(trials),
        "states": dict(sorted(states.items())),
        "best_trial": None,
        "best_value": None,
    }
    info["copied"] = len(study.get_trials(deepcopy=False)) - len(trials)
    best = best_search_trial(study)
    if best is not None:
        info["best_trial"] = best.number
        info["best_value"] = best.value
    return info


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, best epoch, epochs run, seconds, parameters.

    An interrupted trial's state says so, e.g. ``FAIL (interrupted)``. A parameter the
    trial's optimizer does not use (momentum on an Adam trial) is left empty, as in the
    terminal's table (:func:`unused_note` says why).
    """
    table = trial_rows(study)
    columns = [c for c in table.columns if c != "interrupted"]
    rows = []
    for row in table.rows:
        params = {name: row[name] for name in table.params}
        unused = {name: None for name in table.params if not applies(name, params)}
        state = f"{row['state']} (interrupted)" if row["interrupted"] else row["state"]
        rows.append({**row, **unused, "state": state})
    return pd.DataFrame(rows, columns=columns)


def unused_note(study: optuna.Study) -> str | None:
    """One sentence on the parameters the trials table leaves empty, or None."""
    trials = study.get_trials(deepcopy=False)
    unused = sorted({name for t in trials for name in t.params if not applies(name, t.params)})
    if not unused:
        return None
    parts = [f"{n} is empty on {', '.join(sorted(IGNORED_BY_OPTIMIZER[n]))} trials" for n in unused]
    return "; ".join(parts) + " (not used by that optimizer; the grid still gives it a value)."
