"""The search's figures: importances as optuna-dashboard computes them, readable lines,
legends and whole epochs."""

from __future__ import annotations

import re

import optuna
import pytest

from reports.study_figures import LINE_COLORS, MIN_IMPORTANCE_TRIALS, StudyFigures, study_figures
from tests.reports.factory import GRID_SPACE, make_grid_study

SETTINGS = {"metric": "val_accuracy"}


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> optuna.Study:
    path = tmp_path_factory.mktemp("grid") / "g.db"
    return make_grid_study(f"sqlite:///{path}", n_complete=MIN_IMPORTANCE_TRIALS + 1)


@pytest.fixture(scope="module")
def figs(grid: optuna.Study) -> StudyFigures:
    return study_figures(grid, SETTINGS)


def _importances(fig) -> dict[str, float]:
    bar = fig.data[0]
    return dict(zip(bar.y, bar.x, strict=True))


def test_importances_are_optuna_dashboards(grid: optuna.Study, figs: StudyFigures) -> None:
    dashboard = pytest.importorskip("optuna_dashboard._importance")
    cache = pytest.importorskip("optuna_dashboard._inmemory_cache")
    fig = figs.figures["param_importances"]
    theirs = dashboard.get_param_importance_from_trials_cache(
        cache.InMemoryCache(), grid._storage, grid._study_id, 0, grid.get_trials()
    )
    # same evaluator, same numbers as the dashboard shows
    assert _importances(fig) == pytest.approx({i["name"]: i["importance"] for i in theirs})


def test_importances_say_method_and_trial_count(figs: StudyFigures) -> None:
    fig = figs.figures["param_importances"]
    title = fig.layout.title.text
    assert "PED-ANOVA" in title and f"{MIN_IMPORTANCE_TRIALS + 1} complete trials" in title


@pytest.mark.parametrize("n_complete", [2, MIN_IMPORTANCE_TRIALS - 1])
def test_too_few_trials_for_importances(tmp_path, n_complete: int) -> None:
    study = make_grid_study(f"sqlite:///{tmp_path / 'g.db'}", n_complete=n_complete)
    figs = study_figures(study, SETTINGS)
    assert "param_importances" not in figs.figures
    why = figs.skipped["param_importances"]
    assert why.startswith(f"too few trials: {n_complete} complete")
    assert f"at least {MIN_IMPORTANCE_TRIALS}" in why


def _axis_labels(fig) -> list[str]:
    return list(fig.layout.xaxis.ticktext)


def test_parallel_coordinates_drop_fixed_axes_and_say_so(figs: StudyFigures) -> None:
    fig = figs.figures["parallel_coordinate"]
    labels = _axis_labels(fig)
    varying = sorted(k for k, v in GRID_SPACE.items() if len(v) > 1)
    assert labels == ["val_accuracy (validation)", *varying]
    assert "weight_decay=0.01" in fig.layout.title.text  # the fixed one is named


def _rgb(color: str) -> tuple[int, ...]:
    return tuple(int(float(c)) for c in re.findall(r"[\d.]+", color)[:3])


def test_parallel_lines_are_visible_on_white(figs: StudyFigures) -> None:
    fig = figs.figures["parallel_coordinate"]
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == MIN_IMPORTANCE_TRIALS + 1
    # the worst trial gets the lightest colour of LINE_COLORS, no lighter
    lightest = _rgb(LINE_COLORS[0])
    for trace in lines:
        assert sum(_rgb(trace.line.color)) <= sum(lightest) + 1
    assert max(sum(_rgb(t.line.color)) for t in lines) == pytest.approx(sum(lightest), abs=2)
    assert sum(lightest) < 0.8 * 3 * 255  # clearly darker than the white page
    bar = next(t for t in fig.data if t.marker is not None and t.marker.showscale)
    assert _rgb(bar.marker.colorscale[0][1]) == lightest


def test_epoch_curves_have_a_legend_and_whole_epochs(figs: StudyFigures) -> None:
    fig = figs.figures["intermediate_values"]
    assert fig.layout.showlegend is True
    names = [t.name for t in fig.data]
    n = MIN_IMPORTANCE_TRIALS + 1
    # labelled as optuna-dashboard labels them, pruned ones marked
    assert names[:2] == ["trial #0", "trial #1"]
    assert names[n:] == [f"trial #{n} (pruned)", f"trial #{n + 1} (pruned)"]
    axis = fig.layout.xaxis
    assert axis.title.text == "epoch"
    assert axis.tickmode == "linear" and axis.dtick == 1 and axis.tickformat == "d"


def test_history_ticks_whole_trial_numbers(figs: StudyFigures) -> None:
    axis = figs.figures["optimization_history"].layout.xaxis
    assert axis.tickformat == "d" and float(axis.dtick).is_integer()


def test_slice_plot_shows_varying_parameters_only(figs: StudyFigures) -> None:
    fig = figs.figures["slice"]
    titles = [fig.layout[k].title.text for k in fig.layout if k.startswith("xaxis")]
    assert sorted(titles) == sorted(k for k, v in GRID_SPACE.items() if len(v) > 1)
    assert "weight_decay=0.01" in fig.layout.title.text


def test_no_varying_parameter_skips_parallel_and_slice(tmp_path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'f.db'}", direction="maximize")
    for value in (0.5, 0.6):
        study.enqueue_trial({"lr": 0.1})
        study.optimize(lambda t, v=value: t.suggest_float("lr", 0.01, 1.0) * 0 + v, n_trials=1)
    figs = study_figures(study)
    for key in ("parallel_coordinate", "slice"):
        assert figs.skipped[key] == "no parameter varies across the complete trials"


def test_a_large_study_draws_its_best_and_a_sample_of_lines() -> None:
    """Over MAX_LINES trials, the per-trial-line figures draw the best BEST_LINES and a
    seeded sample of the others, and say so; the other figures keep every trial."""
    from optuna.distributions import FloatDistribution

    from reports.study_figures import BEST_LINES, MAX_LINES

    study = optuna.create_study(direction="maximize")
    n = MAX_LINES + 200
    for k in range(n):
        value = ((k * 37) % n) / n  # every value once, in no trial order
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 0.001 + k * 1e-5, "momentum": (k % 7) / 10},
                distributions={
                    "lr": FloatDistribution(1e-4, 0.1, log=True),
                    "momentum": FloatDistribution(0.0, 0.9),
                },
                value=value,
                intermediate_values={1: value / 2, 2: value},
            )
        )
    figs = study_figures(study, {"metric": "val_accuracy"})
    parallel = figs.figures["parallel_coordinate"]
    lines = [t for t in parallel.data if t.mode == "lines"]
    assert len(lines) == MAX_LINES
    curves = figs.figures["intermediate_values"]
    assert len([t for t in curves.data if t.name and t.name.startswith("trial #")]) == MAX_LINES
    best = sorted(study.trials, key=lambda t: -t.value)[:BEST_LINES]
    drawn = {int(t.name.split("#")[1].split()[0]) for t in curves.data if t.name}
    assert {t.number for t in best} <= drawn
    from reports.sizing import title_lines

    note = " ".join(text for text, _ in title_lines(parallel))
    assert f"{MAX_LINES} of the {n} trials drawn: the best {BEST_LINES}" in note
    # The history keeps every trial.
    history = figs.figures["optimization_history"]
    assert max(len(t.x) for t in history.data) == n
