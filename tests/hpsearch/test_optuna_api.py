"""Contract tests of the Optuna private API hpsearch uses (hpsearch/storage/optuna_api.py).

Each test names the private attribute it relies on and checks it behaves as hpsearch
uses it, on a real SQLite storage. An Optuna release that renames or changes one fails
here, not in the middle of a search; ``setup.cfg`` pins the versions these tests passed on.
"""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpsearch.storage import open_storage
from hpsearch.storage.connect import Heartbeat
from hpsearch.storage.optuna_api import (
    contains,
    heartbeat_table,
    heartbeat_thread,
    stale_trial_ids,
    study_id,
    study_storage,
    trial_id,
    trials_table,
)


@pytest.fixture
def storage(tmp_path: Path) -> optuna.storages.RDBStorage:
    return open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=Heartbeat(1, 2))


def test_study_id_is_the_storage_id(storage: optuna.storages.RDBStorage) -> None:
    # Study._study_id
    study = optuna.create_study(study_name="a", storage=storage)
    assert study_id(study) == storage.get_study_id_from_name("a")


def test_study_storage_reaches_the_same_database(storage: optuna.storages.RDBStorage) -> None:
    # Study._storage (a caching wrapper around the RDB storage)
    study = optuna.create_study(study_name="a", storage=storage)
    trial = study.ask()
    assert study_storage(study).get_trial(trial_id(trial)).number == trial.number


def test_trial_id_of_a_running_and_a_frozen_trial(storage: optuna.storages.RDBStorage) -> None:
    # Trial._trial_id and FrozenTrial._trial_id
    study = optuna.create_study(study_name="a", storage=storage)
    trial = study.ask()
    study.tell(trial, 1.0)
    frozen = study.trials[0]
    assert trial_id(trial) == trial_id(frozen)
    assert storage.get_trial_id_from_study_id_trial_number(study_id(study), 0) == trial_id(frozen)


def test_stale_trial_ids_are_the_silent_running_trials(
    storage: optuna.storages.RDBStorage,
) -> None:
    # RDBStorage._get_stale_trial_ids: running trials whose heartbeat is older than grace
    study = optuna.create_study(study_name="a", storage=storage)
    silent, finished = study.ask(), study.ask()
    storage.record_heartbeat(trial_id(silent))
    storage.record_heartbeat(trial_id(finished))
    study.tell(finished, 0.5)
    assert stale_trial_ids(storage, study_id(study)) == []
    # Past the 2 s grace period (a sleep in a test of a clock, not of speed). SQLite's
    # now() counts whole seconds, so 2.5 s can read as 2 (not past grace): wait over 3.
    time.sleep(3.1)
    assert stale_trial_ids(storage, study_id(study)) == [trial_id(silent)]


def test_heartbeat_table_holds_a_row_per_beating_trial(
    storage: optuna.storages.RDBStorage,
) -> None:
    # optuna.storages._rdb.models.TrialHeartbeatModel: columns trial_id, heartbeat
    study = optuna.create_study(study_name="a", storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial_id(trial))
    beats = heartbeat_table()
    query = sa.select(beats.c.trial_id, beats.c.heartbeat)
    with storage.engine.connect() as conn:
        rows = conn.execute(query).all()
    assert [r.trial_id for r in rows] == [trial_id(trial)] and rows[0].heartbeat is not None


def test_heartbeat_thread_beats_while_its_block_runs(
    storage: optuna.storages.RDBStorage,
) -> None:
    # optuna.storages._heartbeat.get_heartbeat_thread: a context manager that records the
    # trial's heartbeat on entry and every interval; a trial without a row is never stale.
    study = optuna.create_study(study_name="a", storage=storage)
    trial = study.ask()
    beats = heartbeat_table()
    query = sa.select(beats.c.trial_id).where(beats.c.trial_id == trial_id(trial))
    with storage.engine.connect() as conn:
        assert conn.execute(query).first() is None
    with heartbeat_thread(trial_id(trial), storage):
        deadline = time.time() + 10
        while time.time() < deadline:
            with storage.engine.connect() as conn:
                if conn.execute(query).first() is not None:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("no heartbeat recorded while the block ran")
    with storage.engine.begin() as conn:
        conn.execute(beats.delete().where(beats.c.trial_id == trial_id(trial)))
    time.sleep(3.1)
    assert stale_trial_ids(storage, study_id(study)) == []


def test_trials_table_has_the_columns_used(storage: optuna.storages.RDBStorage) -> None:
    # optuna.storages._rdb.models.TrialModel
    study = optuna.create_study(study_name="a", storage=storage)
    study.tell(study.ask(), 1.0)
    trials = trials_table()
    query = sa.select(trials.c.trial_id, trials.c.number, trials.c.study_id, trials.c.state)
    with storage.engine.connect() as conn:
        (row,) = conn.execute(query).all()
    assert (row.number, row.study_id) == (0, study_id(study))
    assert TrialState[row.state.name if hasattr(row.state, "name") else row.state].is_finished()


@pytest.mark.parametrize(
    ("distribution", "inside", "outside"),
    [
        (CategoricalDistribution(["sgd", "adam"]), "adam", "rmsprop"),
        (FloatDistribution(1e-4, 1e-1, log=True), 1e-3, 0.5),
        (IntDistribution(16, 128, step=16), 32, 33),
    ],
)
def test_contains_tells_a_value_inside_a_distribution(distribution, inside, outside) -> None:
    # BaseDistribution._contains on the internal representation
    assert contains(distribution, inside) is True
    assert contains(distribution, outside) is False
