"""``hpsearch run --wandb offline``: one run per trial, grouped by study, read back from disk."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.wandb_records import wait_for_runs

pytestmark = pytest.mark.slow  # runs `hpsearch run` in a subprocess


def test_run_logs_one_offline_wandb_run_per_trial(tmp_path: Path, grid_file) -> None:
    env = fake_env(
        tmp_path,
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
        WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"),
        WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
        WANDB_DATA_DIR=str(tmp_path / "wandb-data"),
    )
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT"):
        env.pop(key, None)
    workdir = tmp_path / "work"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    args = [
        "run",
        "--study",
        str(grid_file(pruner="median", epochs=2)),
        "--name",
        "wb",
        "--storage",
        storage,
        "--data",
        str(tmp_path),
        "--workdir",
        str(workdir),
        "--n-trials",
        "2",
    ]
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr[-3000:]

    # offline by default: runs land under the workdir, two trials plus the study table
    runs = wait_for_runs(workdir / "wandb", 3)
    trial_runs = [r for r in runs if r.job_type == "grid"]
    assert len(trial_runs) == 2
    assert {r.group for r in runs} == {"wb"}
    for run in trial_runs:
        # config = fixed values + trial params
        assert run.config["optimizer"] in ("sgd", "adam")
        assert run.config["momentum"] == 0.9 and run.config["epochs"] == 2
        assert "val_accuracy" in run.metric_keys
        assert run.summary["optuna/state"] in ("complete", "pruned")
        assert "sampler:grid" in run.tags and "pruner:median" in run.tags
    assert sorted(r.summary["optuna/trial_number"] for r in trial_runs) == [0, 1]

    # each Optuna trial names its wandb run, whose config names the trial back
    study = optuna.load_study(study_name="wb", storage=storage)
    by_id = {r.run_id: r for r in trial_runs}
    for trial in study.trials:
        run = by_id[trial.user_attrs["wandb_run_id"]]
        assert run.config["optuna"]["trial_number"] == trial.number

    # one line says where the runs are and how to upload them all; wandb itself is quiet
    wandb_lines = [
        line for line in (result.stdout + result.stderr).splitlines() if "wandb" in line.lower()
    ]
    runs_dir = workdir / "wandb" / "wandb"
    assert wandb_lines == [
        f"wandb: this study's 2 trial run(s) and its trials table offline in {runs_dir}/ "
        f"(project 'hpsearch', group 'wb'); upload them all: wandb sync {runs_dir}/offline-run-*"
    ]
    # --n-trials stopped the run early: how to go on
    assert "--n-trials reached: run the same command again to continue: 14 of 16 left" in (
        result.stderr
    )
