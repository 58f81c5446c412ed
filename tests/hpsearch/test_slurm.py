"""deploy/slurm-array.sbatch, as users copy it, on a one-node Slurm cluster.

``.ci/slurm-cluster.sh up`` starts the cluster (root, Debian's Slurm 22.05, the local
MariaDB for accounting); where it cannot, the test skips with the script's one-line reason
(under ``$CI`` it fails instead, as the PostgreSQL tests do). The launch file is submitted
with only its EDIT values changed: an array of 3 tasks of one CPU each, no GPU, PostgreSQL
as the storage, a 5-point grid of 8-epoch trials on small synthetic images. While it runs,
the test stops each task in one of the ways a scheduler does, each time while the task
trains a trial past its first epoch (so there is a checkpoint to resume from) and at
least two epochs from its last:

- ``scontrol requeue JOB_TASK``: Slurm sends every process of the task SIGTERM (SIGKILL
  after KillWait), then starts the task again. It is held (``scontrol hold``) until the
  third stop has landed, then released: it comes back, joins the study and finishes it;
- ``scancel --batch --signal=TERM JOB_TASK`` on a second task: the signal reaches
  ``hpsearch run`` (the batch script, by ``exec``), which stops its worker;
- the third task's time limit is cut so that the file's ``--signal=B:TERM@120`` is due at
  once (``scontrol update TimeLimit``). Slurm keeps limits in whole minutes and checks
  them every 30 s, so the early SIGTERM comes within 30 s, at least 30 s before the
  limit; while it is on its way this task is the only one training (that is why the
  requeued one is held), and every epoch takes at least ``EPOCH_PACE_S`` (the real
  trainer, paced: ``tests/hpsearch/paced_trainer.py``), so the study cannot run out of
  work first on a fast machine.
  The task must stop before the limit itself (Slurm's SIGTERM to every process, SIGKILL
  30 s later), with the exit status of a SIGTERM stop.

Which trial each stop landed on is read from the task's output file: Slurm writes its
``*** JOB ... CANCELLED AT ...`` line there when it signals the task. That trial must be
recorded as interrupted, be the last trial its run started, and be resumed by a later
trial of its slot from the epoch after its last. The time limit's signal may land on a
trial that has not finished an epoch yet (it comes up to 30 s after the cut, when the
trial it was cut on may have ended): there is no checkpoint then, and the later trial of
its slot must start at epoch 1. At the end every slot of the budget has
exactly one finished trial, no epoch was trained twice (the tasks' output files, where
``hpsearch run`` prints a line per epoch, are the epoch log), nothing is RUNNING, no
process of the job outlives it, ``sacct`` has each task's state and ``hpsearch status``
agrees with the storage.

The evidence (sacct table, epoch logs, trials) is written to ``slurm-evidence.txt`` in the
test's tmp_path and printed: pytest shows it on failure, and with ``-s`` on success.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from hpsearch.trials.rows import shown_state
from tests.hpsearch.conftest import PG_URL, ROOT
from tests.hpsearch.study_checks import assert_every_slot_once, require_postgres

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(1800)]

CLUSTER = ROOT / ".ci" / "slurm-cluster.sh"
SBATCH = ROOT / "deploy" / "slurm-array.sbatch"
TASKS = 3
SLOTS = 5
EPOCHS = 8
#: Shortest epoch (s): the real trainer waits out the rest of a faster one. When the third
#: task's time limit is cut, about 30 epochs remain for it alone; at this pace that is
#: over a minute, longer than Slurm takes to send the early SIGTERM (its limit check comes
#: every 30 s), on however fast a machine. Without it a fast machine finished the study
#: first and the task ended with COMPLETED instead of being stopped.
EPOCH_PACE_S = 2.5
#: Longest wait for each step (a task to train, the array to end) on a busy machine.
STEP_TIMEOUT_S = 420

STUDY = f"""
[study]
sampler = "grid"
seed = 0
metric = "val_accuracy"
direction = "maximize"

[pruner]
kind = "none"

[fixed]
arch = "resnet18"
optimizer = "sgd"
momentum = 0.9
batch_size = 32

[space]
lr = [0.001, 0.003, 0.01, 0.03, 0.1]

