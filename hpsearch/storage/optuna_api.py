"""Every use of Optuna's private API, in one place.

hpsearch builds on Optuna's public API, but a few things it needs have no public name:
the id of a study or trial in its storage, the storage behind a study, the running trials
whose heartbeat stopped, the heartbeat table itself, whether a value lies inside a
distribution, the tables a study's trials are read from (:class:`BulkReadStorage`
reads them in six flat queries instead of Optuna's object mapping, which costs seconds
per 10,000 trials), and the caching wrapper every study puts around an RDB storage
(:func:`sharing_trials`: a read-only command's trials without a deep copy each read).
Each is one small piece here, and each has a contract test
(``tests/hpsearch/test_optuna_api.py``) that fails on an Optuna release that changes it;
``setup.cfg`` pins the Optuna versions those tests have passed on.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Container, Iterable
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from optuna.storages._heartbeat import BaseHeartbeatThread


def study_id(study: optuna.Study) -> int:
    """The study's id in its storage (``Study._study_id``)."""
    return int(study._study_id)


def study_storage(study: optuna.Study) -> BaseStorage:
    """The storage a study reads and writes (``Study._storage``)."""
    storage: BaseStorage = study._storage
    return storage


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """A trial's id in its storage, as opposed to its number in the study (``_trial_id``)."""
    return int(trial._trial_id)


def stale_trial_ids(storage: RDBStorage, study_id: int) -> list[int]:
    """Running trials of the study whose heartbeat is older than the storage's grace
    period (``RDBStorage._get_stale_trial_ids``, what ``fail_stale_trials`` uses)."""
    return [int(i) for i in storage._get_stale_trial_ids(study_id)]


def heartbeat_thread(trial_id: int, storage: BaseStorage) -> BaseHeartbeatThread:
    """The thread that records a running trial's heartbeat while the block runs, as
    ``study.optimize`` runs it (``optuna.storages._heartbeat.get_heartbeat_thread``)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial_id, storage)


def heartbeat_table() -> sa.Table:
    """Optuna's table of trial heartbeats (``trial_heartbeats``: ``trial_id``, ``heartbeat``)."""
    from optuna.storages._rdb.models import TrialHeartbeatModel

    table: sa.Table = TrialHeartbeatModel.__table__
    return table


def trials_table() -> sa.Table:
    """Optuna's table of trials (``trials``: ``trial_id``, ``number``, ``study_id``,
    ``state``, ``datetime_start``, ``datetime_complete``)."""
    from optuna.storages._rdb.models import TrialModel

    table: sa.Table = TrialModel.__table__
    return table


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """True when ``value`` (a parameter value as a trial holds it) lies inside
    ``distribution`` (``BaseDistribution._contains`` on its internal representation)."""
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


class BulkReadStorage(RDBStorage):
    """Optuna's RDB storage, reading many trials at once with plain SQL.

    Optuna reads a study's trials (``get_all_trials``, and the caching wrapper every
    ``Study`` puts around the storage, through the private ``RDBStorage._get_trials``)
    as ORM objects, one per row of six tables: about 2 ms a trial, 20 s for a study of
    10,000. This storage overrides ``_get_trials`` with the same selection read as plain
    rows (:func:`read_trials`), the same trials built from them, several times faster.
    Everything else is Optuna's.
    """

    def _get_trials(
        self,
        study_id: int,
        states: Container[TrialState] | None,
        included_trial_ids: set[int],
        trial_id_greater_than: int,
    ) -> list[FrozenTrial]:
        return read_trials(self, study_id, states, included_trial_ids, trial_id_greater_than)


def read_trials(
    storage: RDBStorage,
    study_id: int,
    states: Container[TrialState] | None = None,
    included_trial_ids: Iterable[int] = (),
    trial_id_greater_than: int = -1,
) -> list[FrozenTrial]:
    """The trials of a study, as ``RDBStorage._get_trials`` selects them: in ``states``
    (None: all), and, when ``trial_id_greater_than`` is not -1, only those with a larger id
    or an id in ``included_trial_ids`` (ids above it count anyway); in trial id order.

    Reads the six tables of Optuna's schema that hold a trial (``trials``,
    ``trial_params``, ``trial_values``, ``trial_intermediate_values``,
    ``trial_user_attributes``, ``trial_system_attributes``) and builds each
    ``FrozenTrial`` as ``RDBStorage._build_frozen_trial_from_trial_model`` does: values
    by objective, parameters in the order they were set, datetimes in local time. A
    study that does not exist raises ``KeyError``, as Optuna does.
    """
    from optuna.storages._rdb import models

    included = {i for i in included_trial_ids if i <= trial_id_greater_than}
    trials = models.TrialModel.__table__
    where: list[Any] = [trials.c.study_id == study_id]
    if states is not None:
        assert isinstance(states, Iterable)
        where.append(trials.c.state.in_(list(states)))
    if trial_id_greater_than > -1:
        newer = trials.c.trial_id > trial_id_greater_than
        where.append(sa.or_(trials.c.trial_id.in_(sorted(included)), newer) if included else newer)
    with storage.engine.connect() as conn:
        if (
            conn.execute(
                sa.select(models.StudyModel.__table__.c.study_id).where(
                    models.StudyModel.__table__.c.study_id == study_id
                )
            ).first()
            is None
        ):
            raise KeyError(models.NOT_FOUND_MSG)
        try:
            rows = _trial_rows(conn, where)
        except sa.exc.OperationalError:
            # Too many ids for one IN (SQLite's variable limit): read the study's trials
            # in these states, then keep the ones asked for (Optuna falls back alike).
            conn.rollback()
            rows = _trial_rows(conn, where[: 2 if states is not None else 1])
            wanted = {r.trial_id for r in rows[0] if r.trial_id in included}
            wanted |= {r.trial_id for r in rows[0] if r.trial_id > trial_id_greater_than}
            rows = tuple([r for r in table if r.trial_id in wanted] for table in rows)
    return _build_trials(*rows)


