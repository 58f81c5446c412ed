"""Every use of Optuna's private API, in one place.

hpsearch builds on Optuna's public API, but a few things it needs have no public name:
the id of a study or trial in its storage, the storage behind a study, the running trials
whose heartbeat stopped, the heartbeat table itself, and whether a value lies inside a
distribution. Each is one small function here, and each has a contract test
(``tests/hpsearch/test_optuna_api.py``) that fails on an Optuna release that changes it;
``setup.cfg`` pins the Optuna versions those tests have passed on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial

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
