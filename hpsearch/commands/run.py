"""``hpsearch run``: run (or resume) a study with N workers on one storage."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.paths import add_artifacts_option

if TYPE_CHECKING:
    import optuna

    from hpsearch.confirm import ConfirmRun
    from hpsearch.dataprep import PreparedData
    from hpsearch.launch import LaunchResult
    from hpsearch.paths import Workdir
    from hpsearch.plan import DevicePlan
    from hpsearch.spec import StudySpec
    from hpsearch.trainer_api import TrainerAPI
    from hpsearch.worker import WorkerContext


#: Shown at the end of ``hpsearch run --help``.
EXAMPLES = """\
examples:
  hpsearch run --study grid --n-trials 2     # two demo trials now; the same command goes on
  hpsearch run --study tpe --data ~/data/xray-data --scale modest --devices 0,1
  hpsearch run --study tpe --data ~/data/xray-data --name tpe-full --from-study tpe
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--study",
        required=True,
        metavar="FILE",
        help="the study FILE to run: grid, random or tpe (shipped in studies/) or a path to a "
        ".toml; the study it makes in the storage takes the file's name (or --name), which "
        "status, best and report then take as their --study",
    )
    parser.add_argument("--name", help="study name in the storage (default: the file's name)")
    parser.add_argument(
        "--storage",
        help="sqlite:///FILE or postgresql://user@host/db "
        "(default: $HPSEARCH_STORAGE, else sqlite:///hpsearch.db)",
    )
    parser.add_argument(
        "--data", help="dataset folder (real data, full scale); default: synthetic demo data"
    )
    parser.add_argument(
        "--scale",
        help="a scale the study file defines (default: demo without --data, full with it)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="replace a fixed or scale value, e.g. --set epochs=10 --set pretrained=false "
        "(repeatable; recorded in the study)",
    )
    parser.add_argument(
        "--from-study",
        metavar="NAME",
        help="copy the completed trials of study NAME (same storage, or --from-storage) into "
        "this random or TPE study before it starts, as prior knowledge for its sampler; "
        "copied trials show as 'copied' and are never this study's best",
    )
    parser.add_argument(
        "--from-storage",
        metavar="URL",
        help="the storage holding --from-study's study (default: this study's storage)",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="give trials that failed on every attempt their attempts back, and run them",
    )
    parser.add_argument("--workers", type=int, help="worker processes (default: one per GPU, or 1)")
    parser.add_argument("--devices", help="GPU indices to use, e.g. 0,1 (one worker each)")
    parser.add_argument("--n-trials", type=int, help="start at most N trials in this run")
    parser.add_argument("--timeout", type=float, help="start no new trial after S seconds")
    parser.add_argument("--seed", type=int, help="override the study file's seed")
    parser.add_argument(
        "--workdir",
        help="this machine's folder for caches, wandb, and checkpoints and artifacts unless "
        "--artifacts is given (default: ./hpsearch-work)",
    )
    add_artifacts_option(parser)
    parser.add_argument(
        "--wandb",
        choices=("off", "offline", "online"),
        help="wandb logging (default: online if WANDB_API_KEY is set, else offline)",
    )
    parser.add_argument(
        "--heartbeat",
        type=int,
        metavar="S",
        help="seconds between a running trial's heartbeats (default 10); a trial silent "
        "for 4 heartbeats is taken for dead and resumed by another worker",
    )


def run(args: argparse.Namespace) -> int:
    """Parse, load the study, prepare the data, launch the workers, summarise."""
    import optuna

    from hpsearch.dataprep import prepare_data
    from hpsearch.paths import Workdir, safe_name
    from hpsearch.plan import plan_devices
    from hpsearch.preflight import check_setup
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study import build_record, create_or_load, spec_for_existing
    from hpsearch.trainer_api import default_trainer
    from hpsearch.warmstart import check_can_warm_start, copy_completed_trials, open_source

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _check_flags(args)
    spec, scale = _load_spec(args)
    name = safe_name(args.name or spec.name)
    url = resolve_storage_url(args.storage)
    workdir = Workdir.resolve(args.workdir, args.artifacts).make()
    plan = plan_devices(args.workers, args.devices)
    trainer = getattr(args, "trainer", None) or default_trainer()
    # Inputs are checked before the storage is written: a server is opened now (an
    # unreachable one fails before the data is prepared), a SQLite file once it has loaded.
    storage = _open_server_storage(url)
    if args.from_study:
        check_can_warm_start(spec)
    check_setup(spec, scale, workdir)
    data = prepare_data(spec, scale, args.data, workdir, trainer)
    storage = storage or open_storage(url)
    spec = spec_for_existing(name, storage, spec, scale)
    if spec.grid_every_point:
        print(
            f"study {name!r} was made with a slot for every grid point, also those that "
            "train like another: it keeps them"
        )
    record = build_record(spec, scale, data.record(), str(workdir.root))
    source = None
    if args.from_study:  # found (or refused) before this study is created
        source, label = open_source(
            args.from_study, storage, args.from_storage, target=name, target_url=url
        )
    study = create_or_load(name, storage, spec, record)
    if source is not None:
        print(copy_completed_trials(source, study, storage, spec, scale, label).describe())
    return run_workers(args, study, storage, url, spec, scale, data, workdir, trainer, plan)


