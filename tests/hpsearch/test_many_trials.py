"""A small version of ``benchmarks/many_trials.py``: a study of many no-op trials on
PostgreSQL, shared by two ``hpsearch run`` commands, then the read commands on it.

300 one-epoch trials of the stand-in trainer, 8 workers in two commands (as two machines
would run them), a stop rule that never ends the run (its patience is the budget, so every
trial start checks it): every slot finishes exactly once, and ``status`` (text and JSON)
and ``best`` answer with the whole study. No timing is asserted: the benchmark prints the
figures (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hpsearch.conftest import ROOT, fake_env, run_cli
from tests.hpsearch.study_checks import assert_every_slot_once, require_postgres, run_args

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TRIALS, WORKERS = 300, 8

STUDY = """
[study]
sampler = "random"
seed = 0
[budget]
n_trials = {n}
[fixed]
epochs = 1
[space]
lr = {{ low = 0.0001, high = 0.1, log = true }}
momentum = {{ low = 0.0, high = 0.95 }}
[scale.full]
image_size = 32
[stop]
patience = {n}
"""


def test_many_trials_run_once_each_and_the_read_commands_answer(
    tmp_path: Path, study_name: str
) -> None:
    url = require_postgres()
    study_file = tmp_path / "many.toml"
    study_file.write_text(STUDY.format(n=TRIALS))
    # The product's heartbeat (10 s): a loaded machine must not make live trials look dead.
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0")
    env.pop("STAND_IN_HEARTBEAT_S")
    cmd = [sys.executable, "-m", "tests.hpsearch.stand_in_cli"]
    # Both commands make or join the same study, as on two machines.
    runs = [
        subprocess.Popen(
            [*cmd, *run_args(study_file, study_name, url, tmp_path, "--workers", str(n))],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n in (WORKERS // 2, WORKERS - WORKERS // 2)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
        assert "Traceback" not in output

    study = assert_every_slot_once(url, study_name, TRIALS)
    assert len(study.trials) == TRIALS  # nothing failed, nothing off the budget

    status = run_cli(["status", "--study", study_name, "--storage", url, "--json"], env)
    assert status.returncode == 0, status.stderr[-3000:]
    record = json.loads(status.stdout)
    assert record["finished"] == TRIALS and record["remaining"] == 0
    assert record["states"] == {"complete": TRIALS}
    assert len(record["trials"]) == TRIALS
    best = max(study.trials, key=lambda t: (t.value, -t.number))
    assert record["best"]["number"] == best.number

    text = run_cli(["status", "--study", study_name, "--storage", url], env)
    assert text.returncode == 0, text.stderr[-3000:]
    assert f"{TRIALS}/{TRIALS} finished" in text.stdout

    answer = run_cli(
        ["best", "--study", study_name, "--storage", url, "--workdir", str(tmp_path / "work")],
        env,
    )
    assert answer.returncode == 0, answer.stderr[-3000:]
    assert f"best trial {best.number}\n" in answer.stdout
