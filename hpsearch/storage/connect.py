"""Opening the study storage: SQLite by default, PostgreSQL for searches across machines."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hpsearch.storage.resilience import db_message, retry
from hpsearch.storage.urls import normalize_url, redact, secret_values
from trainer.errors import UserError, first_line


@dataclass(frozen=True)
class Heartbeat:
    """How a running trial shows it is alive, and when a silent one counts as dead."""

    interval_s: int = 10
    """Seconds between heartbeats of a running trial."""
    grace_s: int | None = None
    """Seconds a trial may stay silent before another worker declares its process dead
    and takes its slot over; None means four intervals."""

    def __post_init__(self) -> None:
        if self.interval_s < 1:
            raise UserError(f"heartbeat interval must be >= 1 s, not {self.interval_s}")
        if self.grace_s is not None and self.grace_s <= self.interval_s:
            raise UserError(f"heartbeat grace ({self.grace_s} s) must exceed the interval")

    @property
    def grace(self) -> int:
        return self.grace_s if self.grace_s is not None else 4 * self.interval_s


#: How long a SQLite writer waits for the file lock before giving up.
SQLITE_BUSY_TIMEOUT_S = 60
#: Seconds a PostgreSQL connection attempt may take (``?connect_timeout=`` in the URL wins).
PG_CONNECT_TIMEOUT_S = 10
#: A pooled server connection idle for longer than this is pinged before it is used again.
PING_AFTER_IDLE_S = 2.0


#: Key of the PostgreSQL advisory lock under which Optuna's schema is created.
SCHEMA_LOCK_KEY = 0x68707365  # "hpse"


def engine_kwargs(url: str) -> dict[str, Any]:
    """Engine settings per backend (SQLite's ``timeout`` is not a psycopg argument).

    A database server gets at most two connections per process: one for the trial's own
    writes, one for the heartbeat thread that may write at the same moment. The second is
    kept once opened: Optuna's heartbeat thread writes as each trial starts, and a
    connection opened and closed again for it cost a new server process per trial. So
    ``processes x 2`` connections bound a search (plus, in the first process on a fresh
    database, the one that holds the schema lock for a moment), and 48 single-GPU
    machines fit PostgreSQL's default ``max_connections`` of 100. Pooled connections are
    checked before use after they were idle (:func:`_ping_after_idle`).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    kwargs: dict[str, Any] = {
        "pool_size": 2,
        "max_overflow": 0,
        "pool_recycle": 600,
    }
    if parsed.get_backend_name() == "postgresql":
        # The URL's own values win; a host that drops packets then fails in seconds.
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        if "application_name" not in parsed.query:
            # pg_stat_activity then shows each worker's connections by machine and process.
            name = f"hpsearch {socket.gethostname()} {os.getpid()}"
            connect_args["application_name"] = name[:63]
        kwargs["connect_args"] = connect_args
    return kwargs


def _ping_after_idle(engine: sqlalchemy.engine.Engine) -> None:
    """Check a pooled server connection before use, where it has been idle for longer
    than :data:`PING_AFTER_IDLE_S`.

    A restarted server or a dropped network path leaves dead connections in the pool; a
    ping finds them and the pool opens a new one in their place. SQLAlchemy's
    ``pool_pre_ping`` pings before every use: one extra round trip per statement batch,
    about 20 per trial, which doubled a short trial's transactions. A connection used a
    moment ago is as good as the ping would say; a failure after that point is one a ping
    could not have caught either, and the storage's retries deal with it.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_conn: Any, record: Any) -> None:
        record.info["hpsearch_idle_since"] = time.monotonic()  # just made: alive

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info["hpsearch_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # No stamp: a connection pooled before these listeners (while the storage was
        # made); it is pinged once.
        since = record.info.get("hpsearch_idle_since")
        if since is not None and time.monotonic() - since < PING_AFTER_IDLE_S:
            return  # in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as err:
            # The pool discards this connection and checks out a fresh one.
            raise sqlalchemy.exc.DisconnectionError(first_line(err)) from err


def _tune_sqlite(engine: sqlalchemy.engine.Engine) -> None:
    """WAL lets readers run beside the one writer; busy_timeout makes writers queue."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()


def open_storage(
    url: str,
    *,
    heartbeat: Heartbeat | None = None,
    must_exist: bool = False,
    inspect_only: bool = False,
) -> Any:
    """An Optuna ``RDBStorage`` on ``url``, tuned for many processes (and reading a
    study's trials in a few flat queries: :class:`~hpsearch.storage.optuna_api.BulkReadStorage`).

    With ``heartbeat`` the storage records heartbeats of running trials, and trials
    silent for longer than its grace period are failed by the next worker that looks.
    ``must_exist`` (the read-only commands) refuses a SQLite file that is not there
    instead of creating it; ``inspect_only`` opens an existing SQLite file as it is, for
    reading: not switched to WAL (a journal mode is part of the file). Unreachable
    servers, bad URLs and files that are not databases become a one-line
    :class:`UserError`. Any number of processes may open a
    fresh storage at once: creating the schema is serialised or retried.
    """
    import optuna

    from hpsearch.storage.optuna_api import BulkReadStorage  # imports Optuna: only now

    url = normalize_url(url)
    is_sqlite = make_url(url).get_backend_name() == "sqlite"
    if is_sqlite:
        check_sqlite_file(url, must_exist=must_exist or inspect_only)
        if not inspect_only:
            _enable_wal(url)
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = {"heartbeat_interval": heartbeat.interval_s, "grace_period": heartbeat.grace}

    def connect() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return BulkReadStorage(url, engine_kwargs=engine_kwargs(url), **kwargs)

    try:
        with _schema_lock(url):
            storage = retry(connect, transient=_is_schema_race, attempts=8, first_delay_s=0.2)
    except sqlalchemy.exc.DatabaseError as err:
        message = _scrub(db_message(err), url)
        raise UserError(f"cannot open storage {redact(url)}: {message}") from None
    except ArgumentError as err:  # e.g. ?port=x: SQLAlchemy reads the query only now
        raise UserError(f"storage URL {redact(url)!r}: {_scrub(first_line(err), url)}") from None
    except ImportError as err:
        raise UserError(f"storage {redact(url)!r}: database driver missing ({err})") from None
    if is_sqlite and not inspect_only:
        _tune_sqlite(storage.engine)
    elif not is_sqlite:
        _ping_after_idle(storage.engine)
    return storage


def _scrub(message: str, url: str) -> str:
    """A driver's ``message`` without any secret of ``url`` (a host name it quotes may
    hold the tail of a password)."""
    for secret in secret_values(url):
        message = message.replace(secret, "***")
    return message


def _is_schema_race(err: BaseException) -> bool:
    """True for what another process creating the same schema at the same time causes:
    a table, type or row that already exists, a lock or deadlock. Trying again finds
    the schema made and goes on."""
    if isinstance(err, sqlalchemy.exc.IntegrityError):
        return True
    if isinstance(err, sqlalchemy.exc.OperationalError | sqlalchemy.exc.ProgrammingError):
        text = str(err).lower()
        return any(word in text for word in ("already exists", "locked", "deadlock"))
    return False


@contextlib.contextmanager
def _schema_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, one process at a time creates or checks Optuna's schema.

    Optuna creates its tables, types and version rows without guarding against a
    concurrent creator; an advisory lock (held by this session, released with it)
    makes the processes of a fresh database take turns. SQLite needs no lock: its
    racing creators are retried.
    """
    if make_url(url).get_backend_name() != "postgresql":
        yield
        return
    # The storage's own connect arguments: its connect timeout holds here too.
    connect_args = engine_kwargs(url).get("connect_args", {})
    engine = sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args
    )
    try:
        with engine.connect() as conn:
            made = sqlalchemy.inspect(conn).has_table("alembic_version")
        if made:
            # The schema exists: nothing to race for, and no third connection held while
            # the storage opens its own two.
            yield
            return
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": SCHEMA_LOCK_KEY})
            conn.commit()
            yield
    finally:
        engine.dispose()


def check_sqlite_file(url: str, *, must_exist: bool = False) -> None:
    """One line for a SQLite URL that cannot hold a study: its folder missing, a folder
    in its place, a file that is not a SQLite database, or (``must_exist``) no file."""
    database = make_url(url).database or ""
    parent = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(parent):
        raise UserError(f"storage {redact(url)}: folder {parent} does not exist")
    if os.path.isdir(database):
        raise UserError(f"storage {redact(url)}: {database} is a folder, not a SQLite file")
    if not os.path.exists(database):
        if must_exist:
            raise UserError(
                f"no study storage at {database}: run a study first (hpsearch run) "
                "or give --storage"
            )
        return
    # The file is never opened here except through SQLite: closing any other handle on
    # it would drop the locks this process's open connections hold on it (POSIX locks
    # belong to the process), and another process could then checkpoint and delete the
    # WAL under them, which corrupts the database.
    if not os.access(database, os.R_OK):
        raise UserError(f"storage {redact(url)}: cannot read {database}: permission denied")
    if os.path.getsize(database) > 0:
        _read_schema(url, database)


def _read_schema(url: str, database: str) -> None:
    """Read the file's schema, writing nothing: a truncated or damaged file fails here,
    before a run prepares its data, not after."""
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as err:
        if "locked" not in str(err):
            raise UserError(f"cannot open storage {redact(url)}: {err}") from None
    except sqlite3.DatabaseError as err:
        if "not a database" in str(err):
            raise UserError(f"storage {redact(url)}: {database} is not a SQLite database") from None
        raise UserError(f"cannot open storage {redact(url)}: {err}") from None


def _enable_wal(url: str) -> None:
    """Switch the SQLite file to WAL once, before Optuna creates its tables.

    journal_mode is a property of the file; doing it here avoids every process
    racing to change it while others already write.
    """
    import sqlite3

    database = make_url(url).database
    assert database is not None  # normalize_url refuses a SQLite URL without a file
    try:
        conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S)
    except sqlite3.Error as err:
        raise UserError(f"cannot open storage {redact(url)}: {err}") from None
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError as err:
        if "locked" not in str(err):
            raise UserError(f"cannot open storage {redact(url)}: {err}") from None
        # another process holds the lock; it is switching the file to WAL too
    except sqlite3.DatabaseError as err:  # not a database, malformed
        raise UserError(f"cannot open storage {redact(url)}: {err}") from None
    finally:
        conn.close()