def run_workers(
    args: argparse.Namespace,
    study: optuna.Study,
    storage: Any,
    url: str,
    spec: StudySpec,
    scale: str,
    data: PreparedData,
    workdir: Workdir,
    trainer: TrainerAPI,
    plan: DevicePlan,
    runs: tuple[ConfirmRun, ...] = (),
) -> int:
    """Start the workers on ``study`` (or on the fixed ``runs`` of a confirmation), show
    their progress, and summarise; the exit status. Shared by ``run`` and ``confirm``."""
    from hpsearch.launch import launch
    from hpsearch.progress import Progress
    from hpsearch.storage import redact

    total = len(runs) if runs else spec.budget(scale)
    if getattr(args, "retry_failed", False):
        _retry_failed(study, storage, total)
    done_before = _finished_slots(study, storage, total)

    plan = _fit_workers(plan, study, storage, total, args.n_trials, data)
    progress = Progress(total, spec.metric, spec.direction, done_before=done_before)
    what = "confirmation of" if runs else f"{spec.sampler}, pruner {spec.pruner.kind},"
    skipped = "" if runs else spec.grid_skipped(scale)
    progress.message(
        f"study {study.study_name!r} ({what} {scale} scale) "
        f"on {redact(url)}: {total} trials in all{f' ({skipped})' if skipped else ''}, "
        f"{done_before} done before; {data.describe()}; {plan.describe()}"
    )
    contexts = _worker_contexts(
        plan,
        args,
        storage_url=url,
        study_name=study.study_name,
        spec=spec,
        scale=scale,
        data=data.config,
        workdir=workdir.root,
        artifacts=workdir.shared,
        trainer=trainer,
        deadline=_deadline(args.timeout or spec.timeout_s),
        val_size=data.counts.get("val", 0),
        follow_stop_rule=args.n_trials is None,
        runs=runs,
    )
    storage.engine.dispose()  # workers connect themselves; idle ones here only cost slots
    try:
        result = launch(contexts, args.n_trials, progress.handle)
    finally:
        progress.close()
    _say_if_timed_out(contexts[0].deadline, study, storage, total, result)
    return _summarise(study, storage, spec.metric, study.study_name, contexts[0], result)


def _deadline(timeout_s: float | None) -> float | None:
    """Wall-clock time after which no new trial starts."""
    return time.time() + timeout_s if timeout_s else None


def _check_flags(args: argparse.Namespace) -> None:
    """The flags argparse cannot check alone, before anything is read or written."""
    from trainer.errors import UserError

    if getattr(args, "from_storage", None) and not getattr(args, "from_study", None):
        raise UserError("--from-storage names where --from-study's study is: give --from-study")
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be >= 1")
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError("--n-trials must be >= 1")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout must be > 0 (a number of seconds), not {args.timeout}")


def _fit_workers(
    plan: DevicePlan,
    study: optuna.Study,
    storage: Any,
    total: int,
    n_trials: int | None,
    data: PreparedData,
) -> DevicePlan:
    """No more workers than the machine holds (cores, memory measured) or trials left;
    one line says so when that is fewer than planned."""
    from hpsearch.plan import fit_to_machine, machine_capacity

    left = _open_slots(study, storage, total)
    if n_trials is not None:
        left = min(left, n_trials)
    # A worker holds the training and validation images, one byte per pixel.
    images = data.counts.get("train", 0) + data.counts.get("val", 0)
    capacity = machine_capacity(images * data.config.image_size**2)
    fitted, note = fit_to_machine(plan, left, capacity)
    if note:
        print(f"hpsearch run: {note}", file=sys.stderr)
    return fitted


def _worker_contexts(
    plan: DevicePlan, args: argparse.Namespace, **fields: Any
) -> list[WorkerContext]:
    """One context per worker of ``plan``; ``fields`` are those all workers share."""
    from hpsearch.storage import Heartbeat
    from hpsearch.worker import WorkerContext

    heartbeat = Heartbeat(interval_s=args.heartbeat) if args.heartbeat else Heartbeat()
    wandb_mode = _wandb_mode(args.wandb)
    if wandb_mode != "off":
        _wandb_without_home(fields["workdir"])
    base = WorkerContext(
        index=0,
        heartbeat=heartbeat,
        device=plan.device,
        threads=None if plan.gpus else plan.threads,
        wandb_mode=wandb_mode,
        **fields,
    )
    gpus = plan.gpus or (None,) * plan.workers
    return [dataclasses.replace(base, index=i, cuda_visible=gpu) for i, gpu in enumerate(gpus)]


