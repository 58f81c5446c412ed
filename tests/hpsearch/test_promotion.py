"""The promotion pruner: trials pause at rungs and the best go on under their own number.

The rule itself on plain numbers, the study file's way to ask for it, then whole runs of
the command line (stand-in trainer) with 4 workers on SQLite and PostgreSQL, and a
worker killed in the middle of a promotion.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.trial import TrialState

from hpsearch.storage.optuna_api import study_id
from hpsearch.storage.tables import rungs_table, slots_table
from hpsearch.study.load import load_study_file
from hpsearch.study.promotion import PromotionPruner, Rungs, promotable
from hpsearch.trials.record import TrialRecord
from tests.hpsearch.conftest import ROOT, TINY_GRID, fake_env, run_cli
from trainer.errors import UserError

EPOCHS = 9
POINTS = 16  # the tiny grid: 4 learning rates x 2 optimizers x 2 batch sizes


# -- the rule ---------------------------------------------------------------------------


def test_rungs_lie_below_the_last_epoch():
    assert Rungs(1, 3).epochs_of(9) == (1, 3)
    assert Rungs(1, 3).epochs_of(40) == (1, 3, 9, 27)
    assert Rungs(2, 2).epochs_of(12) == (2, 4, 8)
    assert Rungs(1, 3).rung_at(3, 9) == 1
    assert Rungs(1, 3).rung_at(9, 9) is None  # the last epoch ends the trial
    assert Rungs(1, 3).rung_at(2, 9) is None


def test_the_top_third_of_a_rung_goes_on_highest_rung_first():
    rung0 = {"a": 0.1, "b": 0.5, "c": 0.3, "d": 0.9, "e": 0.2, "f": 0.4}
    rung1 = {"d": 0.95, "b": 0.6, "x": 0.7}
    paused = {"a": 0, "b": 0, "c": 0, "e": 0, "f": 0, "x": 1, "d": 1}
    # rung 1: 3 members, top 1 is d (paused there); rung 0: 6 members, top 2 are d and b,
    # and only b waits at rung 0.
    assert promotable([rung0, rung1], paused, 3) == ["d", "b"]
    # Fewer members than the factor: the best goes on (so some trial always finishes).
    assert promotable([{"a": 1.0, "b": 2.0}], {"a": 0, "b": 0}, 3) == ["b"]
    assert promotable([{"a": 1.0, "b": 2.0}], {"a": 0}, 3) == []  # b went on already
    # Minimising, the lowest value is the best.
    assert promotable([{"a": 1.0, "b": 2.0, "c": 3.0}], {"a": 0, "c": 0}, 3, maximize=False) == [
        "a"
    ]
    # A diverged trial (NaN) ranks last and never goes on, even alone at its rung.
    nan = float("nan")
    assert promotable([{"a": nan, "b": 0.2, "c": 0.1}], {"a": 0, "b": 0, "c": 0}, 3) == ["b"]
    assert promotable([{"a": nan}], {"a": 0}, 3) == []
    # Ties: the one that reached the rung first.
    assert promotable([{"late": 0.5, "early": 0.5, "z": 0.1}], {"early": 0, "late": 0}, 3) == [
        "late"
    ]


def test_optunas_side_stops_at_each_rung():
    pruner = PromotionPruner(1, 3)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()
    stops = []
    for epoch in range(1, 10):
        trial.report(0.5, epoch)
        stops.append(pruner.prune(study, study.trials[0]))
    assert [e for e, stop in zip(range(1, 10), stops, strict=True) if stop] == [1, 3, 9]


def _file(tmp_path: Path, pruner: str, scale_pruner: str = "") -> Path:
    text = TINY_GRID.format(pruner="median", epochs=EPOCHS).replace(
        '[pruner]\nkind = "median"', f"[pruner]\n{pruner}"
    )
    path = tmp_path / "p.toml"
    path.write_text(text + scale_pruner)
    return path


def test_the_study_file_names_it_at_one_scale(tmp_path: Path):
    path = _file(tmp_path, 'kind = "median"\nn_startup_trials = 2', "[scale.full.pruner]\n")
    path.write_text(path.read_text() + 'kind = "promotion"\nreduction_factor = 4\n')
    spec = load_study_file(path)
    full = spec.pruner_at("full")
    # Another kind at this scale: the study's median settings do not carry over.
    assert (full.kind, full.settings) == ("promotion", {"reduction_factor": 4})
    pruner = spec.build_pruner("full")
    assert isinstance(pruner, PromotionPruner) and pruner.rungs.reduction_factor == 4


@pytest.mark.parametrize(
    ("pruner", "where"),
    [
        ('kind = "promotion"\nmin_resource = "auto"', "pruner.min_resource"),
        ('kind = "promotion"\nn_startup_trials = 2', "pruner.n_startup_trials"),
        ('kind = "promotion"\nreduction_factor = 1', "pruner.reduction_factor"),
    ],
)
def test_bad_settings_are_refused(tmp_path: Path, pruner: str, where: str):
    with pytest.raises(UserError, match=where.replace(".", r"\.")):
        load_study_file(_file(tmp_path, pruner))


def test_a_stop_rule_is_refused_with_it(tmp_path: Path):
    text = _file(tmp_path, 'kind = "promotion"').read_text()
    text = text.replace('sampler = "grid"', 'sampler = "random"')
    path = tmp_path / "r.toml"
    path.write_text(text + "\n[budget]\nn_trials = 8\n\n[stop]\npatience = 3\n")
    with pytest.raises(UserError, match=r"stop.*promotion pruner"):
        load_study_file(path)
    path.write_text(text + "\n[budget]\nn_trials = 8\n")
    assert load_study_file(path).pruner.kind == "promotion"


# -- whole runs -------------------------------------------------------------------------


def _slots(url: str, name: str) -> tuple[list[sa.Row], dict[int, dict[int, float]]]:
    study = optuna.load_study(study_name=name, storage=url)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            sid = study_id(study)
            slots = list(conn.execute(sa.select(slots_table).where(slots_table.c.study_id == sid)))
            found = conn.execute(sa.select(rungs_table).where(rungs_table.c.study_id == sid))
            rungs: dict[int, dict[int, float]] = {}
            for row in found:
                rungs.setdefault(row.rung, {})[row.slot] = row.value
    finally:
        engine.dispose()
    return slots, rungs


def _check_promotions(url: str, name: str, log: Path) -> list[optuna.trial.FrozenTrial]:
    """Every invariant of a finished promotion study; returns its trials."""
    trials = optuna.load_study(study_name=name, storage=url).trials
    # One trial per grid point: a promotion goes on under the trial's own number.
    assert len(trials) == POINTS
    assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    slots, rungs = _slots(url, name)
    assert len(slots) == POINTS and {r.status for r in slots} == {"done"}
    # No epoch of any slot was trained twice (the log has one line per trained epoch).
    lines = [line.split() for line in log.read_text().splitlines()]
    epochs = [(parts[1], parts[-1]) for parts in lines]
    assert len(epochs) == len(set(epochs)), "an epoch was trained twice"
    reached = {}
    for t in trials:
        steps = sorted(t.intermediate_values)
        assert steps == list(range(1, len(steps) + 1)), (t.number, steps)
        reached[TrialRecord.read(t).slot] = len(steps)
        if t.state == TrialState.COMPLETE:
            assert len(steps) == EPOCHS
        else:  # pruned where it waited: at a rung
            assert len(steps) in Rungs(1, 3).epochs_of(EPOCHS)
    assert sum(reached.values()) == len(epochs)
    # Each rung's final top third (at least its best) went on: nothing is pruned that the
    # rule would promote.
    for k, at in enumerate(Rungs(1, 3).epochs_of(EPOCHS)):
        members = rungs[k]
        assert set(members) == {slot for slot, n in reached.items() if n >= at}
        top = sorted(members, key=lambda slot: -members[slot])[: max(1, len(members) // 3)]
        assert all(reached[slot] > at for slot in top), (k, top, reached)
    return trials


def _study_file(tmp_path: Path) -> Path:
    path = _file(tmp_path, 'kind = "promotion"\nmin_resource = 1\nreduction_factor = 3')
    return path


@pytest.mark.slow
def test_four_workers_promote_each_trial_once(tmp_path: Path, storage_url: str, study_name):
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.05")
    args = ["run", "--study", str(_study_file(tmp_path)), "--name", study_name]
    args += ["--storage", storage_url, "--workdir", str(tmp_path / "w"), "--data", str(tmp_path)]
    out = run_cli([*args, "--workers", "4", "--wandb", "off"], env)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = _check_promotions(storage_url, study_name, tmp_path / "epochs.log")
    assert "waits for promotion" in out.stderr
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    # The stand-in's curve is best at lr 0.01 with SGD (batch size does not matter).
    assert best.params["lr"] == 0.01 and best.params["optimizer"] == "sgd"
    trained = len((tmp_path / "epochs.log").read_text().splitlines())
    assert trained <= 0.4 * POINTS * EPOCHS, trained


@pytest.mark.slow
def test_a_worker_killed_during_a_promotion(tmp_path: Path, storage_url: str, study_name):
    """SIGKILL the worker that runs a promoted trial: after its heartbeat's grace the trial
    waits at its rung again, another worker promotes it, and it completes under its own
    number, with no epoch trained twice."""
    log = tmp_path / "epochs.log"
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.05", FAKE_TRAINER_STALL_PROMOTED_AT="2")
    args = ["run", "--study", str(_study_file(tmp_path)), "--name", study_name]
    args += ["--storage", storage_url, "--workdir", str(tmp_path / "w"), "--data", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hpsearch.stand_in_cli", *args, "--workers", "2"],
        env={**env, "HPSEARCH_WANDB": "off"},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marker = Path(f"{log}.promoted")
    deadline = time.time() + 180
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), "no promoted run reached its second epoch"
    time.sleep(0.2)
    pid, slot = marker.read_text().split()
    killed = Path(slot).name
    os.kill(int(pid), signal.SIGKILL)
    output, _ = proc.communicate(timeout=240)
    # The run may end on the dead worker; whatever is left, a second run finishes.
    again = run_cli([*args, "--workers", "2", "--wandb", "off"], env)
    assert again.returncode == 0, output[-2000:] + again.stderr[-2000:]
    trials = _check_promotions(storage_url, study_name, log)
    slot_number = int(killed.split("-")[1])
    # Not failed and run again as a new trial: the same trial waited at its rung again
    # and then went on or was pruned there, as the rule (checked above) decided.
    (trial,) = [t for t in trials if TrialRecord.read(t).slot == slot_number]
    assert trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
    epochs_of_slot = [
        parts[-1]
        for parts in (line.split() for line in log.read_text().splitlines())
        if parts[1] == killed
    ]
    # It stalled in epoch 2 before saving it: that epoch was trained at most once since.
    assert epochs_of_slot.count("2") <= 1 and epochs_of_slot.count("1") == 1


@pytest.mark.slow
def test_a_stop_during_a_promotion_leaves_the_trial_waiting(
    tmp_path: Path, storage_url: str, study_name
):
    """SIGTERM (a scheduler's stop) in a promoted run: the trial waits at its rung again,
    shown as PAUSED, and the next run promotes it under its own number."""
    log = tmp_path / "epochs.log"
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.02", FAKE_TRAINER_STALL_PROMOTED_AT="2")
    args = ["run", "--study", str(_study_file(tmp_path)), "--name", study_name]
    args += ["--storage", storage_url, "--workdir", str(tmp_path / "w"), "--data", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hpsearch.stand_in_cli", *args, "--wandb", "off"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marker = Path(f"{log}.promoted")
    deadline = time.time() + 180
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert marker.exists(), "no promoted run reached its second epoch"
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    slot = int(marker.read_text().split()[1].split("-")[1])
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    (waiting,) = [t for t in study.trials if TrialRecord.read(t).slot == slot]
    assert waiting.state == TrialState.RUNNING, output[-2000:]
    status = run_cli(["status", "--study", study_name, "--storage", storage_url], env)
    shown = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[2:]
             if line.split() and line.split()[0].isdigit()}  # fmt: skip
    assert shown[str(waiting.number)] == "paused", status.stdout
    rows, _ = _slots(storage_url, study_name)
    assert {r.slot: r.status for r in rows}[slot] == "paused"
    again = run_cli([*args, "--wandb", "off"], env)
    assert again.returncode == 0, again.stderr[-2000:]
    trials = _check_promotions(storage_url, study_name, log)
    (done,) = [t for t in trials if t.number == waiting.number]
    assert done.state in (TrialState.COMPLETE, TrialState.PRUNED)  # the same trial, ended
