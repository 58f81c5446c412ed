"""Fixtures for orchestration tests: a tiny grid study, the CLI in a subprocess, storages."""

from __future__ import annotations

import atexit
import functools
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The PostgreSQL server's database the tests are given (the machine's ``test``). The tests
#: work in a database of their own beside it, made at the first use and dropped at the end,
#: so that tables left on a shared server by another hpsearch (an older or newer one, other
#: studies) cannot change what they see. Processes the tests start inherit its name.
SERVER_URL = os.environ.get("HPSEARCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PG_DATABASE = os.environ.setdefault("HPSEARCH_TEST_PG_DB", f"hpsearch_tests_{uuid.uuid4().hex[:8]}")
PG_URL = SERVER_URL.rsplit("/", 1)[0] + "/" + PG_DATABASE

TINY_GRID = """
[study]
sampler = "grid"
metric = "val_accuracy"
direction = "maximize"

[pruner]
kind = "{pruner}"

[fixed]
momentum = 0.9

[space]
lr = [0.0001, 0.001, 0.01, 0.1]
optimizer = ["sgd", "adam"]
batch_size = [16, 32]

[scale.full]
epochs = {epochs}
image_size = 32
"""


@pytest.fixture
def grid_file(tmp_path: Path):
    def make(pruner: str = "none", epochs: int = 3, name: str = "tiny") -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(TINY_GRID.format(pruner=pruner, epochs=epochs))
        return path

    return make


def fake_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STAND_IN_TRAINER="tests.hpsearch.fake_trainer",
        FAKE_TRAINER_LOG=str(tmp_path / "epochs.log"),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        STAND_IN_HEARTBEAT_S="1",
        PYTHONUNBUFFERED="1",
        HPSEARCH_MAX_WORKERS="64",  # the tests oversubscribe small machines on purpose
    )
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str], timeout: float = 240, **kw):
    return subprocess.run(
        [sys.executable, "-m", "tests.hpsearch.stand_in_cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@functools.cache
def pg_available() -> bool:
    """Whether the server answers; makes the tests' own database on the first call (and
    drops it when the process that made it exits)."""
    try:
        import psycopg

        with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=3) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (PG_DATABASE,)).fetchone() is None:
                conn.execute(f"CREATE DATABASE {PG_DATABASE}")
                atexit.register(_drop_own_database)
        return True
    except Exception:
        return False


def _drop_own_database() -> None:
    import psycopg

    with psycopg.connect(SERVER_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")


@pytest.fixture(autouse=True, scope="session")
def _own_pg_database() -> None:
    """The tests' database exists before any test reads ``PG_URL``."""
    pg_available()


@pytest.fixture(params=["sqlite", "postgres"])
def storage_url(request, tmp_path: Path):
    """A fresh storage: a SQLite file, or the PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    yield PG_URL


@pytest.fixture
def study_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def terminal_ctrl_c():
    """SIGINT raises KeyboardInterrupt in this process during the test, as at a terminal,
    also when the test run was started ignoring it (a background job of a script)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
