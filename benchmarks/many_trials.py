"""Studies of many trials on PostgreSQL: hpsearch against plain Optuna, and the read commands.

1. ``hpsearch run`` of ``--trials`` no-op trials (the stand-in trainer, one epoch each,
   random sampler, heartbeats every 10 s) with ``--workers`` worker processes, on a fresh
   PostgreSQL database made beside ``--storage-url``'s and dropped afterwards.
2. Plain Optuna on another fresh database: ``--workers`` processes, each running
   ``study.optimize`` with a no-op objective that suggests the same two parameters and
   reports one epoch, heartbeats on as hpsearch has them (10 s, grace 40 s).
3. On hpsearch's finished study: ``status``, ``status --json``, ``best``, ``best --json``,
   ``report`` (each a fresh process, timed whole), and the API responses the dashboard's
   first pages load (the study list, the study's detail), timed on a fresh server.
4. The live view (``hpsearch.run.progress``): one refresh of its table with 100 finished
   trials and with ``--trials`` of them.

For each run: trials per second over the trial loop (first trial started to last one
finished, so process start-up does not count); the per-trial time at trial ~100 and at
the study's end, from windows of 200 finished trials (wall seconds per trial, times the
workers: how long one worker takes per trial; and CPU seconds per trial of the run's
processes and their PostgreSQL backends, which a busy machine does not inflate); the
connections the database held (``pg_stat_activity``, sampled every 0.25 s: peak in all,
peak of one process); trials lost or duplicated. Load averages at start and end.

    python benchmarks/many_trials.py [--trials 10000] [--workers 32]
        [--storage-url postgresql://postgres@127.0.0.1:5432/test] [--skip-plain]
        [--skip-hpsearch] [--profile DIR] [--json FILE]

``--profile DIR`` runs each read command once more under cProfile, after its timed run,
and writes the profile there (``python -m pstats``).
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the checkout's packages come first
    sys.path.insert(0, str(ROOT))

STUDY_NAME = "many"

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
{stop}"""

#: A stop rule that never ends the run early (its patience is the whole budget), so that
#: each trial pays for checking it, as a study with a stop rule does.
STOP_RULE = """[stop]
patience = {n}
"""

PLAIN = """
import os, sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, n = sys.argv[1], int(sys.argv[2])
storage = optuna.storages.RDBStorage(
    url, heartbeat_interval=10, grace_period=40,
    engine_kwargs={"connect_args": {"application_name": f"plain {os.getpid()}"}},
)
study = optuna.load_study(study_name="plain", storage=storage,
                          sampler=optuna.samplers.RandomSampler(seed=os.getpid()),
                          pruner=optuna.pruners.NopPruner())
def objective(trial):
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    trial.suggest_float("momentum", 0.0, 0.95)
    trial.report(lr, 1)
    if trial.should_prune():
        raise optuna.TrialPruned()
    return lr
study.optimize(objective, n_trials=n)
"""

#: Finished trials per window of the per-trial figures, and where the windows lie.
WINDOW = 200
EARLY_AT = 100
LATE_BEFORE_END = 100


# -- the database ------------------------------------------------------------------------
def _server_conn(server_url: str) -> Any:
    import psycopg

    return psycopg.connect(_psycopg_url(server_url), autocommit=True, connect_timeout=10)


def _psycopg_url(url: str) -> str:
    """A libpq URL from an SQLAlchemy one (``postgresql+psycopg://`` -> ``postgresql://``)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else url


def _database_url(server_url: str, name: str) -> str:
    return server_url.rsplit("/", 1)[0] + "/" + name


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str, keep: bool = False) -> Iterator[tuple[str, str]]:
    """A new database beside the server URL's (its name and URL), dropped at the end
    unless ``keep`` (then its URL is printed, for measuring the commands again)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with _server_conn(server_url) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield name, _database_url(server_url, name)
    finally:
        if keep:
            from hpsearch.storage.urls import redact

            kept = redact(_database_url(server_url, name))  # no password on the screen
            print(f"kept: {kept} (DROP DATABASE {name} when done)")
        else:
            with _server_conn(server_url) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- watching a run ----------------------------------------------------------------------
def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


