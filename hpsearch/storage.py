"""Opening the study storage: SQLite by default, PostgreSQL for searches across machines."""

from __future__ import annotations

import os
import re
import time
import warnings
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from trainer.errors import UserError, first_line

DEFAULT_STORAGE = "sqlite:///hpsearch.db"
STORAGE_ENV = "HPSEARCH_STORAGE"

#: Seconds between heartbeats of a running trial, and how long a silent trial may
#: stay RUNNING before another worker declares its process dead (environment
#: overrides exist for tests and for clusters with slow shared storage).
HEARTBEAT_INTERVAL = int(os.environ.get("HPSEARCH_HEARTBEAT_S", "10"))
GRACE_PERIOD = int(os.environ.get("HPSEARCH_GRACE_S", str(4 * HEARTBEAT_INTERVAL)))
#: How long a SQLite writer waits for the file lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 60


def resolve_storage_url(flag: str | None) -> str:
    """``--storage`` if given, else ``$HPSEARCH_STORAGE``, else ``sqlite:///hpsearch.db``."""
    return flag or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def redact(url: str) -> str:
    """The URL with its password replaced by ``***``, for anything shown or logged."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
    if parsed.password is None:
        return url
    return parsed.render_as_string(hide_password=True)


def normalize_url(url: str) -> str:
    """Map ``postgresql://``/``postgres://`` onto the psycopg 3 driver and check the URL."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(
            f"malformed storage URL {redact(url)!r}: expected e.g. sqlite:///hpsearch.db "
            "or postgresql://user:password@host:5432/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql", "mysql"):
        raise UserError(f"unsupported storage {redact(url)!r}: use sqlite:/// or postgresql://")
    return parsed.render_as_string(hide_password=False)


def engine_kwargs(url: str) -> dict[str, Any]:
    """Engine settings per backend (SQLite's ``timeout`` is not a psycopg argument)."""
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 4, "pool_recycle": 600}


def _tune_sqlite(engine: sqlalchemy.engine.Engine) -> None:
    """WAL lets readers run beside the one writer; busy_timeout makes writers queue."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


def open_storage(url: str, *, heartbeat: bool = True, retries: int = 3):
    """An Optuna ``RDBStorage`` on ``url`` with heartbeats, tuned for many processes.

    Unreachable servers and bad URLs become a one-line :class:`UserError`.
    """
    import optuna

    url = normalize_url(url)
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    if is_sqlite:
        _check_sqlite_path(url)
        _enable_wal(url)
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {"heartbeat_interval": HEARTBEAT_INTERVAL, "grace_period": GRACE_PERIOD}
    last_err: Exception | None = None
    for attempt in range(retries):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs(url), **kwargs
                )
            if is_sqlite:
                _tune_sqlite(storage.engine)
            return storage
        except sqlalchemy.exc.OperationalError as err:
            last_err = err
            if "locked" in str(err) and attempt + 1 < retries:
                time.sleep(0.5 * (attempt + 1))
                continue
            break
        except (ImportError, ModuleNotFoundError) as err:
            raise UserError(f"storage {redact(url)!r}: database driver missing ({err})") from None
    reason = first_line(getattr(last_err, "orig", last_err))
    raise UserError(f"cannot open storage {redact(url)}: {reason}")


def _check_sqlite_path(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        parent = os.path.dirname(os.path.abspath(database))
        if not os.path.isdir(parent):
            raise UserError(f"storage {url}: folder {parent} does not exist")


def _enable_wal(url: str) -> None:
    """Switch the SQLite file to WAL once, before Optuna creates its tables.

    journal_mode is a property of the file; doing it here avoids every process
    racing to change it while others already write.
    """
    import sqlite3

    database = make_url(url).database
    if not database or database == ":memory:":
        return
    conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass  # another process holds the lock; it is switching the file to WAL too
    finally:
        conn.close()
