"""Checks shared by the reliability tests: one-line errors, slots done exactly once."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from hpsearch.trials.record import TrialRecord
from tests.hpsearch.conftest import PG_URL, ROOT, pg_available

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

RANDOM_STUDY = """
[study]
sampler = "random"
seed = 3

[budget]
n_trials = {n_trials}

[space]
lr = {{ low = 0.0001, high = 0.1, log = true }}
optimizer = ["sgd", "adam"]

[scale.full]
epochs = {epochs}
image_size = 32
"""


def random_study(folder: Path, n_trials: int, epochs: int = 1) -> Path:
    """A random-search study file with ``n_trials`` slots of ``epochs`` fake epochs."""
    path = folder / "random.toml"
    path.write_text(RANDOM_STUDY.format(n_trials=n_trials, epochs=epochs))
    return path


def run_args(study: Path, name: str, url: str, tmp_path: Path, *extra: str) -> list[str]:
    """``hpsearch run`` arguments for the fake trainer, with the workdir under ``tmp_path``."""
    return [
        "run",
        "--study",
        str(study),
        "--name",
        name,
        "--storage",
        url,
        "--data",
        str(tmp_path),
        "--workdir",
        str(tmp_path / "work"),
        "--wandb",
        "off",
        *extra,
    ]


def assert_one_line_error(code: int, err: str, *expected: str) -> str:
    """Exit code 2 and stderr exactly one ``hpsearch <cmd>: error: ...`` line, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("hpsearch ") and ": error: " in line
    for text in expected:
        assert text in line
    return line


def require_postgres() -> str:
    """The PostgreSQL test URL; skip when it is down, fail instead on CI."""
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    return PG_URL


def study_names(url: str) -> list[str]:
    """Names of the studies in a storage (a missing SQLite file holds none)."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).exists():
        return []
    return [s.study_name for s in optuna.get_all_study_summaries(url)]


def slot_rows(url: str, study: optuna.Study) -> list[sa.Row]:
    """The study's rows of the claims table (slot, status, attempts, trial_id)."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            query = sa.text(
                "SELECT slot, status, attempts, trial_id FROM hpsearch_slots "
                "WHERE study_id = :sid ORDER BY slot"
            )
            return list(conn.execute(query, {"sid": study._study_id}))
    finally:
        engine.dispose()


def assert_every_slot_once(url: str, name: str, n_slots: int) -> optuna.Study:
    """Every slot done, and exactly one finished trial per slot, nothing off the budget."""
    study = optuna.load_study(study_name=name, storage=url)
    rows = slot_rows(url, study)
    # the claims table: one row per slot, all done
    assert [r.slot for r in rows] == list(range(n_slots))
    assert {r.status for r in rows} == {"done"}
    finished = [t for t in study.trials if t.state in FINISHED]
    per_slot = collections.Counter(TrialRecord.read(t).slot for t in finished)
    # the trials: one finished trial per slot, none twice, none outside the budget
    assert sorted(per_slot) == list(range(n_slots))
    assert max(per_slot.values()) == 1
    # the slot's recorded trial is that finished trial
    by_id = {t._trial_id: t for t in finished}
    assert all(TrialRecord.read(by_id[r.trial_id]).slot == r.slot for r in rows)
    return study


def epochs_per_slot(log: Path) -> collections.Counter:
    """How many times each (slot, epoch) was trained, from the fake trainer's log."""
    lines = log.read_text().splitlines() if log.exists() else []
    return collections.Counter((line.split()[1], line.split()[-1]) for line in lines)


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """``python -m hpsearch.cli ARGS`` in its own process group (for signals to the whole run)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.hpsearch.stand_in_cli", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_lines(log: Path, n: int, timeout: float = 90) -> list[str]:
    """The fake trainer's log once it has ``n`` lines (epochs trained)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"fewer than {n} epochs trained in {timeout} s")
