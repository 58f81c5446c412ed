"""``[[enqueue]]``: configurations that run first, exactly once; TPE settings from the file."""

from __future__ import annotations

import collections
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.run.kinds import Search
from hpsearch.study.load import load_study_file
from hpsearch.trials.record import TrialRecord
from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.study_checks import assert_every_slot_once, run_args

BASELINE = {"lr": 0.001, "optimizer": "sgd", "batch_size": 32}

GRID = """
[study]
sampler = "grid"
seed = 5

[fixed]
momentum = 0.5

[space]
lr = [0.0001, 0.001, 0.01, 0.1]
optimizer = ["sgd", "adam"]
batch_size = [16, 32]

[[enqueue]]
lr = 0.001
optimizer = "sgd"
batch_size = 32

[scale.full]
epochs = 2
image_size = 32
"""

RANDOM = """
[study]
sampler = "{sampler}"
seed = 5

[budget]
n_trials = 5

[fixed]
momentum = 0.5

[space]
lr = {{ low = 0.0001, high = 0.1, log = true }}
optimizer = ["sgd", "adam"]
batch_size = [16, 32]

[[enqueue]]
lr = 0.001
optimizer = "sgd"
batch_size = 32

[scale.full]
epochs = 1
image_size = 32
"""


@pytest.mark.slow
def test_an_enqueued_grid_point_runs_once_and_first(
    tmp_path: Path, storage_url: str, study_name: str
) -> None:
    study_file = tmp_path / "grid.toml"
    study_file.write_text(GRID)
    args = [*run_args(study_file, study_name, storage_url, tmp_path), "--workers", "4"]
    result = run_cli(args, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.05"))
    assert result.returncode == 0, result.stderr[-3000:]
    # Every one of the 16 grid points exactly once: the enqueued one did not run twice.
    study = assert_every_slot_once(storage_url, study_name, 16)
    assert len(study.trials) == 16
    enqueued = [t for t in study.trials if t.user_attrs.get("enqueued")]
    # The enqueued configuration is marked, and it is slot 0, the first claimed.
    assert len(enqueued) == 1 and enqueued[0].params == BASELINE
    assert TrialRecord.read(enqueued[0]).slot == 0


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_an_enqueued_configuration_is_the_first_trial(tmp_path: Path, sampler: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = tmp_path / f"{sampler}.toml"
    study_file.write_text(RANDOM.format(sampler=sampler))
    result = run_cli(run_args(study_file, "s", url, tmp_path), fake_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="s", storage=url)
    # The budget holds the enqueued configuration: 5 trials in all, the first one it.
    assert len(study.trials) == 5 and {t.state for t in study.trials} == {TrialState.COMPLETE}
    assert study.trials[0].params == BASELINE and study.trials[0].user_attrs["enqueued"]
    # It ran once: no other trial has the same parameters.
    keys = collections.Counter(tuple(sorted(t.params.items())) for t in study.trials)
    assert max(keys.values()) == 1


def test_enqueued_grid_points_lead_the_order(tmp_path: Path) -> None:
    path = tmp_path / "grid.toml"
    path.write_text(GRID)
    spec = load_study_file(path)
    order = spec.grid_order("full")
    # Still a permutation of every point, with the enqueued point first.
    assert sorted(order) == list(range(16))
    assert spec.grid_points("full")[order[0]] == BASELINE


def test_tpe_takes_its_settings_from_the_study_file(tmp_path: Path) -> None:
    path = tmp_path / "tpe.toml"
    path.write_text(RANDOM.format(sampler="tpe") + "\n[tpe]\nn_startup_trials = 2\n")
    spec = load_study_file(path)
    sampler = Search(spec, "full").sampler(3)
    # Start-up trials from the file, and the constant liar on for parallel workers.
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 2 and sampler._constant_liar is True
    # The shipped TPE study has more guided trials than start-up ones.
    shipped = load_study_file(Path(__file__).resolve().parents[2] / "studies" / "tpe.toml")
    assert (
        shipped.sampler_settings is not None
        and shipped.sampler_settings.n_startup_trials is not None
    )
    assert shipped.budget("full") >= 2 * shipped.sampler_settings.n_startup_trials