def _wandb_without_home(workdir: Any) -> None:
    """Without $HOME (some schedulers' jobs), wandb finds no folder for its cache and logs
    and prints an error on a run that succeeds: give it folders in the workdir. The
    worker processes inherit them."""
    import os

    if os.environ.get("HOME") or os.environ.get("XDG_CACHE_HOME"):
        return
    for name, sub in (("CACHE", "cache"), ("CONFIG", "config"), ("DATA", "data")):
        os.environ.setdefault(f"WANDB_{name}_DIR", str(Path(workdir) / "wandb" / sub))


def _say_if_timed_out(
    deadline: float | None, study: optuna.Study, storage: Any, total: int, result: LaunchResult
) -> None:
    """One line when the time limit, not the end of the study, stopped the run."""
    if deadline is None or time.time() < deadline or result.interrupted:
        return
    left = _open_slots(study, storage, total)
    if left:
        print(
            f"hpsearch run: time limit reached (--timeout or the study's timeout_s): no trial "
            f"started after it; {left} trial(s) left: run the same command again to go on",
            file=sys.stderr,
        )


def _load_spec(args: argparse.Namespace) -> tuple[StudySpec, str]:
    """The study file with ``--seed`` and ``--set`` applied, and the scale to run."""
    from hpsearch.spec import find_study_file, load_study_file

    spec = load_study_file(find_study_file(args.study))
    scale = args.scale or ("full" if args.data else "demo")
    spec.scale(scale)  # an unknown scale is one line listing those defined
    if args.seed is not None:
        spec = spec.with_seed(args.seed)
    if args.overrides:
        spec = spec.with_overrides(args.overrides, scale)
    return spec, scale


def _retry_failed(study: optuna.Study, storage: Any, total: int) -> None:
    from hpsearch.slots import SlotBoard

    count = SlotBoard(study, storage, total).retry_failed()
    print(f"--retry-failed: {count} trial(s) that had failed on every attempt will run again")


def _open_server_storage(url: str) -> Any:
    """The storage when it is a database server; None for SQLite, after checking its folder
    (the file itself is created only once the data has loaded)."""
    from sqlalchemy.engine import make_url

    from hpsearch.storage import check_sqlite_file, normalize_url, open_storage

    normalized = normalize_url(url)
    if make_url(normalized).get_backend_name() == "sqlite":
        check_sqlite_file(normalized)
        return None
    return open_storage(url)


def _summarise(
    study: optuna.Study,
    storage: Any,
    metric: str,
    name: str,
    ctx: WorkerContext,
    result: LaunchResult,
) -> int:
    """The end-of-run table, the wandb study table, and the exit status."""
    from hpsearch.summary import print_summary
    from trainer.errors import UserError

    print_summary(study, metric, name)
    if ctx.wandb_mode != "off":
        from hpsearch.paths import Workdir
        from hpsearch.tracking import report_wandb_runs

        report_wandb_runs(study, ctx.wandb_mode, Workdir(ctx.workdir).wandb)
    if result.interrupted:
        print("interrupted: completed trials are saved; run the same command again to resume")
        return 128 + result.stop_signal
    if result.errors:
        raise UserError(result.errors[0])
    if result.died:
        return _report_deaths(study, storage, ctx.n_slots, result.died)
    return _report_exhausted(study, storage)


def _report_exhausted(study: optuna.Study, storage: Any) -> int:
    """Exit status 1, and how to retry, when trials failed on every attempt."""
    from hpsearch.slots import MAX_ATTEMPTS, exhausted_slots

    slots = exhausted_slots(study, storage)
    if not slots:
        return 0
    print(
        f"hpsearch run: {len(slots)} trial(s) failed on all {MAX_ATTEMPTS} attempts "
        f"(slot(s) {', '.join(map(str, slots))}; `hpsearch status` shows their errors): "
        "the study is not done. Fix the cause, then run the same command with --retry-failed",
        file=sys.stderr,
    )
    return 1


def _report_deaths(
    study: optuna.Study, storage: Any, total: int, died: list[tuple[int, int | None]]
) -> int:
    left = _open_slots(study, storage, total)
    codes = ", ".join(f"worker {i}: exit code {code}" for i, code in died)
    then = (
        f"{left} trial(s) left: run the same command again to finish them"
        if left
        else "their trials were run again by the others"
    )
    print(f"hpsearch run: {len(died)} worker process(es) died ({codes}); {then}", file=sys.stderr)
    return 1 if left else 0


def _wandb_mode(flag: str | None) -> str:
    from hpsearch.tracking import resolve_wandb_mode

    return resolve_wandb_mode(flag)


def _finished_slots(study: optuna.Study, storage: Any, total: int) -> int:
    from hpsearch.slots import DONE, SlotBoard

    return SlotBoard(study, storage, total).counts()[DONE]


def _open_slots(study: optuna.Study, storage: Any, total: int) -> int:
    """Slots that a later run would still train (not done, attempts not used up)."""
    from hpsearch.slots import DONE, FAILED, MAX_ATTEMPTS, SlotBoard

    rows = SlotBoard(study, storage, total).rows()
    closed = sum(
        r.status == DONE or (r.status == FAILED and r.attempts >= MAX_ATTEMPTS) for r in rows
    )
    return total - closed