def _trial_rows(conn: sa.Connection, where: list[Any]) -> tuple[list[Any], ...]:
    """The selected trials' rows of each of the six tables, each in primary key order."""
    from optuna.storages._rdb import models

    trials = models.TrialModel.__table__
    ids = sa.select(trials.c.trial_id).where(*where).scalar_subquery()
    out: list[list[Any]] = [
        list(conn.execute(sa.select(trials).where(*where).order_by(trials.c.trial_id)).all())
    ]
    if not out[0]:
        return (out[0], [], [], [], [], [])  # no trial: nothing of one to read
    for model in (
        models.TrialParamModel,
        models.TrialValueModel,
        models.TrialIntermediateValueModel,
        models.TrialUserAttributeModel,
        models.TrialSystemAttributeModel,
    ):
        table = model.__table__
        key = table.primary_key.columns.values()[0]
        query = sa.select(table).where(table.c.trial_id.in_(ids)).order_by(key)
        out.append(list(conn.execute(query).all()))
    return tuple(out)


def _build_trials(
    trial_rows: list[Any],
    param_rows: list[Any],
    value_rows: list[Any],
    intermediate_rows: list[Any],
    user_rows: list[Any],
    system_rows: list[Any],
) -> list[FrozenTrial]:
    from optuna.storages._rdb import models

    value_of = models.TrialValueModel.stored_repr_to_value
    intermediate_of = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
    by_id: dict[int, dict[str, Any]] = {
        r.trial_id: {"params": [], "values": [], "steps": {}, "user": {}, "system": {}}
        for r in trial_rows
    }
    parsed: dict[str, BaseDistribution] = {}  # the same JSON, parsed once
    for r in param_rows:
        if r.trial_id in by_id:
            dist = parsed.get(r.distribution_json)
            if dist is None:
                dist = parsed[r.distribution_json] = json_to_distribution(r.distribution_json)
            by_id[r.trial_id]["params"].append((r.param_name, r.param_value, dist))
    for r in value_rows:
        if r.trial_id in by_id:
            by_id[r.trial_id]["values"].append((r.objective, value_of(r.value, r.value_type)))
    for r in intermediate_rows:
        if r.trial_id in by_id:
            value = intermediate_of(r.intermediate_value, r.intermediate_value_type)
            by_id[r.trial_id]["steps"][r.step] = value
    for rows, key in ((user_rows, "user"), (system_rows, "system")):
        for r in rows:
            if r.trial_id in by_id:
                by_id[r.trial_id][key][r.key] = json.loads(r.value_json)
    out = []
    for r in trial_rows:
        parts = by_id[r.trial_id]
        values: list[float] | None = None
        if parts["values"]:
            values = [0.0] * len(parts["values"])
            for objective, value in parts["values"]:
                values[objective] = value
        params = parts["params"]
        out.append(
            FrozenTrial(
                number=r.number,
                state=r.state,
                value=None,
                values=values,
                datetime_start=_local(r.datetime_start),
                datetime_complete=_local(r.datetime_complete),
                params={name: d.to_external_repr(v) for name, v, d in params},
                distributions={name: d for name, _, d in params},
                user_attrs=parts["user"],
                system_attrs=parts["system"],
                intermediate_values=parts["steps"],
                trial_id=r.trial_id,
            )
        )
    return out


def _local(stamp: dt.datetime | None) -> dt.datetime | None:
    """A stored datetime as Optuna's models read it: Optuna 5 stores naive UTC and gives
    naive local time; earlier versions store and give naive local time."""
    if stamp is None or not _stored_as_utc():
        return stamp
    return stamp.replace(tzinfo=dt.UTC).astimezone().replace(tzinfo=None)


@functools.cache
def _stored_as_utc() -> bool:
    from optuna.storages._rdb import models

    return hasattr(models.TrialModel, "_datetime_start_utc")


class _SharedTrials(_CachedStorage):
    """Optuna's caching wrapper, handing out its cached trials even when asked for copies."""

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        return super().get_all_trials(study_id, deepcopy=False, states=states)


def sharing_trials(storage: RDBStorage) -> BaseStorage:
    """``storage`` in Optuna's caching wrapper (``_CachedStorage``, what ``load_study``
    puts around an RDB storage), except that ``study.trials`` and ``get_trials(deepcopy=
    True)`` return the cached trials themselves, not a deep copy of every trial.

    For a command that only reads trials (``report``): Optuna's figures ask for
    ``study.trials`` again and again (the importance figure once per parameter), each a
    deep copy of the whole study, 0.3 s per 10,000 trials. Nothing there changes a
    trial, so the copies only cost time. A study loaded on it writes as any other.
    """
    return _SharedTrials(storage)
