"""Which processes of a Slurm task get which signal, and when, for each way of stopping it.

    .ci/slurm-cluster.sh up && python3 .ci/slurm_signals.py [--time-limit]

Each case submits a task shaped like deploy/slurm-array.sbatch (a bash batch script that
``exec``s a Python process, which starts one child by multiprocessing spawn, as
``hpsearch run`` starts its worker); both log every signal they receive and ignore it, so
that what Slurm does next (SIGKILL after KillWait) shows too. The output is the table
behind RELIABILITY.md's "On a Slurm cluster". ``--time-limit`` adds the time-limit case
(``--time=3 --signal=B:TERM@60``: about four minutes). Standard library only.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WATCHED = (signal.SIGTERM, signal.SIGINT, signal.SIGCONT, signal.SIGHUP, signal.SIGUSR1)
#: name: (command, seconds to watch the task after it): past KillWait (30 s) where Slurm
#: ends the task itself.
CASES = {
    "scancel --signal=TERM": (["scancel", "--signal=TERM", "{task}"], 10),
    "scancel --batch --signal=TERM": (["scancel", "--batch", "--signal=TERM", "{task}"], 10),
    "scancel --full --signal=TERM": (["scancel", "--full", "--signal=TERM", "{task}"], 10),
    "scancel": (["scancel", "{task}"], 45),
    "scontrol requeue": (["scontrol", "requeue", "{task}"], 45),
}
SCRIPT = """#!/bin/bash
#SBATCH --output={folder}/%A_%a.out
#SBATCH --cpus-per-task=1
{options}
set -euo pipefail
exec "{python}" "{me}" --probe "{log}"
"""


def log_line(log: str, role: str, what: str) -> None:
    with open(log, "a") as file:
        file.write(f"{time.time():.2f} {role} {os.getpid()} {what}\n")


def watch(log: str, role: str) -> None:
    """Log every watched signal and go on; log a heartbeat every half second."""
    for sig in WATCHED:
        signal.signal(sig, lambda signum, _: log_line(log, role, signal.Signals(signum).name))
    log_line(log, role, "started")
    while True:
        time.sleep(0.5)
        log_line(log, role, "alive")


def probe(log: str) -> None:
    child = multiprocessing.get_context("spawn").Process(target=watch, args=(log, "worker"))
    child.start()
    watch(log, "batch")


def slurm(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def task_state(task: str) -> str:
    out = slurm("squeue", "-h", "-j", task, "-o", "%T")
    return out.strip() or "ENDED"


def run_case(name: str, action: list[str], options: str, folder: Path, wait_s: float) -> None:
    log = folder / f"{len(list(folder.glob('*.log')))}.log"
    script = folder / f"{log.stem}.sbatch"
    me = Path(__file__).resolve()
    script.write_text(
        SCRIPT.format(folder=folder, options=options, python=sys.executable, me=me, log=log)
    )
    job = slurm("sbatch", "--parsable", "--array=0", str(script)).strip().split(";")[0]
    task = f"{job}_0"
    while not (log.exists() and log.read_text().count("started") >= 2):
        time.sleep(0.2)
    acted = time.time()
    if action:
        slurm(*[part.format(task=task) for part in action])
    states = []
    while time.time() - acted < wait_s and (not states or states[-1][1] != "ENDED"):
        state = task_state(job)
        if not states or states[-1][1] != state:
            states.append((time.time() - acted, state))
        time.sleep(0.5)
    watched_until = time.time()
    if states[-1][1] != "ENDED":  # still there: end it, and leave that out of the report
        slurm("scancel", "--full", "--signal=KILL", job)
        while task_state(job) != "ENDED":
            time.sleep(0.5)
    report(name, log, (acted, watched_until), states, job)


def report(name: str, log: Path, window: tuple[float, float], states: list, job: str) -> None:
    acted, until = window
    print(f"\n== {name} (task {job}_0; watched for {until - acted:.0f} s)", flush=True)
    last: dict[str, float] = {}
    for line in log.read_text().splitlines():
        stamp, role, pid, what = line.split(maxsplit=3)
        if not acted - 1 <= float(stamp) <= until:
            continue
        if what == "alive":
            last[f"{role} (pid {pid})"] = float(stamp)
        elif what != "started":
            print(f"  {float(stamp) - acted:+7.1f} s  {role} (pid {pid}) got {what}")
    for who, stamp in sorted(last.items()):
        if until - stamp > 2:
            print(f"  {stamp - acted:+7.1f} s  {who}: last alive (then killed)")
    print("  squeue: " + ", ".join(f"{t:+.0f} s {s}" for t, s in states))
    if states[-1][1] != "ENDED":
        print("  sacct: (still there at the end of the watch: the script killed it)")
        return
    fields = "JobID%14,State%22,ExitCode,Elapsed"
    for _ in range(30):  # accounting reaches slurmdbd a moment after the end
        out = slurm("sacct", "-D", "-n", "-j", job, f"--format={fields}")
        if out.strip() and "RUNNING" not in out and "PENDING" not in out:
            break
        time.sleep(1)
    print("  sacct: " + out.rstrip().replace("\n", "\n  sacct: "), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", action="store_true", help="add the time-limit case")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe)
        return
    if "SLURM_CONF" not in os.environ:
        env = subprocess.run(
            [Path(__file__).with_name("slurm-cluster.sh"), "env"], capture_output=True, text=True
        )
        if env.returncode != 0:
            sys.exit("slurm_signals: the cluster is not up (.ci/slurm-cluster.sh up)")
        os.environ["SLURM_CONF"] = env.stdout.strip().partition("=")[2]
    with tempfile.TemporaryDirectory(prefix="slurm-signals-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        for name, (action, wait_s) in CASES.items():
            run_case(name, action, "", folder, wait_s)
        if args.time_limit:
            options = "#SBATCH --time=3\n#SBATCH --signal=B:TERM@60"
            name = "time limit 3 min, --signal=B:TERM@60 (times from the start)"
            run_case(name, [], options, folder, wait_s=300)


if __name__ == "__main__":
    main()