[scale.full]
image_size = 16
epochs = {EPOCHS}
pretrained = false
val_fraction = 0.15
test_fraction = 0.15
"""

HEADER = re.compile(r"\] study '[^']+' .*? (\d+) trials in all, (\d+) done before")
STARTED = re.compile(r"\] worker \d+: trial (\d+) started \(slot (\d+)\)")
EPOCH = re.compile(r"\] worker \d+: trial (\d+) epoch (\d+)/\d+ ")
ENDED = re.compile(r"\] worker \d+: trial (\d+) (\w+)[ :]")
#: What slurmstepd writes to a task's output when it signals the task (any stop).
STOPPED = re.compile(r"\*\*\* JOB \d+ ON \S+ CANCELLED AT ")
#: The line of a trial the stop ended before it was bound to a slot (between two trials).
NOT_CREATED = "trial not created (interrupted); its slot is free to run again"


# ---------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def slurm_env() -> Iterator[dict[str, str]]:
    """What Slurm's commands need (SLURM_CONF). The cluster is brought up for the module
    and down after it, unless it was up before."""
    was_up = subprocess.run([CLUSTER, "env"], capture_output=True).returncode == 0
    up = subprocess.run([CLUSTER, "up"], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        reason = (up.stderr.strip().splitlines() or [f"{CLUSTER} up: exit {up.returncode}"])[-1]
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    conf = up.stdout.strip().splitlines()[-1].partition("=")[2]
    try:
        yield {"SLURM_CONF": conf}
    finally:
        if not was_up:
            subprocess.run([CLUSTER, "down"], capture_output=True, timeout=300)


def slurm(env: dict[str, str], *args: str, check: bool = True) -> str:
    proc = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def live_tasks(env: dict[str, str], job: str) -> dict[int, str]:
    """Array task -> state, for the tasks squeue still shows (pending, running, ending)."""
    out = slurm(env, "squeue", "-h", "-r", "-j", job, "-o", "%K %T", check=False)
    return {int(k): state for k, state in (line.split() for line in out.splitlines())}


def sacct_rows(env: dict[str, str], job: str) -> list[dict[str, str]]:
    """Every record of the array's tasks and their steps, requeued runs included."""
    fields = "JobID,JobIDRaw,State,ExitCode,Start,End,Elapsed,Timelimit"
    out = slurm(env, "sacct", "-D", "-n", "-P", "-j", job, f"--format={fields}")
    return [dict(zip(fields.split(","), line.split("|"), strict=True)) for line in out.splitlines()]


def task_records(rows: list[dict[str, str]]) -> dict[int, list[dict[str, str]]]:
    """Per array task, the records of its runs in order (steps left out)."""
    per_task: dict[int, list[dict[str, str]]] = collections.defaultdict(list)
    for row in rows:
        task = row["JobID"].partition("_")[2]
        if task.isdigit():
            per_task[int(task)].append(row)
    return per_task


