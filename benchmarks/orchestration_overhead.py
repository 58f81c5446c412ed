"""Orchestration overhead: hpsearch's exactly-once machinery against plain Optuna.

1. 200 no-op trials, one process, SQLite: ``hpsearch run`` (stand-in trainer that trains
   nothing, one epoch per trial) against ``study.optimize`` with a no-op objective that
   reports one epoch too. Both are timed inside the process, from the first trial to
   the last, so Python start-up and imports do not count.
   With ``--rounds N`` the three runs (plain with heartbeats, plain, hpsearch) take turns
   N times and the ratios are the medians over rounds, so a shared machine's changing
   load weighs on both sides alike. ``--profile FILE`` runs hpsearch once more, after
   the rounds and not counted in them, under cProfile (``python -m pstats FILE`` reads
   it), and prints where the storage writes go.
2. 8 parallel worker processes × 100 trials on one SQLite file: wall time, lock errors,
   trials lost or duplicated (``--workers 0`` skips it).

    python benchmarks/orchestration_overhead.py [--trials 200] [--rounds 1] [--workers 8]
        [--per-worker 100] [--profile FILE] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
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


def _slot(trial) -> int | None:
    """The trial's slot, as this version of hpsearch records it (or as earlier ones did)."""
    start = trial.user_attrs.get("start")
    return start.get("slot") if isinstance(start, dict) else trial.user_attrs.get("slot")


def hpsearch_run(tmp: Path, n: int, workers: int, profile: Path | None = None) -> dict:
    study = tmp / f"bench{n}x{workers}.toml"
    study.write_text(STUDY.format(n=n))
    db = tmp / f"h{n}x{workers}.db"
    db.unlink(missing_ok=True)
    profiled = ["-m", "cProfile", "-o", str(profile)] if profile else []
    cmd = [
        sys.executable,
        *profiled,
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
    slots = [_slot(t) for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
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
    db.unlink(missing_ok=True)
    out = subprocess.run(
        [sys.executable, "-c", PLAIN, f"sqlite:///{db}", str(n), str(int(heartbeat))],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


#: The RDB storage's user-attribute write, and SQLAlchemy's commit (every transaction).
WRITES = {("set_trial_user_attr", True), ("commit", True)}


def storage_writes(profile: Path) -> str:
    """Where the profiled run's time went: the whole run, user-attribute writes, commits."""
    stats = pstats.Stats(str(profile))
    total = stats.total_tt  # type: ignore[attr-defined]  # set by pstats, not in typeshed
    rows = {}
    entries = stats.stats.items()  # type: ignore[attr-defined]  # set by pstats, not in typeshed
    for (file, _, name), (_, calls, _, cumulative, _) in entries:
        if (name, "_rdb" in file or "sqlalchemy" in file) in WRITES:
            rows[name] = (
                rows.get(name, (0, 0.0))[0] + calls,
                rows.get(name, (0, 0.0))[1] + cumulative,
            )
    parts = [f"{name} {calls} calls {seconds:.1f} s" for name, (calls, seconds) in rows.items()]
    return f"profiled {total:.1f} s in all; " + "; ".join(parts)


def one_round(tmp: Path, n: int) -> dict:
    """Plain Optuna with heartbeats, without, and hpsearch, one after the other."""
    plain_hb = plain_optuna(tmp, n, heartbeat=True)
    plain = plain_optuna(tmp, n, heartbeat=False)
    ours = hpsearch_run(tmp, n, 1)
    return {
        "plain_s": plain,
        "plain_heartbeat_s": plain_hb,
        "single": ours,
        "ratio": ours["trial_loop_s"] / plain,
        "ratio_heartbeat": ours["trial_loop_s"] / plain_hb,
        "load_average": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=8, help="0: skip the parallel part")
    parser.add_argument("--per-worker", type=int, default=100)
    parser.add_argument("--profile", type=Path, help="cProfile one more hpsearch run here")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    record: dict = {"load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rounds = []
        for k in range(args.rounds):
            r = one_round(tmp, args.trials)
            rounds.append(r)
            print(
                f"round {k + 1}: {args.trials} no-op trials, 1 process, SQLite: plain optuna "
                f"{r['plain_s']:.2f} s (with heartbeats, as hpsearch runs: "
                f"{r['plain_heartbeat_s']:.2f} s); hpsearch {r['single']['trial_loop_s']:.2f} s "
                f"(whole command {r['single']['wall_s']:.2f} s) -> {r['ratio']:.2f}x plain, "
                f"{r['ratio_heartbeat']:.2f}x plain with heartbeats (load {r['load_average']:.1f})",
                flush=True,
            )
        record["rounds"] = rounds
        record["median_ratio"] = statistics.median(r["ratio"] for r in rounds)
        record["median_ratio_heartbeat"] = statistics.median(r["ratio_heartbeat"] for r in rounds)
        print(
            f"median over {args.rounds} round(s): {record['median_ratio']:.2f}x plain, "
            f"{record['median_ratio_heartbeat']:.2f}x plain with heartbeats"
        )
        if args.profile:
            hpsearch_run(tmp, args.trials, 1, args.profile)
            print(storage_writes(args.profile))
        if args.workers:
            par = hpsearch_run(tmp, args.workers * args.per_worker, args.workers)
            record["parallel"] = par
            print(
                f"{args.workers} workers x {args.per_worker} trials, SQLite: "
                f"wall {par['wall_s']:.1f} s, states {par['states']}, "
                f"duplicated {par['duplicated_slots']}, lock errors {par['lock_errors']}"
            )
    record["load_average_end"] = os.getloadavg()
    print(json.dumps(record))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
