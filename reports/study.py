"""The search itself: Optuna's figures and a table of every trial.

Works on a study that is still running: only what the storage holds now is drawn,
and a figure that cannot be drawn yet is skipped with the reason.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.trial import TrialState

from reports.html import escape
from reports.trials import trial_rows


@dataclass
class StudyFigures:
    """Figures by file stem, and the figures that were skipped with why."""

    figures: dict[str, go.Figure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def study_info(study: optuna.Study, settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the report says about the study: ``settings`` (what ``hpsearch run`` recorded
    about it, as a mapping; none for a plain Optuna study), data, trial counts, best trial."""
    attrs = settings or {}
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    info: dict[str, Any] = {
        "study": study.study_name,
        "metric": attrs.get("metric", "objective"),
        "direction": study.direction.name.lower(),
        "sampler": attrs.get("sampler"),
        "pruner": attrs.get("pruner"),
        "spec_file": attrs.get("spec_file"),
        "data": attrs.get("data", {}) or {},
        "synthetic": bool((attrs.get("data") or {}).get("synthetic", False)),
        "n_trials": len(trials),
        "states": dict(sorted(states.items())),
        "best_trial": None,
        "best_value": None,
    }
    if states.get("COMPLETE"):
        best = study.best_trial
        info["best_trial"] = best.number
        info["best_value"] = best.value
    return info


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, best epoch, epochs run, seconds, parameters.

    An interrupted trial's state says so, e.g. ``FAIL (interrupted)``.
    """
    table = trial_rows(study)
    columns = [c for c in table.columns if c != "interrupted"]
    rows = [
        {**row, "state": f"{row['state']} (interrupted)" if row["interrupted"] else row["state"]}
        for row in table.rows
    ]
    return pd.DataFrame(rows, columns=columns)


def _target_name(info: dict[str, Any]) -> str:
    return f"{info['metric']} (validation)"


def study_figures(study: optuna.Study, settings: Mapping[str, Any] | None = None) -> StudyFigures:
    """Optimization history, importances, parallel coordinates, intermediate values, slices.

    Parameter importances need at least two complete trials and a parameter that
    varies; other figures need one complete trial (intermediate values: any trial
    that reported).
    """
    out = StudyFigures()
    for key, title, make, needs in _figure_plan(study, settings):
        if needs is not None:
            out.skipped[key] = needs
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make()
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            out.skipped[key] = f"could not be drawn: {err}"
            continue
        name = escape(study.study_name)
        fig.update_layout(title=f"{title} — study {name}", template="plotly_white")
        out.figures[key] = fig
    return out


def _figure_plan(
    study: optuna.Study, settings: Mapping[str, Any] | None
) -> list[tuple[str, str, Callable[[], go.Figure], str | None]]:
    """(file stem, title, how to draw, why it cannot be drawn yet or None) per figure."""
    from optuna.importance import FanovaImportanceEvaluator

    vis = optuna.visualization
    target = _target_name(study_info(study, settings))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    varying = [
        name
        for name in {n for t in complete for n in t.params}
        if len({repr(t.params.get(name)) for t in complete}) > 1
    ]
    no_complete = None if complete else "no complete trial yet"
    importance_need = None
    if len(complete) < 2:
        importance_need = f"needs at least 2 complete trials (has {len(complete)})"
    elif not varying:
        importance_need = "no parameter varies across the complete trials"
    reported = any(t.intermediate_values for t in trials)
    return [
        (
            "optimization_history",
            "Optimization history",
            lambda: vis.plot_optimization_history(study, target_name=target),
            no_complete,
        ),
        (
            "param_importances",
            "Parameter importances (fANOVA)",
            lambda: vis.plot_param_importances(
                study, evaluator=FanovaImportanceEvaluator(seed=0), target_name=target
            ),
            importance_need,
        ),
        (
            "parallel_coordinate",
            "Parallel coordinates",
            lambda: vis.plot_parallel_coordinate(study, target_name=target),
            no_complete,
        ),
        (
            "intermediate_values",
            "Validation metric per epoch (complete, pruned and running trials)",
            lambda: vis.plot_intermediate_values(study).update_layout(
                xaxis_title="epoch", yaxis_title=target
            ),
            None if reported else "no trial has reported an epoch yet",
        ),
        (
            "slice",
            "Slice plot",
            lambda: vis.plot_slice(study, target_name=target),
            no_complete,
        ),
    ]
