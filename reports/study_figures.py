"""Optuna's figures of a search, sized for the report and labelled for a reader.

Works on a study that is still running: only what the storage holds now is drawn,
and a figure that cannot be drawn yet is skipped with the reason.
"""

from __future__ import annotations

import math
import random
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import plotly.colors
import plotly.graph_objects as go
from optuna.trial import TrialState

from hpsearch.trials import search_trials, trial_value
from hpsearch.trials.expected_best import expected_best
from reports.html import escape
from reports.sizing import PAGE_WIDTH_PX, fit_figure
from reports.study import study_metric

#: PED-ANOVA, Optuna's default importance evaluator and optuna-dashboard's, compares
#: the best 10 % of the complete trials with all of them; below 11 trials that best
#: 10 % is a single trial, and the importances say more about it than about the space.
MIN_IMPORTANCE_TRIALS = 11
IMPORTANCE_METHOD = "PED-ANOVA (Optuna's default evaluator, the one optuna-dashboard uses)"
#: Blues without its near-white end, so the worst trial's line shows on white.
LINE_COLORS: list[str] = plotly.colors.sequential.Blues[3:]
#: At most this many ticks on an integer axis (epochs, trial numbers).
MAX_INTEGER_TICKS = 12
#: Figures with a line per trial (parallel coordinates, the metric per epoch) draw at
#: most this many trials: the best :data:`BEST_LINES` and others drawn at random. Ten
#: thousand lines are neither readable nor quick to build, write and render.
MAX_LINES = 300
BEST_LINES = 100


@dataclass
class StudyFigures:
    """Figures by file stem, and the figures that were skipped with why."""

    figures: dict[str, go.Figure] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Search:
    """What the figures need to know about the study, read once."""

    study: optuna.Study
    target: str
    """The objective's name as the axes show it, e.g. ``val_accuracy (validation)``."""
    n_complete: int
    varying: list[str]
    """Parameters with more than one value across the complete trials, sorted."""
    fixed: dict[str, Any]
    """Parameters with one value in every complete trial."""
    states: dict[int, str]
    """Trial number -> state name."""
    seed_sd: float | None = None
    """Standard deviation over a confirmation's seeds of its leader, when there is one."""
    objectives: tuple[str, ...] = ()
    """A study of several objectives: their names (its figures are its Pareto front)."""
    lines: optuna.Study | None = None
    """For figures with a line per trial, when the study has more than :data:`MAX_LINES`
    trials to draw: an in-memory study of the ones drawn (None: ``study`` itself)."""
    lines_note: str | None = None
    lines_numbers: tuple[int, ...] = ()
    """The study's trial number of each trial of ``lines``, by its number there."""

    @property
    def fixed_note(self) -> str | None:
        if not self.fixed:
            return None
        values = ", ".join(f"{k}={v}" for k, v in sorted(self.fixed.items()))
        return f"Fixed in every complete trial, so not drawn: {escape(values)}."


def without_copied_trials(study: optuna.Study) -> optuna.Study:
    """``study`` itself, or, when it holds trials copied from another study by
    ``--from-study``, an in-memory study of its own trials: the figures show the search
    this study ran, not the prior knowledge it was given (another scale, maybe)."""
    trials = study.get_trials(deepcopy=False)
    own = search_trials(study)
    if len(own) == len(trials):
        return study
    view = optuna.create_study(study_name=study.study_name, directions=study.directions)
    view.add_trials(own)
    return view


def _search(
    study: optuna.Study, settings: Mapping[str, Any] | None, seed_sd: float | None = None
) -> _Search:
    study = without_copied_trials(study)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    values: dict[str, set[str]] = {}
    for trial in complete:
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(repr(value))
    varying = sorted(name for name, seen in values.items() if len(seen) > 1)
    fixed = {name: complete[0].params.get(name) for name in values if name not in varying}
    lines, lines_note, lines_numbers = _line_sample(study, trials)
    return _Search(
        lines=lines,
        lines_note=lines_note,
        lines_numbers=lines_numbers,
        study=study,
        target=f"{study_metric(settings)} (validation)",
        n_complete=len(complete),
        varying=varying,
        fixed=fixed,
        states={t.number: t.state.name for t in trials},
        seed_sd=seed_sd,
        objectives=_objective_names(study, settings),
    )


