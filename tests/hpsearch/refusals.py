"""Bad input is refused in one line and changes nothing: a check for any command.

A :class:`Refusal` is one bad command line: its arguments, the text its error line must
hold, what to make in the working folder first (a dataset, a model file), the secrets
that must never show, and the storage whose content must not change. Placeholders in the
arguments and the storage URL (``{dir}`` for the working folder, and any others the test
passes, such as ``{pg}`` and ``{db}`` for a PostgreSQL database) are filled in when it
runs.

:func:`assert_refused` runs the command from the working folder and checks that it exits
with status 2, writes exactly one line to stderr (``hpsearch CMD: error: ...``, holding the
text), no traceback and nothing to stdout, shows none of the secrets, and that no file or
folder under the working folder was created, changed or removed (names, kinds, sizes and
modification times compared before and after), nor the storage's content.

To cover another command or input, add a ``Refusal`` to a table and parametrize a test
over it; :func:`in_process` runs the command line in the test's process (fast),
:func:`in_subprocess` as a user does (``python -m hpsearch.cli``).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.hpsearch.conftest import ROOT
from tests.hpsearch.study_checks import assert_one_line_error

#: (argv, working folder) -> (exit status, stdout, stderr)
Runner = Callable[[list[str], Path], tuple[int, str, str]]
#: Environment variables that would point a command elsewhere than its arguments say.
_AMBIENT = ("HPSEARCH_STORAGE", "HPSEARCH_ARTIFACTS")


@dataclass(frozen=True)
class Refusal:
    """One bad command line and what its refusal must look like."""

    argv: tuple[str, ...]
    """The command line after ``hpsearch``; placeholders such as ``{dir}`` are filled."""
    expect: str
    """Text the error line must hold (placeholders filled too)."""
    setup: Callable[[Path], Any] | None = None
    """Makes what the case needs in the working folder, before the listing is taken."""
    hidden: tuple[str, ...] = ()
    """Texts that must appear nowhere in the output (secrets)."""
    storage: str | None = None
    """A storage URL whose content must stay as it was (``sqlite:///...`` or PostgreSQL)."""
    needs: tuple[str, ...] = ()
    """Placeholders the test must provide (e.g. ``pg``); without them the case is skipped."""


def listing(folder: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``folder`` (links not followed): kind, size and mtime in ns."""
    entries: dict[str, tuple[str, int, int]] = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            kind = f"link to {os.readlink(path)}"
        elif stat.S_ISDIR(info.st_mode):
            kind = "folder"
        else:
            kind = "file"
        entries[str(path.relative_to(folder))] = (kind, info.st_size, info.st_mtime_ns)
    return entries


def storage_dump(url: str) -> list[str]:
    """The content of a storage as text lines: a SQLite file's SQL dump (read only), or
    every row of every table of a PostgreSQL database."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        if not path.is_file():
            return [f"no file {path}"]
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()
    import psycopg

    lines = []
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE "
            "table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        for schema, table in tables:
            query = f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t'
            lines += sorted(f"{schema}.{table}: {row}" for (row,) in conn.execute(query))
    return lines


def assert_refused(case: Refusal, folder: Path, run: Runner, **values: str) -> str:
    """Run ``case`` from ``folder`` and check its refusal (see the module's docstring);
    returns the error line. ``values`` fill the placeholders besides ``{dir}``."""
    missing = [name for name in case.needs if name not in values]
    if missing:
        import pytest

        pytest.skip(f"needs {', '.join(missing)}")
    fill = {"dir": str(folder), **values}
    argv = [arg.format(**fill) for arg in case.argv]
    storage = case.storage.format(**fill) if case.storage else None
    if case.setup is not None:
        case.setup(folder)
    before = listing(folder)
    stored = storage_dump(storage) if storage else None

    code, out, err = run(argv, folder)

    line = assert_one_line_error(code, err, case.expect.format(**fill))
    assert out == "", out
    shown = [secret for secret in case.hidden if secret in out + err]
    assert shown == [], line
    after = listing(folder)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], f"{changed} changed: {line}"
    if storage:
        assert storage_dump(storage) == stored, line
    return line


def in_process(capsys: Any) -> Runner:
    """Runs ``hpsearch.cli.main`` in this process, from the working folder."""
    from hpsearch.cli import main

    def run(argv: list[str], folder: Path) -> tuple[int, str, str]:
        here = os.getcwd()
        saved = {name: os.environ.pop(name, None) for name in _AMBIENT}
        capsys.readouterr()
        try:
            os.chdir(folder)
            code = main(argv)
        finally:
            os.chdir(here)
            os.environ.update({k: v for k, v in saved.items() if v is not None})
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def in_subprocess(timeout: float = 240) -> Runner:
    """Runs ``python -m hpsearch.cli`` (this checkout) in a subprocess, from the folder."""

    def run(argv: list[str], folder: Path) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _AMBIENT}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        result = subprocess.run(
            [sys.executable, "-m", "hpsearch.cli", *argv],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return result.returncode, result.stdout, result.stderr

    return run
