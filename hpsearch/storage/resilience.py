"""Riding out faults of the environment: a database restart, a full disk.

A PostgreSQL restart or failover, or a network blip, makes every storage call fail for
a few seconds. Workers then wait for the storage to come back instead of dying, and the
trial that was running when it went away is failed and run again (resuming from its
checkpoint). A full disk is not transient: the worker stops with one clear line, its
slot released so that the next run resumes it.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import optuna
import sqlalchemy as sa

from trainer.errors import UserError, first_line

T = TypeVar("T")

#: How long a worker waits for an unreachable storage before it gives up.
STORAGE_WAIT_S = 300.0

_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.DisconnectionError)
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
#: Errors writing files that every further attempt would meet again.
_UNWRITABLE_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}


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


def db_message(err: BaseException) -> str:
    """The innermost database message of ``err``, on one line."""
    for link in _chain(err):
        if isinstance(link, sa.exc.DBAPIError) and link.orig is not None:
            return first_line(link.orig)
    return first_line(err)


def recurring_error(err: BaseException) -> UserError | None:
    """The error as one line if every attempt would meet it again, else None.

    A setup problem (:class:`UserError`: missing weights, a bad file) and a folder that
    cannot be written (read-only file system, no permission) do not go away by running
    the trial again: the run stops instead of burning the slot's attempts.
    """
    for link in _chain(err):
        if isinstance(link, UserError):
            return link
        if isinstance(link, OSError) and link.errno in _UNWRITABLE_ERRNOS:
            where = f" {link.filename}" if link.filename else ""
            return UserError(f"cannot write{where}: {link.strerror or first_line(link)}")
    return None


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


def retry(
    action: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool],
    attempts: int | None = None,
    deadline_s: float | None = None,
    first_delay_s: float = 0.5,
    max_delay_s: float = 5.0,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """``action()``, tried again after errors for which ``transient`` is true.

    Stops after ``attempts`` tries or once the next wait would pass ``deadline_s``
    seconds from the first try, whichever comes first, and then raises the last error;
    other errors propagate at once. Waits double from ``first_delay_s`` up to
    ``max_delay_s``; ``on_retry`` hears of each error that is retried.
    """
    deadline = None if deadline_s is None else time.monotonic() + deadline_s
    delay = first_delay_s
    tried = 0
    while True:
        tried += 1
        try:
            return action()
        except Exception as err:
            out_of_tries = attempts is not None and tried >= attempts
            out_of_time = deadline is not None and time.monotonic() + delay > deadline
            if not transient(err) or out_of_tries or out_of_time:
                raise
            if on_retry is not None:
                on_retry(err)
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)


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
    told: list[bool] = []

    def tell(err: BaseException) -> None:
        if on_wait is not None and not told:
            on_wait(f"storage unreachable while {what} ({db_message(err)}); waiting for it")
            told.append(True)

    try:
        return retry(action, transient=is_storage_outage, deadline_s=limit, on_retry=tell)
    except Exception as err:
        if not is_storage_outage(err):
            raise
        raise UserError(
            f"storage unreachable for {limit:.0f} s while {what}: {db_message(err)}"
        ) from None


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

    storage.record_heartbeat = tolerant  # type: ignore[method-assign]  # wraps this one object's method