def _line_sample(
    study: optuna.Study, trials: list[optuna.trial.FrozenTrial]
) -> tuple[optuna.Study | None, str | None, tuple[int, ...]]:
    """The trials the per-trial-line figures draw when there are too many: the best
    :data:`BEST_LINES` complete ones and others drawn at random (seed 0), as an in-memory
    study (which numbers them anew), the note that says so, and their numbers in
    ``study``; (None, None, ()) when every trial can be drawn."""
    if len(study.directions) > 1:
        return None, None, ()
    drawn = [t for t in trials if t.intermediate_values or t.state == TrialState.COMPLETE]
    if len(drawn) <= MAX_LINES:
        return None, None, ()
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    complete = [t for t in drawn if t.state == TrialState.COMPLETE and t.value is not None]
    best = sorted(complete, key=lambda t: (sign * trial_value(t), t.number))[:BEST_LINES]
    chosen = {t.number for t in best}
    rest = [t for t in drawn if t.number not in chosen]
    sample = random.Random(0).sample(rest, MAX_LINES - len(best))
    kept = sorted([*best, *sample], key=lambda t: t.number)
    view = optuna.create_study(study_name=study.study_name, directions=study.directions)
    view.add_trials(kept)
    note = (
        f"{len(kept)} of the {len(drawn)} trials drawn: the best {len(best)} and "
        f"{len(sample)} of the others at random (every trial is in trials.csv)."
    )
    return view, note, tuple(t.number for t in kept)


def _objective_names(study: optuna.Study, settings: Mapping[str, Any] | None) -> tuple[str, ...]:
    if len(study.directions) < 2:
        return ()
    names = list((settings or {}).get("objectives") or [])
    if len(names) != len(study.directions):
        names = [f"objective {i}" for i in range(len(study.directions))]
    return tuple(f"{n} (validation)" if n.startswith("val_") else n for n in names)


def study_figures(
    study: optuna.Study, settings: Mapping[str, Any] | None = None, seed_sd: float | None = None
) -> StudyFigures:
    """Optimization history, importances, parallel coordinates, intermediate values, slices.

    ``settings`` is what ``hpsearch run`` recorded about the study (the metric's name).
    Parameter importances need :data:`MIN_IMPORTANCE_TRIALS` complete trials and a
    parameter that varies; other figures need one complete trial (intermediate values:
    any trial that reported).
    """
    search = _search(study, settings, seed_sd)
    out = StudyFigures()
    for key, draw, needs in _figure_plan(search):
        if needs is not None:
            out.skipped[key] = needs
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.figures[key] = draw(search)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            out.skipped[key] = f"could not be drawn: {err}"
    return out


def _figure_plan(
    search: _Search,
) -> list[tuple[str, Callable[[_Search], go.Figure], str | None]]:
    """(file stem, how to draw, why it cannot be drawn yet or None) per figure."""
    no_complete = None if search.n_complete else "no complete trial yet"
    no_varying = None
    if search.n_complete and not search.varying:
        no_varying = "no parameter varies across the complete trials"
    if search.objectives:
        several = "a study of several objectives: see its Pareto front"
        return [
            ("pareto_front", pareto_figure, no_complete),
            *((key, history_figure, several) for key in SINGLE_OBJECTIVE_FIGURES),
        ]
    reported = any(t.intermediate_values for t in search.study.get_trials(deepcopy=False))
    return [
        ("optimization_history", history_figure, no_complete),
        ("param_importances", importance_figure, _importance_need(search)),
        ("parallel_coordinate", parallel_figure, no_complete or no_varying),
        (
            "intermediate_values",
            epoch_figure,
            None if reported else "no trial has reported an epoch yet",
        ),
        ("slice", slice_figure, no_complete or no_varying),
        (
            "expected_best",
            expected_best_figure,
            None if search.n_complete >= 2 else "needs 2 or more complete trials",
        ),
    ]