class Watcher:
    """Samples, every ``period_s``: the database's connections (in all and per process)
    and the CPU seconds of the watched processes and the database's backends."""

    def __init__(self, server_url: str, database: str, period_s: float = 0.25) -> None:
        self.server_url, self.database, self.period_s = server_url, database, period_s
        self.roots: list[int] = []
        self.samples: list[tuple[float, float]] = []  # (time, CPU seconds so far)
        self.database_cpu_s = 0.0
        """CPU seconds of the database's backends (the rest is the watched processes')."""
        self.peak_connections = 0
        self.peak_per_process = 0
        self.sessions: int | None = None
        self.transactions: int | None = None
        """Transactions the database committed or rolled back (its statistics)."""
        self._cpu: dict[int, float] = {}  # pid -> the last CPU seconds seen
        self._backends: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        query = (
            "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s "
            "AND pid <> pg_backend_pid()"
        )
        with _server_conn(self.server_url) as conn:
            while not self._stop.is_set():
                rows = conn.execute(query, (self.database,)).fetchall()
                self.peak_connections = max(self.peak_connections, len(rows))
                per: dict[str, int] = {}
                for _, name in rows:
                    if name:
                        per[name] = per.get(name, 0) + 1
                self.peak_per_process = max([self.peak_per_process, *per.values()])
                backends = {int(pid) for pid, _ in rows}
                ours: set[int] = set()
                for root in list(self.roots):
                    ours |= _descendants(root)
                for pid in backends | ours:
                    seconds = _cpu_seconds(pid)
                    if seconds is not None:
                        self._cpu[pid] = seconds
                self._backends |= backends
                self.database_cpu_s = sum(self._cpu[p] for p in self._backends if p in self._cpu)
                self.samples.append((time.time(), sum(self._cpu.values())))
                self._stop.wait(self.period_s)
            # Connections opened to the database so far (PostgreSQL 14 and later).
            with contextlib.suppress(Exception):
                query = (
                    "SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database "
                    "WHERE datname = %s"
                )
                # The statistics collector reports a backend's counts when it goes idle;
                # a moment's wait lets the last ones in.
                time.sleep(1.0)
                conn.execute("SELECT pg_stat_clear_snapshot()")
                self.sessions, self.transactions = conn.execute(query, (self.database,)).fetchone()

    def cpu_at(self, when: float) -> float:
        """CPU seconds so far at ``when``, interpolated between samples."""
        samples = self.samples
        if not samples:
            return 0.0
        k = bisect.bisect_left(samples, (when, -1.0))
        if k == 0:
            return samples[0][1]
        if k == len(samples):
            return samples[-1][1]
        (t0, c0), (t1, c1) = samples[k - 1], samples[k]
        return c0 + (c1 - c0) * (when - t0) / max(t1 - t0, 1e-9)


# -- figures from the trials' stamps -----------------------------------------------------
def read_stamps(url: str, study: str) -> list[dict[str, Any]]:
    """Every trial of ``study``: number, state, start and end stamps (seconds), slot."""
    query = """
        SELECT t.number, t.state, t.datetime_start, t.datetime_complete,
               (SELECT a.value_json FROM trial_user_attributes a
                 WHERE a.trial_id = t.trial_id AND a.key = 'start') AS start
          FROM trials t JOIN studies s ON s.study_id = t.study_id
         WHERE s.study_name = %s ORDER BY t.number
    """
    with _server_conn(url) as conn:
        rows = conn.execute(query, (study,)).fetchall()
    out = []
    for number, state, started, completed, start in rows:
        slot = json.loads(start).get("slot") if start else None
        out.append(
            {
                "number": number,
                "state": str(state).rsplit(".", 1)[-1],
                "start": _epoch(started),
                "end": _epoch(completed),
                "slot": slot,
            }
        )
    return out


def _epoch(stamp: dt.datetime | None) -> float | None:
    """Seconds since the epoch of a stamp as Optuna 5 stores it (naive UTC)."""
    return None if stamp is None else stamp.replace(tzinfo=dt.UTC).timestamp()


