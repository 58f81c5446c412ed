"""Storages: a fresh one opened by many processes at once, files that are not databases,
in-memory URLs, and read-only commands that must not create what is not there."""

from __future__ import annotations

import multiprocessing as mp
import uuid
from pathlib import Path

import pytest

from hpsearch.cli import main
from hpsearch.storage import open_storage
from tests.hpsearch.conftest import PG_URL, pg_available
from tests.hpsearch.study_checks import assert_one_line_error
from tests.hpsearch.test_spec import VALID

# -- many processes opening a fresh storage at once ------------------------------------------


def _open_after(barrier: mp.Barrier, url: str, results: mp.Queue) -> None:
    barrier.wait()
    try:
        open_storage(url)
        results.put("ok")
    except BaseException as err:  # the test reports what each process met
        results.put(f"{type(err).__name__}: {err}")


def _open_together(url: str, processes: int) -> list[str]:
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(processes), ctx.Queue()
    procs = [
        ctx.Process(target=_open_after, args=(barrier, url, results)) for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    return outcomes


@pytest.fixture
def fresh_pg():
    """A new, empty PostgreSQL database, dropped afterwards."""
    if not pg_available():
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    import psycopg

    name = f"hpsearch_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield PG_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_processes_opening_a_fresh_storage_together_all_go_on(
    backend: str, tmp_path: Path, request
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'fresh.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("fresh_pg")
    )
    # before: IntegrityError on alembic_version / "table studies already exists"
    assert _open_together(url, 6) == ["ok"] * 6


# -- files and URLs that cannot hold a study -------------------------------------------------


def _bad_file(case: str, path: Path) -> str:
    """Make ``path`` a bad SQLite storage; the text its error must contain."""
    if case == "directory":
        path.mkdir()
        return "is a folder"
    if case == "corrupt":
        path.write_bytes(b"this is not a database at all" * 100)
        return "not a SQLite database"
    if case == "truncated":
        sqlite_bytes = _real_sqlite_bytes(path.parent)
        path.write_bytes(sqlite_bytes[: len(sqlite_bytes) // 3])
        return "cannot open storage"
    if case == "header only":
        path.write_bytes(_real_sqlite_bytes(path.parent)[:100])
        return "cannot open storage"
    raise AssertionError(case)


def _real_sqlite_bytes(folder: Path) -> bytes:
    import optuna

    db = folder / "real.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="x")
    data = db.read_bytes()
    db.unlink()
    return data


BAD_FILES = ["directory", "corrupt", "truncated", "header only"]


@pytest.mark.parametrize("command", ["run", "status", "best", "report"])
@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_sqlite_file_is_one_line(case: str, command: str, tmp_path: Path, capsys) -> None:
    db = tmp_path / "study.db"
    expected = _bad_file(case, db)
    before = db.read_bytes() if db.is_file() else None
    url = f"sqlite:///{db}"
    study = tmp_path / "grid.toml"
    study.write_text(VALID)
    argv = {
        "run": ["run", "--study", str(study), "--storage", url, "--workdir", str(tmp_path / "w")],
        "status": ["status", "--storage", url],
        "best": ["best", "--study", "x", "--storage", url],
        "report": ["report", "--study", "x", "--storage", url, "--out", str(tmp_path / "r")],
    }[command]
    code = main(argv)
    # one line naming the problem, no traceback; the file is left as it was
    assert_one_line_error(code, capsys.readouterr().err, expected)
    if before is not None:
        assert db.read_bytes() == before


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
@pytest.mark.parametrize("command", ["run", "status"])
def test_in_memory_storage_is_refused(url: str, command: str, tmp_path: Path, capsys) -> None:
    study = tmp_path / "grid.toml"
    study.write_text(VALID)
    argv = ["status", "--storage", url]
    if command == "run":
        argv = ["run", "--study", str(study), "--storage", url, "--workdir", str(tmp_path / "w")]
    # before: a worker's "KeyError: Record does not exist" traceback, exit 1
    assert_one_line_error(main(argv), capsys.readouterr().err, "in memory", "cannot share")


# -- read-only commands create nothing ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["status"],
        ["status", "--json"],
        ["best", "--study", "x"],
        ["report", "--study", "x", "--out", "{tmp}/r"],
        ["dashboard", "--port", "0"],
    ],
    ids=["status", "status json", "best", "report", "dashboard"],
)
def test_read_only_commands_on_a_missing_storage_create_nothing(
    argv: list[str], tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)
    monkeypatch.delenv("HPSEARCH_WORKDIR", raising=False)
    typo = tmp_path / "studdy.db"
    args = [a.format(tmp=tmp_path) for a in argv] + ["--storage", f"sqlite:///{typo}"]
    code = main(args)
    assert_one_line_error(code, capsys.readouterr().err, "no study storage at", str(typo))
    # a typo leaves nothing behind: no database file, no workdir
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_status_json_on_an_empty_storage_is_json(tmp_path: Path, capsys) -> None:
    import json

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_storage(url)
    assert main(["status", "--json", "--storage", url]) == 0
    # JSON always: an empty list of studies, not a sentence
    assert json.loads(capsys.readouterr().out) == []
