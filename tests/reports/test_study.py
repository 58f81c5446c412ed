"""The study part: trials table and Optuna figures, also for studies that just started."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from reports.study import study_info, trials_table
from reports.study_figures import study_figures
from tests.reports.factory import data_attrs, make_study


@pytest.fixture
def study(tmp_path) -> optuna.Study:
    return make_study(
        f"sqlite:///{tmp_path / 's.db'}",
        "demo",
        data_attrs(tmp_path / "data", 0.2),
        tmp_path / "work",
        None,
        {"epochs": 2},
        {"val_accuracy": 0.6, "val_auc_macro": 0.7},
    )


def test_trials_table_has_every_trial_and_state(study: optuna.Study) -> None:
    table = trials_table(study)
    assert list(table["number"]) == [0, 1, 2, 3, 4]
    states = list(table["state"])
    assert states.count("COMPLETE") == 3
    assert "PRUNED" in states
    assert "INTERRUPTED (interrupted)" in states  # a stopped trial, not a failed one
    for column in ("value", "best_epoch", "epochs_run", "lr", "optimizer"):
        assert column in table.columns
    best = table.loc[table["value"].idxmax()]
    assert best["number"] == study.best_trial.number
    assert best["epochs_run"] == len(study.best_trial.intermediate_values)


def test_figures_cover_pruned_trials(study: optuna.Study) -> None:
    figs = study_figures(study, study.user_attrs["hpsearch"])
    assert set(figs.figures) == {
        "optimization_history",
        "parallel_coordinate",
        "intermediate_values",
        "slice",
        "expected_best",
    }
    # three complete trials are too few for importances: said, not drawn
    assert set(figs.skipped) == {"param_importances"}
    assert figs.skipped["param_importances"].startswith("too few trials: 3 complete")
    curves = figs.figures["intermediate_values"].data
    pruned = study.get_trials(states=(TrialState.PRUNED,))[0].number
    # one curve per trial that reported, the pruned one included
    assert len(curves) == 4
    assert (
        figs.figures["intermediate_values"].layout.yaxis.title.text == "val_accuracy (validation)"
    )
    assert f"trial #{pruned} (pruned)" in [c.name for c in curves]
    # the expected best of n trials: from the mean of the complete trials to their best
    values = sorted(t.value for t in study.get_trials(states=(TrialState.COMPLETE,)))
    expected = figs.figures["expected_best"].data[-1]
    assert list(expected.x) == [1, 2, 3]
    assert expected.y[0] == pytest.approx(sum(values) / 3)
    assert expected.y[1] == pytest.approx((values[1] + 2 * values[2]) / 3)  # C(3,2) pairs
    assert expected.y[2] == pytest.approx(values[2])
    # with a confirmation's seed spread, the read-out uses it, as status does
    note = study_figures(study, study.user_attrs["hpsearch"], seed_sd=1.0).figures
    text = note["expected_best"].layout.title.text.replace("<br>", " ")
    assert "1 trial(s) reach within one standard error (1.0000, sd of the" in text


def test_young_study_skips_what_cannot_be_drawn(tmp_path) -> None:
    study = optuna.create_study(study_name="young", storage=f"sqlite:///{tmp_path / 'y.db'}")
    figs = study_figures(study)
    assert figs.figures == {}
    assert "no complete trial" in figs.skipped["optimization_history"]
    study.add_trial(
        create_trial(
            value=0.5,
            params={"lr": 0.01},
            distributions={"lr": FloatDistribution(1e-4, 1.0)},
            intermediate_values={1: 0.5},
        )
    )
    figs = study_figures(study)
    assert "too few trials: 1 complete" in figs.skipped["param_importances"]
    assert figs.skipped["expected_best"] == "needs 2 or more complete trials"
    assert "optimization_history" in figs.figures
    assert study_info(study)["best_trial"] == 0
    assert trials_table(study)["epochs_run"].tolist() == [1]