def windows(n: int) -> dict[str, tuple[int, int]]:
    """The ranges of finished trials (by the order they finished) the figures read."""
    size = min(WINDOW, max(2, n // 5))
    early = min(EARLY_AT, max(0, n // 10))
    late_end = max(early + size, n - min(LATE_BEFORE_END, n // 10))
    return {"early": (early, early + size), "late": (late_end - size, late_end)}


def figures(trials: list[dict[str, Any]], workers: int, watcher: Watcher) -> dict[str, Any]:
    """Throughput, per-trial wall and CPU in the early and late windows, exactly-once."""
    finished = sorted(t["end"] for t in trials if t["end"] is not None and t["state"] in (
        "COMPLETE", "PRUNED"))  # fmt: skip
    starts = [t["start"] for t in trials if t["start"] is not None]
    loop_s = max(finished) - min(starts) if finished and starts else float("nan")
    out: dict[str, Any] = {
        "trials": len(trials),
        "finished": len(finished),
        "states": _count(t["state"] for t in trials),
        "trial_loop_s": round(loop_s, 2),
        "trials_per_s": round(len(finished) / loop_s, 2) if loop_s > 0 else None,
    }
    for name, (lo, hi) in windows(len(finished)).items():
        if hi >= len(finished):
            continue
        t0, t1 = finished[lo], finished[hi]
        wall = (t1 - t0) / (hi - lo)
        cpu = (watcher.cpu_at(t1) - watcher.cpu_at(t0)) / (hi - lo)
        inside = [t["end"] - t["start"] for t in trials if t["end"] is not None
                  and t["start"] is not None and t0 <= t["end"] <= t1]  # fmt: skip
        out[name] = {
            "finished_trials": [lo, hi],
            "wall_s_per_trial": round(wall, 4),
            "worker_s_per_trial": round(wall * workers, 3),
            "cpu_s_per_trial": round(cpu, 4),
            "optuna_trial_s": round(statistics.mean(inside), 3) if inside else None,
        }
    if "early" in out and "late" in out:
        out["late_over_early_wall"] = round(
            out["late"]["wall_s_per_trial"] / out["early"]["wall_s_per_trial"], 2
        )
        early_cpu = out["early"]["cpu_s_per_trial"]
        out["late_over_early_cpu"] = (
            round(out["late"]["cpu_s_per_trial"] / early_cpu, 2) if early_cpu else None
        )
    total_cpu = watcher.samples[-1][1] if watcher.samples else 0.0
    out["cpu_s"] = {
        "all": round(total_cpu, 1),
        "database": round(watcher.database_cpu_s, 1),
        "per_trial": round(total_cpu / max(1, len(finished)), 4),
    }
    out["peak_connections"] = watcher.peak_connections
    out["peak_connections_one_process"] = watcher.peak_per_process
    out["connections_opened"] = watcher.sessions
    if watcher.transactions is not None:
        out["transactions_per_trial"] = round(watcher.transactions / max(1, len(finished)), 1)
    return out


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


# -- the runs ----------------------------------------------------------------------------
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STAND_IN_TRAINER="tests.hpsearch.fake_trainer",
        FAKE_TRAINER_EPOCH_S="0",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        HPSEARCH_MAX_WORKERS="256",  # oversubscribe the cores on purpose
    )
    env.pop("STAND_IN_HEARTBEAT_S", None)  # hpsearch's own heartbeat, 10 s
    return env


def cli(args: list[str], profile: Path | None = None) -> subprocess.CompletedProcess[str]:
    profiled = ["-m", "cProfile", "-o", str(profile)] if profile else []
    cmd = [sys.executable, *profiled, "-m", "tests.hpsearch.stand_in_cli", *args]
    return subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True)


def hpsearch_run(
    server_url: str,
    database: str,
    url: str,
    n: int,
    workers: int,
    tmp: Path,
    *,
    stop_rule: bool,
    commands: int,
) -> dict[str, Any]:
    """``commands`` ``hpsearch run`` commands on one study, the workers shared among them
    (as on several machines)."""
    study = tmp / f"{STUDY_NAME}.toml"
    study.write_text(STUDY.format(n=n, stop=STOP_RULE.format(n=n) if stop_rule else ""))
    shares = [workers // commands + (i < workers % commands) for i in range(commands)]
    logs = [tmp / f"run{i}.log" for i in range(commands)]
    with Watcher(server_url, database) as watcher:
        start = time.time()
        procs = []
        for share, log in zip(shares, logs, strict=True):
            cmd = [
                sys.executable, "-m", "tests.hpsearch.stand_in_cli", "run",
                "--study", str(study), "--storage", url, "--data", str(tmp),
                "--workdir", str(tmp / "w"), "--workers", str(share), "--wandb", "off",
            ]  # fmt: skip
            with log.open("w") as out:
                procs.append(
                    subprocess.Popen(
                        cmd, env=_env(), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
                    )
                )
            watcher.roots.append(procs[-1].pid)
            time.sleep(2.0)  # the first one has made the study: the others join it
        codes = [p.wait() for p in procs]
        wall = time.time() - start
    for code, log in zip(codes, logs, strict=True):
        if code != 0:
            raise SystemExit(f"hpsearch run failed ({code}):\n{log.read_text()[-3000:]}")
    trials = read_stamps(url, STUDY_NAME)
    result = figures(trials, workers, watcher)
    # A command starts fewer workers than asked where memory is short, and says so.
    started = [re.search(r"(\d+) worker\(s\)", log.read_text()) for log in logs]
    result["workers_started"] = sum(int(m[1]) for m in started if m)
    result["commands"] = commands
    slots = [t["slot"] for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    result.update(
        wall_s=round(wall, 1),
        distinct_slots=len(set(slots)),
        duplicated_slots=len(slots) - len(set(slots)),
        lost_slots=n - len(set(slots)),
    )
    return result


def plain_run(server_url: str, database: str, url: str, n: int, workers: int) -> dict[str, Any]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Made here once: 32 processes creating the schema at once would race.
    storage = optuna.storages.RDBStorage(_sqlalchemy_url(url))
    optuna.create_study(study_name="plain", storage=storage, direction="maximize")
    storage.engine.dispose()
    shares = [n // workers + (i < n % workers) for i in range(workers)]
    with Watcher(server_url, database) as watcher:
        start = time.time()
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PLAIN, _sqlalchemy_url(url), str(k)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for k in shares
        ]
        watcher.roots.extend(p.pid for p in procs)
        errors = [p.communicate()[1] for p in procs if p.wait() != 0]
        wall = time.time() - start
    if errors:
        raise SystemExit(f"plain Optuna failed:\n{errors[0][-3000:]}")
    trials = read_stamps(url, "plain")
    return {**figures(trials, workers, watcher), "wall_s": round(wall, 1)}


def _sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


# -- the read commands -------------------------------------------------------------------
def commands(url: str, tmp: Path, profile: Path | None) -> dict[str, Any]:
    """Seconds of each read command on the finished study (a fresh process each)."""
    runs = {
        "status": ["status", "--study", STUDY_NAME],
        "status --json": ["status", "--study", STUDY_NAME, "--json"],
        "best": ["best", "--study", STUDY_NAME, "--workdir", str(tmp / "w")],
        "best --json": ["best", "--study", STUDY_NAME, "--workdir", str(tmp / "w"), "--json"],
        "report": ["report", "--study", STUDY_NAME, "--out", str(tmp / "report")],
    }
    out: dict[str, Any] = {}
    for name, args in runs.items():
        start = time.perf_counter()
        done = cli([*args, "--storage", url])
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
        out[name] = {"s": round(seconds, 2), "output_bytes": len(done.stdout)}
        if profile:  # once more, under cProfile (slower), not timed
            cli([*args, "--storage", url], profile / f"{name.replace(' --', '_')}.prof")
    out["help (start-up alone)"] = {"s": _timed(lambda: cli(["status", "--help"]))}
    return out


def _timed(action: Any) -> float:
    start = time.perf_counter()
    action()
    return round(time.perf_counter() - start, 2)


def dashboard(url: str) -> dict[str, Any]:
    """Seconds of the API responses the dashboard's first pages load, on a fresh server
    (cold: the first request reads the study), then once more (warm)."""
    from hpsearch.dashboard import make_server

    out: dict[str, Any] = {}
    start = time.perf_counter()
    server = make_server(url, "127.0.0.1", 0)
    out["server start s"] = round(time.perf_counter() - start, 2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = server.url.removesuffix("/dashboard/")

    def get(path: str) -> tuple[float, bytes]:
        start = time.perf_counter()
        with urllib.request.urlopen(base + path, timeout=600) as response:
            body = response.read()
        return round(time.perf_counter() - start, 2), body

    try:
        for attempt in ("cold", "warm"):
            seconds, body = get("/api/studies")
            studies = json.loads(body)["study_summaries"]
            (summary,) = [s for s in studies if s["study_name"] == STUDY_NAME]
            out[f"study list ({attempt}) s"] = seconds
            seconds, body = get(f"/api/studies/{summary['study_id']}?after=0")
            out[f"study detail ({attempt}) s"] = seconds
            out["study detail MB"] = round(len(body) / 1e6, 1)
    finally:
        server.shutdown()
    return out


def live_view(n: int) -> dict[str, Any]:
    """Milliseconds of one redraw of the live table with 100 and with ``n`` finished trials."""
    from rich.console import Console

    from hpsearch.run.events import TrialEnded, TrialStarted
    from hpsearch.run.progress import Progress

    out: dict[str, Any] = {}
    for finished in sorted({min(100, n), n}):
        progress = Progress(n, "val_accuracy", "maximize", stream=io.StringIO(), live=False)
        for k in range(finished):
            worker = k % 32
            progress.handle(TrialStarted(worker, k, k, {"lr": 0.01, "momentum": 0.5}, 1))
            progress.handle(TrialEnded(worker, k, "complete", value=k / n))
        console = Console(file=io.StringIO(), width=160)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            console.print(progress.table())
            times.append(time.perf_counter() - start)
        out[f"refresh ms at {finished} finished"] = round(statistics.median(times) * 1000, 2)
    return out


# -- the whole benchmark -----------------------------------------------------------------
def machine() -> dict[str, Any]:
    model, flags = "?", []
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [
                    f for f in line.split(":", 1)[1].split()
                    if f == "avx2" or f.startswith(("avx512", "amx"))
                ]  # fmt: skip
    return {"cpu": model, "flags": flags, "cores": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument(
        "--storage-url",
        default=os.environ.get("HPSEARCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL database URL: each run gets a fresh database beside it",
    )
    parser.add_argument(
        "--commands",
        type=int,
        default=2,
        help="hpsearch run commands sharing the workers (default 2: one command on a "
        "23.5 GiB machine starts at most 29, as it reserves its own memory per worker)",
    )
    parser.add_argument(
        "--no-stop-rule", action="store_true", help="hpsearch's study without its [stop] rule"
    )
    parser.add_argument("--skip-plain", action="store_true", help="hpsearch only")
    parser.add_argument("--skip-hpsearch", action="store_true", help="plain Optuna only")
    parser.add_argument("--profile", type=Path, help="cProfile each read command into DIR")
    parser.add_argument(
        "--keep", action="store_true", help="keep hpsearch's database (its URL is printed)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    from hpsearch.storage.urls import redact_text

    server, n, workers = args.storage_url, args.trials, args.workers
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "machine": machine(),
        # The record may be committed: a password in --storage-url must not reach it.
        "command": redact_text(" ".join([Path(sys.executable).name, *sys.argv])),
        "trials": n,
        "workers": workers,
        "stop_rule": not args.no_stop_rule,
        "commands": args.commands,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_start": os.getloadavg(),
    }
    print(json.dumps({k: record[k] for k in ("machine", "started", "load_average_start")}))
    if not args.skip_hpsearch:
        with (
            tempfile.TemporaryDirectory() as tmp_name,
            fresh_database(server, "many_h", keep=args.keep) as db,
        ):
            tmp = Path(tmp_name)
            ours = hpsearch_run(
                server, db[0], db[1], n, workers, tmp,
                stop_rule=not args.no_stop_rule, commands=args.commands,
            )  # fmt: skip
            ours["load_average_after_run"] = os.getloadavg()
            record["hpsearch"] = ours
            _say("hpsearch", ours)
            record["commands"] = commands(db[1], tmp, args.profile)
            print(f"read commands on the {n}-trial study: {json.dumps(record['commands'])}")
            record["dashboard"] = dashboard(db[1])
            print(f"dashboard: {json.dumps(record['dashboard'])}", flush=True)
        record["live_view"] = live_view(n)
        print(f"live view: {json.dumps(record['live_view'])}", flush=True)
    if not args.skip_plain:
        with fresh_database(server, "many_p") as db:
            plain = plain_run(server, db[0], db[1], n, workers)
            plain["load_average_after_run"] = os.getloadavg()
        record["plain"] = plain
        _say("plain optuna", plain)
    if "hpsearch" in record and "plain" in record:
        ours, plain = record["hpsearch"], record["plain"]
        record["throughput_ratio_plain_over_hpsearch"] = round(
            plain["trials_per_s"] / ours["trials_per_s"], 2
        )
        print(
            f"plain/hpsearch throughput: {record['throughput_ratio_plain_over_hpsearch']}x "
            "(goal <= 1.2)"
        )
    record["load_average_end"] = os.getloadavg()
    record["ended"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(json.dumps(record))
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


def _say(name: str, r: dict[str, Any]) -> None:
    early, late = r.get("early", {}), r.get("late", {})
    print(
        f"{name}: {r['finished']} finished trials ({r['states']}) in {r['trial_loop_s']} s "
        f"-> {r['trials_per_s']} trials/s; per trial at {early.get('finished_trials')}: "
        f"{early.get('worker_s_per_trial')} worker-s, {early.get('cpu_s_per_trial')} CPU-s; "
        f"at {late.get('finished_trials')}: {late.get('worker_s_per_trial')} worker-s, "
        f"{late.get('cpu_s_per_trial')} CPU-s (late/early wall {r.get('late_over_early_wall')},"
        f" CPU {r.get('late_over_early_cpu')}); peak connections {r['peak_connections']} "
        f"(one process {r['peak_connections_one_process']}), {r['connections_opened']} opened; "
        f"{r.get('transactions_per_trial')} transactions per trial; CPU-s {r['cpu_s']}; "
        f"load {r['load_average_after_run']}"
        + (
            f"; duplicated slots {r['duplicated_slots']}, lost {r['lost_slots']}"
            if "duplicated_slots" in r
            else ""
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
