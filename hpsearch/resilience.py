"""Riding out faults of the environment: a database restart, a full disk.

A PostgreSQL restart or failover, or a network blip, makes every storage call fail for
a few seconds. Workers then wait for the storage to come back instead of dying, and the
trial that was running when it went away is failed and run again (resuming from its
checkpoint). A full disk is not transient: the worker stops with one clear line, its
slot released so that the next run resumes it.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa

from trainer import errors
from trainer.errors import UserError

T = TypeVar("T")

#: How long a worker waits for an unreachable storage before it gives up.
STORAGE_WAIT_S = float(os.environ.get("HPSEARCH_STORAGE_WAIT_S", "300"))

_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError)
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}


def _chain(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the exceptions it was raised from or while handling."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def is_disk_full(err: BaseException) -> bool:
    """True for 'no space left' / 'quota exceeded', from a file write or from SQLite."""
    for link in _chain(err):
        if isinstance(link, OSError) and link.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(link, sa.exc.OperationalError) and "disk is full" in str(link):
            return True
    return False


def is_storage_outage(err: BaseException) -> bool:
    """True when ``err`` comes from a lost or refused database connection (worth a retry)."""
    return not is_disk_full(err) and any(isinstance(link, _TRANSIENT) for link in _chain(err))


def first_line(err: BaseException) -> str:
    """The innermost database message of ``err``, on one line."""
    for link in _chain(err):
        if isinstance(link, sa.exc.DBAPIError) and link.orig is not None:
            err = link.orig
            break
    return errors.first_line(err)


def disk_full_error(err: BaseException, where: str, workdir: Any) -> UserError:
    """The one-line error a worker stops with when the disk is full."""
    path = next(
        (link.filename for link in _chain(err) if isinstance(link, OSError) and link.filename),
        None,
    )
    target = f" writing {path}" if path else ""
    return UserError(
        f"disk full{target} ({where}): free space (workdir {workdir}) and run the same "
        "command again; finished trials are kept and this one resumes"
    )


def wait_for_storage(
    action: Callable[[], T],
    what: str,
    on_wait: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> T:
    """``action()``, retried while the storage is unreachable, for up to ``timeout`` seconds.

    Other errors propagate at once; an outage longer than ``timeout`` becomes a UserError.
    """
    limit = STORAGE_WAIT_S if timeout is None else timeout
    deadline = time.monotonic() + limit
    delay = 0.5
    told = False
    while True:
        try:
            return action()
        except Exception as err:
            if not is_storage_outage(err):
                raise
            if time.monotonic() + delay > deadline:
                raise UserError(
                    f"storage unreachable for {limit:.0f} s while {what}: {first_line(err)}"
                ) from None
            if on_wait is not None and not told:
                on_wait(f"storage unreachable while {what} ({first_line(err)}); waiting for it")
                told = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def keep_heartbeat_alive(storage: optuna.storages.RDBStorage) -> None:
    """Let the heartbeat of a running trial survive a storage outage.

    Optuna's heartbeat thread stops at its first failed write; the trial would then look
    dead to other workers once the database is back, and be taken over while it still
    runs. Failed heartbeats are skipped instead, and beating resumes with the storage.
    """
    record = storage.record_heartbeat

    def tolerant(trial_id: int) -> None:
        try:
            record(trial_id)
        except Exception as err:
            if not is_storage_outage(err):
                raise

    storage.record_heartbeat = tolerant  # type: ignore[method-assign]