def sacct_settled(env: dict[str, str], job: str) -> list[dict[str, str]]:
    """The records once every task has its final state (slurmdbd gets them a moment after
    the tasks end); what there is after 60 s otherwise."""
    rows: list[dict[str, str]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = sacct_rows(env, job)
        records = task_records(rows)
        ongoing = {"RUNNING", "PENDING", "COMPLETING", "REQUEUED"}
        if len(records) == TASKS and all(rs[-1]["State"] not in ongoing for rs in records.values()):
            break
        time.sleep(1)
    return rows


# ---------------------------------------------------------------- the epoch log


@dataclass
class Run:
    """One ``hpsearch run`` in a task's output file (a requeued task has two)."""

    lines: list[str] = field(default_factory=list)
    done_before: int | None = None
    slots: dict[int, int] = field(default_factory=dict)  # trial -> slot
    epochs: list[tuple[int, int]] = field(default_factory=list)  # (trial, epoch)
    ended: set[int] = field(default_factory=set)
    stop_line: str | None = None  # Slurm's first "*** JOB ... CANCELLED AT" line
    open_at_stop: list[int] = field(default_factory=list)  # trials in training then
    started_after_stop: list[int] = field(default_factory=list)

    def add(self, line: str) -> None:
        self.lines.append(line)
        if STOPPED.search(line) and self.stop_line is None:
            self.stop_line = line
            self.open_at_stop = [t for t in self.slots if t not in self.ended]
        elif m := STARTED.search(line):
            self.slots[int(m.group(1))] = int(m.group(2))
            if self.stop_line is not None:
                self.started_after_stop.append(int(m.group(1)))
        elif m := EPOCH.search(line):
            self.epochs.append((int(m.group(1)), int(m.group(2))))
        elif m := ENDED.search(line):
            self.ended.add(int(m.group(1)))

    def training(self) -> int | None:
        """A trial this run trains, past its first epoch and two or more from its last."""
        if self.stop_line is not None:
            return None
        last = dict(self.epochs)  # the last epoch line of each trial
        return next(
            (t for t, e in last.items() if t not in self.ended and 1 <= e <= EPOCHS - 2), None
        )


def parse_output(text: str) -> list[Run]:
    """The runs in a task's output: each from its study line on (what a run prints before
    it, such as the image cache's progress, belongs to it too)."""
    runs: list[Run] = []
    for line in text.splitlines():
        header = HEADER.search(line)
        if not runs or (header and runs[-1].done_before is not None):
            runs.append(Run())
        if header:
            runs[-1].done_before = int(header.group(2))
        runs[-1].add(line)
    return runs


def outputs_of(folder: Path, job: str) -> dict[int, list[Run]]:
    """Each task's runs, from its output file ``hpsearch-JOB_TASK.out``."""
    out = {}
    for task in range(TASKS):
        path = folder / f"hpsearch-{job}_{task}.out"
        out[task] = parse_output(path.read_text(errors="replace")) if path.exists() else []
    return out


def epoch_log(outputs: dict[int, list[Run]]) -> list[tuple[int, int, int, int]]:
    """(slot, epoch, trial, task) of every epoch line of every task's output."""
    slots = {t: s for runs in outputs.values() for run in runs for t, s in run.slots.items()}
    return [
        (slots.get(trial, -1), epoch, trial, task)
        for task, runs in outputs.items()
        for run in runs
        for trial, epoch in run.epochs
    ]


# ---------------------------------------------------------------- the submission


def edited_sbatch(tmp_path: Path, name: str) -> Path:
    """deploy/slurm-array.sbatch with its EDIT values replaced, and nothing else."""
    text = SBATCH.read_text()
    edits = {
        "#SBATCH --array=0-15%16\n": f"#SBATCH --array=0-{TASKS - 1}\n",
        "#SBATCH --gres=gpu:1\n": "",
        "#SBATCH --cpus-per-task=8\n": "#SBATCH --cpus-per-task=1\n",
        "#SBATCH --mem=32G\n": "#SBATCH --mem=2G\n",
        "#SBATCH --time=24:00:00\n": "#SBATCH --time=30:00\n",
        'export HPSEARCH_STORAGE="postgresql://hpsearch@db.example.org:5432/hpsearch"\n': (
            f'export HPSEARCH_STORAGE="{PG_URL}"\n'
        ),
        'export HPSEARCH_ARTIFACTS="/shared/hpsearch/artifacts"\n': (
            f'export HPSEARCH_ARTIFACTS="{tmp_path / "artifacts"}"\n'
        ),
        'DATA="/datasets/covid-xray"\n': f'DATA="{tmp_path / "data"}"\n',
        'STUDY="studies/grid.toml"\n': f'STUDY="{tmp_path / "study.toml"}"\n',
        'NAME="xray-grid"\n': f'NAME="{name}"\n',
    }
    for old, new in edits.items():
        # Each EDIT value exactly once: a changed launch file fails here, not later.
        assert text.count(old) == 1, f"{SBATCH}: expected one line {old.strip()!r}"
        text = text.replace(old, new)
    path = tmp_path / "slurm-array.sbatch"
    path.write_text(text)
    return path


def job_environment(tmp_path: Path, slurm_env: dict[str, str]) -> dict[str, str]:
    """The submitter's environment, which sbatch passes on to the tasks: ``hpsearch`` on
    PATH runs this checkout's code, with the real trainer paced to ``EPOCH_PACE_S`` an
    epoch at least; TMPDIR puts the node-local workdir under tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "hpsearch"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.hpsearch.stand_in_cli "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "node-tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSEARCH_", "SLURM_"))}
    env.update(slurm_env)
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}",
        TMPDIR=str(tmp_path / "node-tmp"),
        STAND_IN_TRAINER="tests.hpsearch.paced_trainer",
        PACED_EPOCH_S=str(EPOCH_PACE_S),
    )
    return env


def make_data(tmp_path: Path, env: dict[str, str]) -> None:
    """120 synthetic images (84 to train on; trained at 16 px): epochs of well under a
    second on an idle 2-core machine (paced to ``EPOCH_PACE_S``), a few seconds on a busy
    one."""
    cmd = ["hpsearch", "data", "demo", "--out", str(tmp_path / "data"), "--n", "120"]
    subprocess.run([*cmd, "--size", "32"], env=env, check=True, capture_output=True, timeout=300)


# ---------------------------------------------------------------- the stops


class NotSeen(Exception):
    """What the test waited for did not happen."""


@dataclass
class Stops:
    """Which task was stopped how, and when (seconds after the submission)."""

    job: str
    folder: Path
    limit: int | None = None
    term: int | None = None
    requeue: int | None = None
    times: dict[str, float] = field(default_factory=dict)


def wait_for(what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found is not None and found is not False:
            return found
        time.sleep(0.5)
    raise NotSeen(f"{what}: not seen in {timeout:.0f} s")


def training_task(env: dict[str, str], stops: Stops, exclude: set[int]) -> int | None:
    """A running task, not in ``exclude``, that trains a trial past its first epoch."""
    states = live_tasks(env, stops.job)
    if not states:
        raise NotSeen(f"the array ended before {len(exclude) + 1} task(s) trained a trial")
    for task, runs in outputs_of(stops.folder, stops.job).items():
        if task not in exclude and states.get(task) == "RUNNING" and runs and runs[-1].training():
            return task
    return None


def signal_lead_s() -> int:
    """N of the launch file's ``#SBATCH --signal=B:TERM@N``."""
    found = re.search(r"^#SBATCH --signal=B:TERM@(\d+)$", SBATCH.read_text(), flags=re.M)
    assert found, f"{SBATCH}: no '#SBATCH --signal=B:TERM@N' line"
    return int(found.group(1))


def cut_time_limit(env: dict[str, str], task_id: str) -> str:
    """Set the task's limit, in whole minutes, to end between N-60 and N s from now, N
    being the file's signal lead: its early SIGTERM is then due at Slurm's next time-limit
    check (every 30 s), and comes at least N-90 s before the limit."""
    text = slurm(env, "scontrol", "-o", "show", "job", task_id)
    clock = re.search(r"RunTime=(?:(\d+)-)?(\d+):(\d+):(\d+)", text)
    assert clock, text
    days, hours, minutes, seconds = (int(g or 0) for g in clock.groups())
    ran = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    limit = (ran + signal_lead_s()) // 60
    slurm(env, "scontrol", "update", f"JobId={task_id}", f"TimeLimit={limit}")
    return f"time limit of task {task_id} cut to {limit} min at {ran} s"


def stop_seen(stops: Stops, task: int) -> bool:
    """Slurm has signalled the task (its line is in the task's output)."""
    runs = outputs_of(stops.folder, stops.job)[task]
    return any(run.stop_line is not None for run in runs)


def drive(env: dict[str, str], stops: Stops, started: float) -> None:
    """Stop one task each way while it trains, then wait for the array to end."""

    def mark(what: str) -> None:
        stops.times[what] = time.monotonic() - started

    def training(exclude: set[int | None]) -> Callable[[], int | None]:
        return lambda: training_task(env, stops, {t for t in exclude if t is not None})

    stops.requeue = wait_for("a task training", STEP_TIMEOUT_S, training(set()))
    requeued = f"{stops.job}_{stops.requeue}"
    slurm(env, "scontrol", "requeue", requeued)
    slurm(env, "scontrol", "hold", requeued)
    mark(f"scontrol requeue {requeued}, then hold")
    stops.term = wait_for("a second task training", STEP_TIMEOUT_S, training({stops.requeue}))
    slurm(env, "scancel", "--batch", "--signal=TERM", f"{stops.job}_{stops.term}")
    mark(f"scancel --batch --signal=TERM {stops.job}_{stops.term}")
    stops.limit = wait_for(
        "a third task training", STEP_TIMEOUT_S, training({stops.requeue, stops.term})
    )
    mark(cut_time_limit(env, f"{stops.job}_{stops.limit}"))
    limited = stops.limit
    wait_for(
        "the early SIGTERM",
        STEP_TIMEOUT_S,
        lambda: stop_seen(stops, limited) or limited not in live_tasks(env, stops.job),
    )
    mark(f"the early SIGTERM in {stops.job}_{stops.limit}'s output")
    slurm(env, "scontrol", "release", requeued)
    mark(f"scontrol release {requeued}")
    wait_for("the array's end", 3 * STEP_TIMEOUT_S, lambda: not live_tasks(env, stops.job))
    mark("all tasks ended")


# ---------------------------------------------------------------- the evidence


def job_processes(job_ids: set[str]) -> list[str]:
    """``pid command`` of the live processes that the job's tasks started."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ids = {v.partition(b"=")[2].decode() for v in environ if v.startswith(b"SLURM_JOB_ID=")}
        if state != "Z" and ids & job_ids:
            found.append(f"{proc.name} {command[:160]}")
    return found


@dataclass
class Evidence:
    sacct: list[dict[str, str]]
    sacct_table: str
    outputs: dict[int, list[Run]]
    trials: list[FrozenTrial]
    status: dict[str, Any]
    leftovers: list[str]

    def trial(self, number: int) -> FrozenTrial | None:
        return next((t for t in self.trials if t.number == number), None)


def gather(env: dict[str, str], stops: Stops, name: str) -> Evidence:
    rows = sacct_settled(env, stops.job)
    fields = "JobID%14,JobIDRaw,State%20,ExitCode,Start,End,Elapsed,Timelimit"
    try:
        trials = optuna.load_study(study_name=name, storage=PG_URL).get_trials(deepcopy=False)
    except KeyError:  # no task got as far as creating the study
        trials = []
    status = subprocess.run(
        ["hpsearch", "status", "--study", name, "--storage", PG_URL, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Evidence(
        sacct=rows,
        sacct_table=slurm(env, "sacct", "-D", "-j", stops.job, f"--format={fields}", check=False),
        outputs=outputs_of(stops.folder, stops.job),
        trials=trials,
        status=json.loads(status.stdout) if status.returncode == 0 else {"error": status.stderr},
        leftovers=job_processes({r["JobIDRaw"].partition(".")[0] for r in rows}),
    )


def describe(ev: Evidence, stops: Stops, wall_s: float) -> str:
    parts = [f"wall time {wall_s:.0f} s; job {stops.job}"]
    parts += [f"  at {t:6.1f} s: {what}" for what, t in stops.times.items()]
    parts += ["", "sacct -D:", ev.sacct_table.rstrip()]
    parts += ["", "trials: number state slot interrupted error | resumed epochs_run"]
    for t in ev.trials:
        start, result = t.user_attrs.get("start") or {}, t.user_attrs.get("result") or {}
        parts.append(
            f"  {t.number:3d} {t.state.name:8s} slot {start.get('slot')} "
            f"{t.user_attrs.get('interrupted', False)} {t.user_attrs.get('error')!r} | "
            f"{result.get('resumed')} {result.get('epochs_run')}"
        )
    parts += ["", "epoch log by slot: slot epoch trial task"]
    parts += [f"  {s} {e} {t} {k}" for s, e, t, k in sorted(epoch_log(ev.outputs))]
    parts += ["", f"hpsearch status --json: {json.dumps(ev.status)[:400]}"]
    parts += [f"processes of the job still alive: {ev.leftovers or 'none'}"]
    for task, runs in ev.outputs.items():
        parts += ["", f"---- hpsearch-{stops.job}_{task}.out: {len(runs)} run(s)"]
        for run in runs:
            parts += [f"  stop: {run.stop_line}; in training then: {run.open_at_stop}"]
        parts += [line for run in runs for line in run.lines][-60:]
    return "\n".join(parts)


# ---------------------------------------------------------------- the checks


def stop_checks(ev: Evidence, how: str, task: int) -> tuple[list[str], int | None]:
    """The trial the stop landed on (from the first run of the task that Slurm signalled):
    recorded as interrupted, the last one its run started, resumed by a later trial of its
    slot from the epoch after its last. Returns the failures and the trial."""
    what = f"{how} (task {task})"
    run = next((r for r in ev.outputs[task] if r.stop_line is not None), None)
    if run is None:
        return [f"{what}: no '*** JOB ... CANCELLED AT' line from Slurm in its output"], None
    if not run.open_at_stop and any(NOT_CREATED in line for line in run.lines):
        return between_trials(ev, run, what)
    if len(run.open_at_stop) != 1:
        return [f"{what}: trials in training at the stop: {run.open_at_stop}, not one"], None
    number = run.open_at_stop[0]
    what = f"{how} (task {task}, trial {number})"
    failures = []
    if run.started_after_stop:
        failures.append(f"{what}: its run started trial(s) {run.started_after_stop} after it")
    trial = ev.trial(number)
    if trial is None or trial.state != TrialState.FAIL or not trial.user_attrs.get("interrupted"):
        attrs = {} if trial is None else trial.user_attrs
        failures.append(
            f"{what}: recorded {trial and trial.state.name}, interrupted="
            f"{attrs.get('interrupted', False)}, error={attrs.get('error')!r}; "
            "expected FAIL with interrupted=True"
        )
    log = epoch_log(ev.outputs)
    # The slot comes from the trial's "started (slot N)" line: a stop may land before
    # the trial's first epoch line (Slurm's time-limit signal comes up to 30 s after the
    # cut), and then there is no checkpoint: its slot must start again at epoch 1.
    slot = run.slots[number]
    last = max((e for _, e, t, _ in log if t == number), default=0)
    later = sorted({t for s, _, t, _ in log if s == slot and t > number})
    if not later:
        failures.append(f"{what}: no later trial of its slot {slot} trained an epoch")
    elif (first := min(e for _, e, t, _ in log if t == later[0])) != last + 1:
        expected = f"the checkpoint of epoch {last}" if last else "no checkpoint yet"
        failures.append(
            f"{what}: slot {slot} went on in trial {later[0]} at epoch {first}, "
            f"expected {last + 1} ({expected})"
        )
    return failures, number


def between_trials(ev: Evidence, run: Run, what: str) -> tuple[list[str], int | None]:
    """The stop landed between two trials (a rare moment, but a real one): the trial
    Optuna had just created is recorded as interrupted with no slot (none was bound, so
    there is no checkpoint to resume and no slot to free), and the run starts nothing
    more. Returns the failures and that trial."""
    started = {t for runs in ev.outputs.values() for r in runs for t in r.slots}
    unbound = [
        t.number
        for t in ev.trials
        if t.user_attrs.get("interrupted") and "start" not in t.user_attrs
        and t.number not in started
    ]  # fmt: skip
    failures = []
    if len(unbound) != 1:
        failures.append(f"{what}: interrupted trials without a slot {unbound}, expected one")
    if run.started_after_stop:
        failures.append(f"{what}: its run started trial(s) {run.started_after_stop} after it")
    return failures, (unbound[0] if len(unbound) == 1 else None)


def sacct_checks(ev: Evidence, stops: Stops) -> list[str]:
    records = task_records(ev.sacct)
    if sorted(records) != list(range(TASKS)):
        return [f"sacct has records of tasks {sorted(records)}, expected 0..{TASKS - 1}"]
    failures = []
    for how, task in (("time limit", stops.limit), ("scancel --batch", stops.term)):
        last = records[task][-1]  # type: ignore[index]
        # hpsearch exits 143 after a SIGTERM stop; sacct (22.05) prints an exit status
        # modulo 128, so 15:0. Killed by the signal it would be 0:15; timed out, TIMEOUT.
        if (last["State"], last["ExitCode"]) != ("FAILED", "15:0"):
            failures.append(
                f"{how} (task {task}): sacct {last['State']} {last['ExitCode']}, expected "
                "FAILED 15:0 (exit status 143: stopped by SIGTERM)"
            )
    states = [r["State"] for r in records[stops.requeue]]  # type: ignore[index]
    if len(states) < 2 or states[0] != "REQUEUED" or states[-1] != "COMPLETED":
        failures.append(
            f"requeue (task {stops.requeue}): sacct runs {states}, expected REQUEUED, then "
            "COMPLETED (it came back and finished the study)"
        )
    killed = [f"{r['JobID']} {r['ExitCode']}" for r in ev.sacct if r["ExitCode"].endswith(":9")]
    if killed:
        failures.append(f"ended by SIGKILL (the stop outlasted KillWait): {killed}")
    return failures


def study_checks(ev: Evidence, name: str, stopped: set[int]) -> list[str]:
    failures = []
    try:
        assert_every_slot_once(PG_URL, name, SLOTS)
    except AssertionError as error:
        failures.append(f"every slot exactly once: {str(error).splitlines()[0]}")
    live = [t.number for t in ev.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    if live:
        failures.append(f"trials left RUNNING or WAITING: {live}")
    interrupted = {t.number for t in ev.trials if t.user_attrs.get("interrupted")}
    if interrupted != stopped:
        failures.append(f"interrupted trials {sorted(interrupted)}, expected {sorted(stopped)}")
    by_slot: dict[int, list[int]] = collections.defaultdict(list)
    for slot, epoch, _, _ in epoch_log(ev.outputs):
        by_slot[slot].append(epoch)
    for slot in sorted(set(range(SLOTS)) | set(by_slot)):
        if sorted(by_slot[slot]) != list(range(1, EPOCHS + 1)):
            failures.append(f"slot {slot}: epochs {sorted(by_slot[slot])}, expected 1..{EPOCHS}")
    # as every view shows them: a trial a stop ended is "interrupted", not "fail"
    counts = collections.Counter(shown_state(t).lower() for t in ev.trials)
    status = ev.status
    if (
        status.get("finished") != SLOTS
        or status.get("remaining") != 0
        or status.get("running") != 0
        or status.get("states") != dict(counts)
    ):
        failures.append(f"hpsearch status {json.dumps(status)[:300]}; storage {dict(counts)}")
    return failures


def run_checks(ev: Evidence, stops: Stops) -> list[str]:
    failures = []
    runs = ev.outputs[stops.requeue]  # type: ignore[index]
    if len(runs) != 2 or runs[-1].done_before is None or runs[-1].stop_line is not None:
        failures.append(
            f"requeue (task {stops.requeue}): its output holds {len(runs)} run(s), expected 2: "
            "the one Slurm stopped, then the one that joined the study again"
        )
    for task, task_runs in ev.outputs.items():
        lines = [line for run in task_runs for line in run.lines]
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
        for i in starts:
            # what came before it, and the exception: the first unindented line after it
            raised = next((x for x in lines[i + 1 :] if not x.startswith(" ")), "?")
            before = lines[i - 1] if i else ""
            failures.append(f"task {task}: a traceback in its output: {before} ... {raised}")
    if ev.leftovers:
        failures.append(f"processes of the job outlived it: {ev.leftovers}")
    return failures


def all_checks(ev: Evidence, stops: Stops, name: str) -> list[str]:
    failures, stopped = [], set()
    for how, task in (
        ("scontrol requeue", stops.requeue),
        ("scancel --batch --signal=TERM", stops.term),
        ("time limit", stops.limit),
    ):
        found, trial = stop_checks(ev, how, task)  # type: ignore[arg-type]
        failures += found
        stopped |= {trial} if trial is not None else set()
    return [
        *failures,
        *sacct_checks(ev, stops),
        *study_checks(ev, name, stopped),
        *run_checks(ev, stops),
    ]


# ---------------------------------------------------------------- the test


def test_launch_file_on_a_real_cluster(tmp_path: Path, slurm_env: dict[str, str]) -> None:
    require_postgres()
    name = f"slurm{uuid.uuid4().hex[:8]}"
    env = job_environment(tmp_path, slurm_env)
    (tmp_path / "study.toml").write_text(STUDY)
    make_data(tmp_path, env)
    script = edited_sbatch(tmp_path, name)
    started = time.monotonic()
    submit = ["sbatch", "--parsable", str(script)]
    out = subprocess.run(submit, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    stops = Stops(job=out.stdout.strip().split(";")[0], folder=tmp_path)
    failures: list[str] = []
    try:
        drive(env, stops, started)
    except NotSeen as error:
        failures.append(str(error))
    finally:
        if live_tasks(env, stops.job):
            slurm(env, "scancel", stops.job, check=False)
            wait_for("the cancelled array's end", 120, lambda: not live_tasks(env, stops.job))
        evidence = gather(env, stops, name)
        report = describe(evidence, stops, time.monotonic() - started)
        (tmp_path / "slurm-evidence.txt").write_text(report)
        print(report)
        for line in evidence.leftovers:
            os.kill(int(line.split()[0]), 9)
        # The checkpoints and wandb's files (some 800 MB); the logs and the evidence stay.
        for folder in ("artifacts", "node-tmp"):
            shutil.rmtree(tmp_path / folder, ignore_errors=True)
    failures = failures or all_checks(evidence, stops, name)
    assert not failures, "\n".join([*failures, f"evidence: {tmp_path / 'slurm-evidence.txt'}"])
