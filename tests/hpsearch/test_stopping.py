"""The stop rule of random and TPE studies, on scripted values and through the command line."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from hpsearch.storage import open_storage
from hpsearch.study.stopping import (
    STOP_ATTR,
    FinishedValues,
    finished_values,
    improvement,
    standard_error,
    stop_reason,
)
from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.study_checks import run_args

# Best so far:        0.50  0.60  0.60  0.61  0.61  0.61  0.70
SCRIPT = [0.50, 0.60, 0.55, 0.61, None, 0.58, 0.70]


def first_stop(values, patience, min_delta, n_val=100, direction="maximize"):
    """The number of finished trials after which the rule first says stop (None: never)."""
    for n in range(1, len(values) + 1):
        if stop_reason(values[:n], direction, patience, min_delta, n_val) is not None:
            return n
    return None


def test_the_rule_stops_exactly_where_it_should() -> None:
    # Patience 2, min_delta 0.02: after 4 trials the last two (0.55, 0.61) improved the
    # best before them (0.60) by only 0.01.
    assert first_stop(SCRIPT, patience=2, min_delta=0.02) == 4
    # A smaller min_delta goes on longer: 0.01 > 0.005 at 4 and 5; at 6 the last two
    # (pruned, 0.58) improved nothing.
    assert first_stop(SCRIPT, patience=2, min_delta=0.005) == 6
    # Patience 3: at 4 the last three gained 0.11 over 0.50; at 5 only 0.01 over 0.60.
    assert first_stop(SCRIPT, patience=3, min_delta=0.02) == 5
    # Never with fewer than patience + 1 trials.
    assert improvement(SCRIPT[:2], "maximize", 2) is None


def test_minimising_and_the_standard_error() -> None:
    losses = [1.0, 0.8, 0.79, 0.795, 0.6]
    assert first_stop(losses, 2, 0.05, direction="minimize") == 4
    # val_se: sqrt(p (1 - p) / n) of the best accuracy.
    assert standard_error(0.9, 100) == pytest.approx(math.sqrt(0.9 * 0.1 / 100))
    # With 100 validation images the SE of 0.60 is 0.049: the 0.10 gain at 2 is not noise,
    # no gain at 3 is.
    assert first_stop(SCRIPT, patience=1, min_delta="val_se") == 3


STOPPING = """
[study]
sampler = "random"
seed = 1

[budget]
n_trials = 12

[stop]
patience = 2
min_delta = 0.5

[space]
lr = {{ low = 0.0001, high = 0.1, log = true }}

[scale.full]
epochs = 1
image_size = 32
"""


@pytest.mark.slow
def test_a_stopped_study_stays_stopped_until_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study_file = tmp_path / "stop.toml"
    study_file.write_text(STOPPING.format())
    args = run_args(study_file, "s", url, tmp_path)
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0")
    first = run_cli(args, env)
    assert first.returncode == 0, first.stderr[-2000:]
    study = optuna.load_study(study_name="s", storage=url)
    # No trial can improve by 0.5 on a curve in [0.25, 0.9]: stop after 3 finished trials.
    assert len(study.trials) == 3
    # The reason is recorded on the study and shown by status.
    assert "stopped early" in study.user_attrs[STOP_ATTR]
    status = run_cli(["status", "--study", "s", "--storage", url], env)
    assert "stopped early" in status.stdout
    # The same command again does not restart it.
    again = run_cli(args, env)
    assert again.returncode == 0 and len(optuna.load_study(study_name="s", storage=url).trials) == 3
    # --n-trials starts new trials on purpose.
    more = run_cli([*args, "--n-trials", "2"], env)
    assert more.returncode == 0, more.stderr[-2000:]
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 5


def test_the_kept_values_follow_every_trial_as_a_fresh_read_does(tmp_path: Path) -> None:
    """A worker's stop check places each newly finished trial once; what it reads is
    always what reading every trial gives: trials that finish out of order, pruned ones,
    ones that break a constraint, and copied-in ones (not the study's own)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=open_storage(f"sqlite:///{tmp_path / 's.db'}"), direction="maximize"
    )
    kept = FinishedValues()
    assert kept.read(study) == finished_values(study) == []
    copied = optuna.trial.create_trial(value=0.99, user_attrs={"copied_from": {"trial": 3}})
    study.add_trial(copied)
    running = [study.ask() for _ in range(4)]
    for k, trial in enumerate([running[2], running[0]]):
        study.tell(trial, 0.5 + k / 10)
        assert kept.read(study) == finished_values(study)
    study.tell(running[3], state=optuna.trial.TrialState.PRUNED)
    running[1].storage.set_trial_system_attr(running[1]._trial_id, "constraints", [1.0])
    study.tell(running[1], 0.9)  # breaks its constraint: counts as no value
    study.tell(study.ask(), 0.7)
    assert kept.read(study) == finished_values(study) == [0.5, 0.6, None, None, 0.7]
