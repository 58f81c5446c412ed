"""Orchestration overhead: hpsearch's exactly-once machinery against plain Optuna.

1. 200 no-op trials, one process, SQLite: ``hpsearch run`` (stand-in trainer that trains
   nothing, one epoch per trial) against ``study.optimize`` with a no-op objective that
   reports one epoch too. Both are timed inside the process, from the first trial to
   the last, so Python start-up and imports do not count.
2. 8 parallel worker processes × 100 trials on one SQLite file: wall time, lock errors,
   trials lost or duplicated.

    python benchmarks/orchestration_overhead.py [--trials 200] [--workers 8] [--per-worker 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

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
"""

PLAIN = """
import sys, time, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
kw = dict(heartbeat_interval=10, grace_period=40) if sys.argv[3] == "1" else {}
storage = optuna.storages.RDBStorage(sys.argv[1], **kw)
study = optuna.create_study(study_name="plain", storage=storage, direction="maximize",
                            pruner=optuna.pruners.MedianPruner())
def objective(trial):
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_float("momentum", 0.0, 0.95)
    trial.report(lr, 1)
    if trial.should_prune():
        raise optuna.TrialPruned()
    return lr
start = time.perf_counter()
study.optimize(objective, n_trials=int(sys.argv[2]))
print(time.perf_counter() - start)
"""


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STAND_IN_TRAINER="tests.hpsearch.fake_trainer",
        FAKE_TRAINER_EPOCH_S="0",
        PYTHONPATH=str(ROOT),
    )
    return env


def hpsearch_run(tmp: Path, n: int, workers: int) -> dict:
    study = tmp / f"bench{n}x{workers}.toml"
    study.write_text(STUDY.format(n=n))
    db = tmp / f"h{n}x{workers}.db"
    cmd = [
        sys.executable,
        "-m",
        "tests.hpsearch.stand_in_cli",
        "run",
        "--study",
        str(study),
        "--storage",
        f"sqlite:///{db}",
        "--data",
        str(tmp),
        "--workdir",
        str(tmp / "w"),
        "--workers",
        str(workers),
        "--wandb",
        "off",
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, env=_env(tmp), cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(out.stderr[-2000:])
    import optuna

    trials = optuna.load_study(study_name=study.stem, storage=f"sqlite:///{db}").trials
    stamps = sorted(t.datetime_start for t in trials) + sorted(
        t.datetime_complete for t in trials if t.datetime_complete
    )
    loop = (max(stamps) - min(stamps)).total_seconds()
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    slots = [t.user_attrs.get("slot") for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    text = (out.stdout + out.stderr).lower()
    return {
        "wall_s": round(wall, 2),
        "trial_loop_s": round(loop, 2),
        "states": states,
        "distinct_slots": len(set(slots)),
        "duplicated_slots": len(slots) - len(set(slots)),
        "lock_errors": text.count("database is locked"),
    }


def plain_optuna(tmp: Path, n: int, heartbeat: bool) -> float:
    """Seconds of ``study.optimize`` for ``n`` no-op trials (with or without heartbeats)."""
    db = tmp / f"plain{int(heartbeat)}.db"
    out = subprocess.run(
        [sys.executable, "-c", PLAIN, f"sqlite:///{db}", str(n), str(int(heartbeat))],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--per-worker", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plain_hb = plain_optuna(tmp, args.trials, heartbeat=True)
        plain = plain_optuna(tmp, args.trials, heartbeat=False)
        ours = hpsearch_run(tmp, args.trials, 1)
        print(
            f"{args.trials} no-op trials, 1 process, SQLite: plain optuna {plain:.2f} s "
            f"(with heartbeats, as hpsearch runs: {plain_hb:.2f} s); hpsearch "
            f"{ours['trial_loop_s']:.2f} s (whole command {ours['wall_s']:.2f} s) -> "
            f"{ours['trial_loop_s'] / plain:.2f}x plain, "
            f"{ours['trial_loop_s'] / plain_hb:.2f}x plain with heartbeats",
            flush=True,
        )
        par = hpsearch_run(tmp, args.workers * args.per_worker, args.workers)
        print(
            f"{args.workers} workers x {args.per_worker} trials, SQLite: "
            f"wall {par['wall_s']:.1f} s, states {par['states']}, "
            f"duplicated {par['duplicated_slots']}, lock errors {par['lock_errors']}"
        )
        record = {
            "plain_s": plain,
            "plain_heartbeat_s": plain_hb,
            "single": ours,
            "parallel": par,
            "load_average": os.getloadavg(),
        }
        print(json.dumps(record))


if __name__ == "__main__":
    main()
