"""hpsearch's side tables: a table made by an older hpsearch is brought up to date in
place (the slots table's version 2 adds the promotion pruner's ``rung``), by any number
of processes at once, and one made by a newer hpsearch is refused."""

from __future__ import annotations

import multiprocessing
import traceback
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from hpsearch.storage.tables import (
    SIDE_TABLES,
    ensure_table,
    schema_table,
    slots_table,
    table_version,
)
from tests.hpsearch.conftest import PG_URL, pg_available
from trainer.errors import UserError


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> Iterator[str]:
    """An empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'tables.db'}"
        return
    if not pg_available():
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    schema = f"t{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def _version_one(engine: sa.Engine) -> None:
    """The slots table as hpsearch made it before the ``rung`` column, with a row."""
    old = sa.Table(
        slots_table.name,
        sa.MetaData(),
        *(sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable,
                    autoincrement=False)
          for c in slots_table.columns if c.name != "rung"),
    )  # fmt: skip
    old.create(engine)
    schema_table.create(engine)
    with engine.begin() as conn:
        conn.execute(schema_table.insert().values(table_name=slots_table.name, version=1))
        conn.execute(
            old.insert().values(
                study_id=1,
                slot=0,
                token="t",
                trial_id=None,
                attempts=1,
                status="done",
                claimed_at=0.0,
            )
        )


def _ensure(url: str, barrier, results) -> None:
    try:
        engine = _engine(url)
        barrier.wait(timeout=120)
        ensure_table(engine, slots_table)
        engine.dispose()
        results.put("ok")
    except BaseException:
        results.put(traceback.format_exc())


def test_an_older_slots_table_gains_its_rung_column_once(url: str):
    engine = _engine(url)
    _version_one(engine)
    assert table_version(engine, slots_table.name) == 1
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_ensure, args=(url, barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert outcomes == ["ok"] * 4, next(o for o in outcomes if o != "ok")
    assert table_version(engine, slots_table.name) == SIDE_TABLES[slots_table.name].version == 2
    columns = {c["name"] for c in sa.inspect(engine).get_columns(slots_table.name)}
    assert "rung" in columns
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(slots_table)))
    assert [(r.slot, r.status, r.rung) for r in rows] == [(0, "done", None)]  # row kept
    engine.dispose()


def test_a_table_of_a_newer_hpsearch_is_refused(url: str):
    engine = _engine(url)
    ensure_table(engine, slots_table)
    with engine.begin() as conn:
        conn.execute(
            schema_table.update()
            .where(schema_table.c.table_name == slots_table.name)
            .values(version=99)
        )
    with pytest.raises(UserError, match="version 99, made by a newer hpsearch"):
        ensure_table(engine, slots_table)
    engine.dispose()