def _importance_need(search: _Search) -> str | None:
    """Why the importances are not drawn, or None."""
    if search.n_complete < MIN_IMPORTANCE_TRIALS:
        return (
            f"too few trials: {search.n_complete} complete, and {IMPORTANCE_METHOD} needs at "
            f"least {MIN_IMPORTANCE_TRIALS} (its best 10 % must hold more than one trial)"
        )
    if not search.varying:
        return "no parameter varies across the complete trials"
    return None


def _title(search: _Search, what: str) -> str:
    return f"{what} — study {escape(search.study.study_name)}"


def _integer_axis(largest: float) -> dict[str, Any]:
    """Ticks on whole numbers only (no epoch 1.5), at most :data:`MAX_INTEGER_TICKS`."""
    step = max(1, math.ceil(largest / MAX_INTEGER_TICKS))
    return {"tickmode": "linear", "tick0": 0, "dtick": step, "tickformat": "d"}


#: Figures of a study of one objective (each reads the one value of a trial).
SINGLE_OBJECTIVE_FIGURES = (
    "optimization_history",
    "param_importances",
    "parallel_coordinate",
    "intermediate_values",
    "slice",
    "expected_best",
)


def pareto_figure(search: _Search) -> go.Figure:
    """The trials of a study of several objectives, its Pareto front marked (infeasible
    trials, where the study has constraints, apart)."""
    constrained = any(t.constraints for t in search.study.get_trials(deepcopy=False))
    fig = optuna.visualization.plot_pareto_front(
        search.study,
        target_names=list(search.objectives),
        constraints_func=(lambda t: list(t.constraints.values())) if constrained else None,
    )
    return fit_figure(fig, _title(search, "Pareto front"), width=760, height=520)


def history_figure(search: _Search) -> go.Figure:
    """Each complete trial's value and the best so far, by trial number."""
    fig = optuna.visualization.plot_optimization_history(search.study, target_name=search.target)
    # Optuna greys the trials that break a [constraints] bound without a legend entry.
    fig.update_traces(
        selector={"name": "Infeasible Trial"},
        showlegend=True,
        name="breaks a constraint (not a candidate)",
    )
    fig.update_layout(xaxis=_integer_axis(max(search.states, default=0)))
    return fit_figure(fig, _title(search, "Optimization history"), width=900, height=480)


def importance_figure(search: _Search) -> go.Figure:
    """Parameter importances by PED-ANOVA, as optuna-dashboard computes them."""
    from optuna.importance import PedAnovaImportanceEvaluator

    fig = optuna.visualization.plot_param_importances(
        search.study, evaluator=PedAnovaImportanceEvaluator(), target_name=search.target
    )
    n_params = len(search.varying) + len(search.fixed)
    note = f"{IMPORTANCE_METHOD}, fitted on {search.n_complete} complete trials."
    title = _title(search, "Parameter importances")
    return fit_figure(fig, title, width=900, height=200 + 40 * n_params, note=note)


def parallel_figure(search: _Search) -> go.Figure:
    """One line per complete trial across the parameters that vary; darker is better."""
    fig = optuna.visualization.plot_parallel_coordinate(
        search.lines or search.study, params=search.varying, target_name=search.target
    )
    _visible_lines(fig)
    note = f"Colour: {escape(search.target)}, darker is better."
    if search.lines_note:
        note = f"{note} {escape(search.lines_note)}"
    if search.fixed_note:
        note = f"{note} {search.fixed_note}"
    width = 300 + 170 * len(search.varying)
    return fit_figure(
        fig, _title(search, "Parallel coordinates"), width=width, height=520, note=note
    )


