"""Contract tests of the Optuna private API hpsearch uses (hpsearch/storage/optuna_api.py).

Each test names the private attribute it relies on and checks it behaves as hpsearch
uses it, on a real SQLite storage. An Optuna release that renames or changes one fails
here, not in the middle of a search; ``setup.cfg`` pins the versions these tests passed on.
"""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from hpsearch.storage import open_storage
from hpsearch.storage.connect import Heartbeat
from hpsearch.storage.optuna_api import (
    BulkReadStorage,
    contains,
    heartbeat_table,
    heartbeat_thread,
    read_trials,
    sharing_trials,
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


def _varied_study(storage: optuna.storages.RDBStorage, name: str) -> optuna.Study:
    """Trials of every state, every kind of distribution and value a reader must keep:
    infinite values, NaN and infinite epochs, nested attributes, constraints."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for k in range(4):
        trial = study.ask()
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_int("batch", 16, 128, step=16)
        trial.suggest_categorical("optimizer", ["sgd", "adam", None])
        trial.set_user_attr("start", {"slot": k, "config": {"epochs": 3, "tags": [1, "a"]}})
        trial.storage.set_trial_system_attr(trial._trial_id, "constraints", [0.5 - k])
        for step, value in enumerate((0.1, math.nan, math.inf, -math.inf)[: k + 1]):
            trial.report(value, step)
        if k == 0:
            study.tell(trial, math.inf)
        elif k == 1:
            study.tell(trial, state=TrialState.PRUNED)
        elif k == 2:
            study.tell(trial, state=TrialState.FAIL)
        trial.set_user_attr("start", {"slot": k, "updated": True}) if k == 3 else None
    study.enqueue_trial({"lr": 0.01})
    return study


def _shown(trials: list[optuna.trial.FrozenTrial]) -> list[tuple[int, str]]:
    """Each trial's id and every field as written out (NaN equals NaN there, and the
    order of attributes counts)."""
    return [(trial_id(t), repr(t)) for t in trials]


def test_read_trials_builds_the_trials_optunas_reader_builds(storage_url: str) -> None:
    # RDBStorage._get_trials (its selection: states, included ids, ids greater than), and
    # Optuna's tables trials, trial_params, trial_values, trial_intermediate_values,
    # trial_user_attributes, trial_system_attributes as _build_frozen_trial_from_trial_model
    # reads them
    url = storage_url
    optunas = optuna.storages.RDBStorage(url)
    name = f"reader-{uuid.uuid4().hex[:8]}"
    study = _varied_study(optunas, name)
    several = optuna.create_study(
        study_name=f"{name}-2", storage=optunas, directions=["maximize", "minimize"]
    )
    several.optimize(lambda t: (t.suggest_float("x", 0, 1), -math.inf), n_trials=2)
    ours = open_storage(url)
    assert isinstance(ours, BulkReadStorage)
    ids = [trial_id(t) for t in study.get_trials(deepcopy=False)]
    for sid in (study_id(study), study_id(several)):
        for states in (None, (TrialState.COMPLETE, TrialState.PRUNED), (TrialState.WAITING,)):
            for included, greater in (((), -1), ({ids[0], ids[2], 10**9}, ids[1]), ((), ids[3])):
                expected = optunas._get_trials(sid, states, set(included), greater)
                got = read_trials(ours, sid, states, included, greater)
                assert _shown(got) == _shown(expected)
    assert read_trials(ours, study_id(study))[0].values == [math.inf]
    with pytest.raises(KeyError):
        read_trials(ours, 10**9)
    # Through a study, as every command reads trials (Optuna's caching wrapper).
    loaded = optuna.load_study(study_name=name, storage=ours)
    assert _shown(loaded.get_trials(deepcopy=False)) == _shown(
        optunas.get_all_trials(study_id(study))
    )
    optunas.engine.dispose()
    ours.engine.dispose()


def test_read_trials_falls_back_when_the_ids_overflow_an_in(
    storage: optuna.storages.RDBStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What RDBStorage._get_trials does when SQLite refuses a long IN: read the study's
    # trials, then keep the ones asked for
    from hpsearch.storage import optuna_api

    study = _varied_study(storage, "a")
    ids = [trial_id(t) for t in study.get_trials(deepcopy=False)]
    real = optuna_api._trial_rows
    calls = []

    def refuse_the_first(conn, where):
        calls.append(len(where))
        if len(calls) == 1:
            raise sa.exc.OperationalError("SELECT", {}, Exception("too many SQL variables"))
        return real(conn, where)

    monkeypatch.setattr(optuna_api, "_trial_rows", refuse_the_first)
    got = read_trials(storage, study_id(study), None, {ids[0]}, ids[2])
    assert [trial_id(t) for t in got] == [ids[0], *ids[3:]]
    assert calls == [2, 1]


def test_sharing_trials_hands_out_the_cached_trials(storage: optuna.storages.RDBStorage) -> None:
    # optuna.storages._cached_storage._CachedStorage (what load_study wraps an RDB storage
    # in) and its get_all_trials(study_id, deepcopy, states)
    _varied_study(storage, "a")
    plain = optuna.load_study(study_name="a", storage=storage)
    shared = optuna.load_study(study_name="a", storage=sharing_trials(storage))
    assert _shown(shared.trials) == _shown(plain.trials)
    assert shared.trials[0] is shared.get_trials(deepcopy=True)[0]
    assert plain.trials[0] is not plain.trials[0]
    done = (TrialState.COMPLETE,)
    assert _shown(shared.get_trials(states=done)) == _shown(plain.get_trials(states=done))
    shared.set_user_attr("report", "stored")  # it writes as any study does
    assert plain.user_attrs["report"] == "stored"
