"""A process that opens the same SQLite storage twice keeps its lock on the file.

In WAL mode every open connection holds a shared lock on the database file; the last
process to close takes it exclusively, checkpoints and deletes the WAL. POSIX locks
belong to the process, so closing *any* other handle on the file drops them all: a
header check that opened the file with ``open()`` did exactly that whenever a run's
single CPU worker opened the storage its command had already opened. Another process
finishing then deleted the WAL under the live connections, and the study file came back
"malformed" or "not a database" (seen 1 round in 11 with 4 identical runs on a busy
2-core machine).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpsearch.storage import check_sqlite_file, open_storage
from trainer.errors import UserError

#: Another process tries to take SQLite's shared-lock bytes exclusively: it can only
#: when no process holds a shared lock on the file.
TRY_EXCLUSIVE = r"""
import fcntl, sys
with open(sys.argv[1], "r+b") as fd:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 510, 0x40000002)
        print("free")
    except OSError:
        print("held")
"""


def lock_seen_by_another_process(database: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", TRY_EXCLUSIVE, str(database)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_opening_the_storage_again_keeps_this_process_lock(tmp_path: Path) -> None:
    database = tmp_path / "study.db"
    url = f"sqlite:///{database}"
    first = open_storage(url)
    first.get_all_studies()  # a pooled connection, open and holding its shared lock
    assert lock_seen_by_another_process(database) == "held"
    second = open_storage(url)
    assert lock_seen_by_another_process(database) == "held"
    check_sqlite_file(url, must_exist=True)
    second.get_all_studies()
    first.get_all_studies()
    assert lock_seen_by_another_process(database) == "held"


def test_a_file_that_is_not_sqlite_is_still_refused_by_name(tmp_path: Path) -> None:
    database = tmp_path / "notes.db"
    database.write_bytes(b"these are notes, not a database" * 50)
    with pytest.raises(UserError, match=r"notes\.db is not a SQLite database"):
        check_sqlite_file(f"sqlite:///{database}")
