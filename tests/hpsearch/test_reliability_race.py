"""Identical ``hpsearch run`` commands started together on a fresh storage: all of them go on.

The README's recipe for several machines is the same command on each. On a storage that
does not exist yet they all race to create Optuna's schema, then the study and its
record; every process must exit 0 and every point must be trained exactly once. On one
machine (one command per GPU) they also share a fresh workdir: the synthetic demo data
is generated there by one of them while the others wait, and read only when complete.

``python -m tests.hpsearch.test_reliability_race [ROUNDS]`` runs the full measurement
(2 and 4 processes, SQLite and PostgreSQL, 10 rounds each) and prints the figures;
the slow test runs fewer rounds.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.hpsearch.conftest import PG_URL, ROOT, TINY_GRID, fake_env, pg_available
from tests.hpsearch.study_checks import assert_every_slot_once, run_args

GRID_SIZE = 16

#: The tiny grid with a demo scale, for commands that generate the demo data themselves.
DEMO_GRID = TINY_GRID.replace(
    "[scale.full]",
    """[scale.demo]
epochs = 1
image_size = 16
demo_images = 200
demo_size = 32

[scale.full]""",
)


def _fresh_pg_database() -> tuple[str, str]:
    """A new, empty PostgreSQL database beside the test one: (url, name)."""
    import psycopg

    name = f"hpsearch_race_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PG_URL.rsplit("/", 1)[0] + "/" + name, name


def _drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def race_round(
    folder: Path, backend: str, processes: int, *, demo: bool = False
) -> tuple[bool, str]:
    """``processes`` identical runs started together on a fresh storage (and, with
    ``demo``, a fresh workdir where they generate the demo data); (all fine, why not)."""
    folder.mkdir(parents=True)
    study = folder / "tiny.toml"
    study.write_text((DEMO_GRID if demo else TINY_GRID).format(pruner="none", epochs=1))
    dropped = None
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'fresh.db'}"
    else:
        url, dropped = _fresh_pg_database()
    try:
        args = run_args(study, "race", url, folder)
        if demo:  # no --data: the synthetic demo data, made in the shared workdir
            at = args.index("--data")
            args = args[:at] + args[at + 2 :]
        env = fake_env(folder, FAKE_TRAINER_EPOCH_S="0")
        if demo:  # the trainer's own data loading reads the demo folder, as a run does
            env["STAND_IN_TRAINER"] = "tests.hpsearch.real_data_trainer"
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.hpsearch.stand_in_cli", *args],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(processes)
        ]
        results = [(p, *p.communicate(timeout=600)) for p in procs]
        for proc, _out, err in results:
            if proc.returncode != 0 or "Traceback" in err:
                return False, f"exit {proc.returncode}: {err.strip()[-1500:]}"
        try:
            assert_every_slot_once(url, "race", GRID_SIZE)
        except AssertionError as err:
            return False, f"points not once: {err}"
        return True, ""
    finally:
        if dropped:
            _drop_pg_database(dropped)


def _backends() -> list[str]:
    return ["sqlite", "postgres"] if pg_available() else ["sqlite"]


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_identical_runs_started_together_on_a_fresh_storage_all_go_on(
    tmp_path: Path, backend: str, processes: int
) -> None:
    if backend == "postgres" and not pg_available():
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}")
    for n in range(3):
        ok, why = race_round(tmp_path / f"round{n}", backend, processes)
        # every process exits 0, and every grid point is trained exactly once
        assert ok, f"round {n}: {why}"


@pytest.mark.slow
@pytest.mark.parametrize("processes", [2, 4])
def test_identical_runs_on_a_fresh_workdir_share_the_demo_data(
    tmp_path: Path, processes: int
) -> None:
    for n in range(2):
        ok, why = race_round(tmp_path / f"round{n}", "sqlite", processes, demo=True)
        # before: one exited 2 with "no images for class(es) ..." (it read the demo
        # folder while another command was still writing it)
        assert ok, f"round {n}: {why}"


def main(rounds: int) -> int:
    """Run ``rounds`` rounds of each case and print how many went through."""
    failures = 0
    cases = [(b, p, False) for b in _backends() for p in (2, 4)]
    cases += [("sqlite", p, True) for p in (2, 4)]
    with tempfile.TemporaryDirectory() as tmp:
        for backend, processes, demo in cases:
            started = time.perf_counter()
            bad = []
            for n in range(rounds):
                folder = Path(tmp) / f"{backend}-{processes}-{demo}-{n}"
                ok, why = race_round(folder, backend, processes, demo=demo)
                if not ok:
                    bad.append(f"round {n}: {why}")
            seconds = time.perf_counter() - started
            where = " on a fresh workdir (demo data)" if demo else ""
            print(
                f"{backend:8} {processes} processes{where}: {rounds - len(bad)}/{rounds} "
                f"rounds with every process exit 0 and every point once ({seconds:.0f} s)",
                flush=True,
            )
            for line in bad:
                print("   ", line[:2000], flush=True)
            failures += len(bad)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
