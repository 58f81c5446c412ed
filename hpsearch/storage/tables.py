"""The tables hpsearch adds beside Optuna's, their schema versions, and single-write claims.

Optuna's own schema is never touched: a storage hpsearch has used stays a plain Optuna
storage. Beside it hpsearch keeps small tables of its own:

- ``hpsearch_slots``: which process owns which slot of a study, and how it ended
  (``hpsearch.run.claims``);
- ``hpsearch_rungs``: the value a slot's trial had at each rung of the promotion pruner;
- ``hpsearch_copies``: which trials of another study were copied into a study
  (``hpsearch.study.warmstart``);
- ``hpsearch_schema``: the version of each of the above, so that a later column is a
  migration (:data:`SIDE_TABLES`), not a surprise. A table made before versions were
  recorded is version 1.

A claim is one write that a single process can win: an INSERT under the table's primary
key (:func:`insert_once`) or an UPDATE that matches only while the row still holds what
the claimant saw (:func:`update_if`). Both are atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from hpsearch.storage.resilience import retry
from trainer.errors import UserError

metadata = sa.MetaData()


def _keys(*names: str) -> list[sa.Column[int]]:
    """The integer columns of a table's primary key (given, not auto-incremented)."""
    return [sa.Column(name, sa.Integer, primary_key=True, autoincrement=False) for name in names]


schema_table = sa.Table(
    "hpsearch_schema",
    metadata,
    sa.Column("table_name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

slots_table = sa.Table(
    "hpsearch_slots",
    metadata,
    *_keys("study_id", "slot"),
    sa.Column("token", sa.String(36), nullable=False),
    sa.Column("trial_id", sa.Integer, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("claimed_at", sa.Float, nullable=False),
    # Version 2: the rung a paused trial waits at, or the rung a running one was promoted
    # from (the promotion pruner, hpsearch.study.promotion); None otherwise.
    sa.Column("rung", sa.Integer, nullable=True),
)

rungs_table = sa.Table(
    "hpsearch_rungs",
    metadata,
    *_keys("study_id", "slot", "rung"),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("reached_at", sa.Float, nullable=False),
)
"""The value each slot's trial had when it reached each rung (the promotion pruner)."""

copies_table = sa.Table(
    "hpsearch_copies",
    metadata,
    *_keys("study_id", "source_trial"),
    sa.Column("trial_id", sa.Integer, nullable=True),
    sa.Column("claimed_at", sa.Float, nullable=False),
)

Migration = Callable[[sa.Connection], None]


@dataclass(frozen=True)
class SideTable:
    """A table of hpsearch's, the version this code writes, and how to reach it."""

    table: sa.Table
    version: int = 1
    migrations: dict[int, Migration] = field(default_factory=dict)
    """Version N -> the step that brings a table of version N - 1 to N (each step must
    be safe to run twice: another process may have run it a moment before)."""


def _add_rung_column(conn: sa.Connection) -> None:
    """Slots version 2: the ``rung`` column (nothing to do when a racing process added it)."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns(slots_table.name)}
    if "rung" not in columns:
        conn.execute(sa.text(f"ALTER TABLE {slots_table.name} ADD COLUMN rung INTEGER"))


SIDE_TABLES: dict[str, SideTable] = {
    slots_table.name: SideTable(slots_table, version=2, migrations={2: _add_rung_column}),
    rungs_table.name: SideTable(rungs_table),
    copies_table.name: SideTable(copies_table),
}

_RACES = (IntegrityError, OperationalError, ProgrammingError)


def ensure_table(engine: sa.Engine, table: sa.Table) -> None:
    """Create ``table`` with its version, or bring an older one up to this code's version.

    Any number of processes may do this at once: a creator or migrator that loses a race
    finds the work done and goes on. A table of a newer version than this code knows is
    refused in one line (an older hpsearch must not write into it).
    """
    side = SIDE_TABLES[table.name]

    def prepare() -> None:
        for made in (schema_table, table):
            if not sa.inspect(engine).has_table(made.name):
                made.create(engine, checkfirst=True)
        _bring_up_to_date(engine, side)

    retry(prepare, transient=lambda err: isinstance(err, _RACES), attempts=6, first_delay_s=0.2)


def table_version(engine: sa.Engine, name: str) -> int | None:
    """The recorded version of side table ``name``: None when it does not exist; 1 when it
    was made before versions were recorded."""
    inspector = sa.inspect(engine)
    if not inspector.has_table(name):
        return None
    if not inspector.has_table(schema_table.name):
        return 1
    query = sa.select(schema_table.c.version).where(schema_table.c.table_name == name)
    with engine.connect() as conn:
        version = conn.execute(query).scalar()
    return 1 if version is None else int(version)


def _bring_up_to_date(engine: sa.Engine, side: SideTable) -> None:
    name = side.table.name
    version = table_version(engine, name) or 1
    if version > side.version:
        raise UserError(
            f"table {name} of this storage has version {version}, made by a newer hpsearch "
            f"(this one knows version {side.version}): upgrade hpsearch on this machine"
        )
    recorded = sa.select(schema_table).where(schema_table.c.table_name == name)
    with engine.begin() as conn:
        if conn.execute(recorded).first() is None:  # made before versions were recorded
            conn.execute(schema_table.insert().values(table_name=name, version=version))
    for step in range(version + 1, side.version + 1):
        with engine.begin() as conn:
            side.migrations[step](conn)
            conn.execute(
                schema_table.update()
                .where(schema_table.c.table_name == name, schema_table.c.version == step - 1)
                .values(version=step)
            )


def insert_once(engine: sa.Engine, table: sa.Table, values: dict[str, Any]) -> bool:
    """INSERT ``values``; True when this process's row went in, False when a row with the
    same primary key was there already (another process won the claim)."""
    try:
        with engine.begin() as conn:
            conn.execute(table.insert().values(**values))
    except IntegrityError:
        return False
    return True


def update_if(engine: sa.Engine, table: sa.Table, where: Any, values: dict[str, Any]) -> bool:
    """UPDATE the one row matching ``where`` to ``values``; True when exactly one row
    changed (the claimant's view still held), False when another process changed it first."""
    with engine.begin() as conn:
        result = conn.execute(table.update().where(*where).values(**values))
    return result.rowcount == 1