def expected_best_figure(search: _Search) -> go.Figure:
    """Expected best validation value of a search of n trials, n = 1 .. the study's, with
    its bootstrap band and the read-out (``hpsearch.trials.expected_best``)."""
    complete = search.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = [trial_value(t) for t in complete if t.value is not None]
    maximize = search.study.direction == optuna.study.StudyDirection.MAXIMIZE
    curve = expected_best(values, maximize, seed_sd=search.seed_sd)
    assert curve is not None  # the plan asks for 2 or more complete trials
    fig = go.Figure()
    band = dict(mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False)
    fig.add_trace(go.Scatter(x=curve.n, y=curve.high, **band))
    fig.add_trace(
        go.Scatter(
            x=curve.n, y=curve.low, fill="tonexty", fillcolor="rgba(33,113,181,0.18)",
            name="95 % bootstrap band", **{**band, "showlegend": True},
        )
    )  # fmt: skip
    fig.add_trace(go.Scatter(x=curve.n, y=curve.value, mode="lines+markers", name="expected best"))
    fig.update_layout(
        xaxis={"title": "trials in the search (n)", **_integer_axis(max(curve.n))},
        yaxis_title=f"expected best {search.target}",
    )
    note = (
        "The expected best of n trials drawn without replacement from this study's "
        "complete trials (unbiased estimator of Tang et al. 2020, after Dodge et al. 2019)."
    )
    if curve.within_one_se_at is not None and curve.se_source:
        note += (
            f" {curve.within_one_se_at} trial(s) reach within one standard error "
            f"({curve.se:.4f}, {escape(curve.se_source)}) of the best."
        )
    title = _title(search, "Expected best value against the number of trials")
    return fit_figure(fig, title, width=900, height=480, note=note)


def _visible_lines(fig: go.Figure) -> None:
    """Recolour Optuna's trial lines with :data:`LINE_COLORS`, which has no near-white end.

    Optuna draws each trial as a line whose first point is its value, scaled to [0, 1],
    and one marker trace that carries the colour bar (reversed when lower is better).
    """
    bars = [t for t in fig.data if t.marker is not None and t.marker.showscale]
    reverse = bool(bars and bars[0].marker.reversescale)
    scale = plotly.colors.make_colorscale(LINE_COLORS)
    for bar in bars:
        bar.marker.colorscale = scale
    for trace in fig.data:
        if trace.mode == "lines" and trace.y and trace.y[0] is not None:
            position = 1 - trace.y[0] if reverse else trace.y[0]
            trace.line.color = plotly.colors.sample_colorscale(scale, [position])[0]
            trace.opacity = 0.85


def epoch_figure(search: _Search) -> go.Figure:
    """The validation metric per epoch of every trial that reported, one legend entry each."""
    fig = optuna.visualization.plot_intermediate_values(search.lines or search.study)
    epochs = [x for trace in fig.data for x in (trace.x or ())]
    for trace in fig.data:
        trace.name = _trial_label(trace.name or "", search.states, search.lines_numbers)
    fig.update_layout(
        showlegend=True,
        legend_title_text="trial",
        xaxis={"title": "epoch", **_integer_axis(max(epochs, default=1))},
        yaxis_title=search.target,
    )
    title = _title(search, "Validation metric per epoch (complete, pruned and running trials)")
    note = escape(search.lines_note) if search.lines_note else None
    return fit_figure(fig, title, width=1000, height=520, note=note)


def _trial_label(name: str, states: Mapping[int, str], numbers: tuple[int, ...] = ()) -> str:
    """Optuna's ``Trial7`` as optuna-dashboard says it, ``trial #7``, with its state unless
    it completed (``numbers``: the study's number of each trial of a sample, by its own)."""
    found = re.fullmatch(r"Trial\s*(\d+)", name)
    if not found:
        return name
    number = int(found.group(1))
    if numbers:
        number = numbers[number]
    state = states.get(number, "")
    return f"trial #{number}" + ("" if state == "COMPLETE" else f" ({state.lower()})")


def slice_figure(search: _Search) -> go.Figure:
    """The value of each complete trial against each parameter that varies."""
    fig = optuna.visualization.plot_slice(
        search.study, params=search.varying, target_name=search.target
    )
    width = min(PAGE_WIDTH_PX, 160 + 260 * len(search.varying))
    title = _title(search, "Slice plot")
    return fit_figure(fig, title, width=width, height=500, note=search.fixed_note)
