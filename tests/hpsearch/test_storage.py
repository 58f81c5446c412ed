"""Opening the study storage: URL checks, redaction, errors as one line, engine settings."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from hpsearch.storage import connect as st
from hpsearch.storage import urls
from tests.hpsearch.conftest import PG_URL, pg_available
from trainer.errors import UserError

#: Nothing listens on port 1: a connection is refused at once, without a timeout.
UNREACHABLE_PG = "postgresql://alice:s3cret@127.0.0.1:1/nowhere"


# -- resolve_storage_url ------------------------------------------------------------------
def test_resolve_storage_url_prefers_flag_then_env_then_default(monkeypatch):
    monkeypatch.setenv(urls.STORAGE_ENV, "sqlite:///from-env.db")
    # The --storage flag wins over the environment.
    assert urls.resolve_storage_url("sqlite:///flag.db") == "sqlite:///flag.db"
    # Without a flag the environment variable is used.
    assert urls.resolve_storage_url(None) == "sqlite:///from-env.db"
    monkeypatch.delenv(urls.STORAGE_ENV)
    # With neither, the SQLite file in the working folder.
    assert urls.resolve_storage_url(None) == urls.DEFAULT_STORAGE


# -- normalize_url ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql+psycopg://u:p%40ss@h/db"),
        ("sqlite:///study.db", "sqlite:///study.db"),
        ("sqlite:////abs/study.db", "sqlite:////abs/study.db"),
    ],
)
def test_normalize_url_maps_postgres_onto_psycopg3(url, expected):
    # Plain postgres URLs get the psycopg 3 driver; explicit drivers, SQLite and
    # (escaped) passwords pass through unchanged, since the engine needs the password.
    assert urls.normalize_url(url) == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url at all", "malformed storage URL"),
        ("postgresql://alice:s3cret@host:notaport/db", "malformed storage URL"),
        ("oracle://alice:s3cret@host/db", "unsupported storage"),
        ("redis://alice:s3cret@host/0", "unsupported storage"),
        # before: MySQL got through here and failed later with "driver missing"
        ("mysql+pymysql://alice:s3cret@host/db", "unsupported storage"),
        ("mysql://alice:s3cret@host/db", "unsupported storage"),
    ],
)
def test_normalize_url_rejects_bad_urls_in_one_line(url, words):
    with pytest.raises(UserError) as info:
        urls.normalize_url(url)
    message = str(info.value)
    # The user learns what is wrong ...
    assert words in message
    # ... in one line, not a traceback-sized text ...
    assert "\n" not in message
    # ... and the password is never echoed.
    assert "s3cret" not in message


# -- redact -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://alice:s3cret@h:5432/db", "postgresql://alice:***@h:5432/db"),
        ("postgresql+psycopg://alice:s3cret@h/db", "postgresql+psycopg://alice:***@h/db"),
        # Unparseable (bad port): the fallback pattern still hides the password.
        ("postgresql://alice:s3cret@h:notaport/db", "postgresql://alice:***@h:notaport/db"),
        ("postgresql://alice@h/db", "postgresql://alice@h/db"),
        ("sqlite:///study.db", "sqlite:///study.db"),
        ("not a url", "not a url"),
    ],
)
def test_redact_hides_only_the_password(url, expected):
    # Password replaced by ***; URLs without one come back exactly as given.
    assert urls.redact(url) == expected


def test_redact_hides_password_with_escaped_characters():
    redacted = urls.redact("postgresql://alice:p%40ss%3Aw0rd@h/db")
    # Neither the escaped nor the plain form of the password survives.
    assert "p%40ss" not in redacted and "p@ss" not in redacted
    # The user name and host stay, so the user can tell which server is meant.
    assert redacted == "postgresql://alice:***@h/db"


# -- engine_kwargs ------------------------------------------------------------------------
def test_engine_kwargs_sqlite_sets_busy_timeout_only():
    kwargs = st.engine_kwargs("sqlite:///study.db")
    # SQLite writers wait for the file lock instead of failing at once.
    assert kwargs == {"connect_args": {"timeout": st.SQLITE_BUSY_TIMEOUT_S}}


@pytest.mark.parametrize("url", ["postgresql+psycopg://u@h/db", "postgresql+psycopg2://u@h/db"])
def test_engine_kwargs_servers_get_a_small_kept_pool(url):
    kwargs = st.engine_kwargs(url)
    # A server gets a pool of two connections, kept open (at most two per process: see
    # test_many_machines; none opened and closed again per trial) ...
    assert (kwargs["pool_size"], kwargs["max_overflow"]) == (2, 0)
    # ... checked after idling, not before every use (test_idle_connection_is_pinged) ...
    assert not kwargs.get("pool_pre_ping")
    # ... and no SQLite-only "timeout", which psycopg would reject.
    assert "timeout" not in kwargs.get("connect_args", {})


# -- open_storage: errors -----------------------------------------------------------------
def test_open_storage_missing_sqlite_folder_is_a_user_error(tmp_path: Path):
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(UserError) as info:
        st.open_storage(f"sqlite:///{missing / 'study.db'}")
    # The message names the folder that does not exist, in one line.
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)
    # Nothing was created on the way.
    assert not missing.exists()


def test_open_storage_unreachable_server_is_one_redacted_line():
    with pytest.raises(UserError) as info:
        st.open_storage(UNREACHABLE_PG)
    message = str(info.value)
    # It says which storage could not be opened ...
    assert message.startswith("cannot open storage postgresql+psycopg://alice:***@127.0.0.1:1")
    # ... in one line (psycopg's own message spans several) ...
    assert "\n" not in message
    # ... without the password.
    assert "s3cret" not in message


def test_open_storage_missing_driver_is_a_user_error():
    if importlib.util.find_spec("psycopg2") is not None:
        pytest.skip("psycopg2 is installed: no missing driver to report")
    with pytest.raises(UserError) as info:
        st.open_storage("postgresql+psycopg2://alice:s3cret@127.0.0.1:1/db")
    # A missing database driver is named as such, not raised as ImportError ...
    assert "database driver missing" in str(info.value)
    # ... and the password stays hidden.
    assert "s3cret" not in str(info.value)


def test_open_storage_bad_url_is_a_user_error():
    with pytest.raises(UserError) as info:
        st.open_storage("oracle://alice:s3cret@host/db")
    # Unsupported backends are refused before any connection is tried.
    assert "unsupported storage" in str(info.value)
    assert "s3cret" not in str(info.value)


# -- open_storage: working storages -------------------------------------------------------
def test_open_storage_sqlite_file_is_wal_with_busy_timeout(tmp_path: Path):
    path = tmp_path / "study.db"
    storage = st.open_storage(f"sqlite:///{path}")
    try:
        with storage.engine.connect() as conn:
            busy_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        # Every connection of the engine queues behind a writer instead of failing.
        assert busy_ms == st.SQLITE_BUSY_TIMEOUT_S * 1000
    finally:
        storage.engine.dispose()
    conn = sqlite3.connect(path)
    try:
        # WAL is a property of the file: any later process opens it in WAL mode.
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_open_storage_heartbeat_is_optional(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with_beat = st.open_storage(url, heartbeat=st.Heartbeat(interval_s=7))
    without = st.open_storage(url)
    try:
        # Workers get heartbeats so that dead trials can be failed by others, the grace
        # period four intervals by default ...
        assert with_beat.heartbeat_interval == 7
        assert with_beat.grace_period == 28
        # ... while readers (dashboard, reports) open the storage without them.
        assert without.get_heartbeat_interval() is None
    finally:
        with_beat.engine.dispose()
        without.engine.dispose()


def test_open_storage_engine_settings_per_backend(storage_url: str, study_name: str):
    storage = st.open_storage(storage_url)
    try:
        study = optuna.create_study(study_name=study_name, storage=storage)
        study.enqueue_trial({"x": 1.0})
        study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=1)
        # The storage is a working Optuna storage on either backend.
        assert study.best_value == 1.0
        pool = storage.engine.pool
        if storage_url.startswith("sqlite"):
            # SQLite: the driver carries the busy timeout (seconds).
            assert storage.engine.dialect.name == "sqlite"
            with storage.engine.connect() as conn:
                busy_ms = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
            assert busy_ms == st.SQLITE_BUSY_TIMEOUT_S * 1000
        else:
            # PostgreSQL: psycopg 3, and the small pre-pinged pool of engine_kwargs.
            assert storage.engine.dialect.driver == "psycopg"
            assert isinstance(pool, sa.pool.QueuePool)
            assert pool.size() == 2 and pool._max_overflow == 0  # two connections at most
    finally:
        storage.engine.dispose()


def _kill_pooled_connections(storage) -> list[int]:
    """Terminate, from outside, the server processes of the storage's pooled connections
    (found by the application name this process gives them)."""
    name = st.engine_kwargs(PG_URL)["connect_args"]["application_name"]
    killer = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    with killer.connect() as conn:
        pids = (
            conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = :n "
                    "AND pid <> pg_backend_pid()"
                ),
                {"n": name},
            )
            .scalars()
            .all()
        )
        for pid in pids:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})
    killer.dispose()
    assert pids, "the storage holds no connection to kill"
    return list(pids)


@pytest.mark.parametrize("idle_s,survives", [(0.0, True), (3600.0, False)])
def test_idle_connection_is_pinged_and_replaced(monkeypatch, idle_s, survives):
    # A server restart (here: its process for our pooled connection terminated) leaves a
    # dead connection in the pool. Once it has idled for PING_AFTER_IDLE_S, the checkout
    # pings it and the pool opens a fresh one; without the ping the next read fails.
    if not pg_available():
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    storage = st.open_storage(PG_URL)
    try:
        for _ in range(2):  # each pooled connection used once, so both count as in use
            optuna.get_all_study_names(storage)
        monkeypatch.setattr(st, "PING_AFTER_IDLE_S", idle_s)
        dead = _kill_pooled_connections(storage)
        if survives:
            optuna.get_all_study_names(storage)  # no error: the dead one was replaced
            with storage.engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() not in dead
        else:
            with pytest.raises(optuna.exceptions.StorageInternalError) as info:
                optuna.get_all_study_names(storage)
            assert "terminating connection" in str(info.value.__cause__)
    finally:
        storage.engine.dispose()
