"""``hpsearch run``: run (or resume) a study with N workers on one storage."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--study", required=True, help="study file name (grid, random, tpe) or path"
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
    parser.add_argument("--workers", type=int, help="worker processes (default: one per GPU, or 1)")
    parser.add_argument("--devices", help="GPU indices to use, e.g. 0,1 (one worker each)")
    parser.add_argument("--n-trials", type=int, help="start at most N trials in this run")
    parser.add_argument("--timeout", type=float, help="start no new trial after S seconds")
    parser.add_argument("--seed", type=int, help="override the study file's seed")
    parser.add_argument(
        "--workdir",
        help="root for caches, checkpoints, artifacts, wandb (default: ./hpsearch-work)",
    )
    parser.add_argument(
        "--wandb",
        choices=("off", "offline", "online"),
        help="wandb logging (default: online if WANDB_API_KEY is set, else offline)",
    )


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import optuna

    from hpsearch.paths import Workdir, safe_name
    from hpsearch.spec import find_study_file, load_study_file
    from hpsearch.storage import open_storage, redact, resolve_storage_url
    from hpsearch.study import create_or_load, study_attrs
    from trainer.errors import UserError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be >= 1")
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError("--n-trials must be >= 1")
    if args.timeout is not None and args.timeout <= 0:
        raise UserError("--timeout must be > 0")
    spec_path = find_study_file(args.study)
    spec = load_study_file(spec_path)
    if args.seed is not None:
        spec = dataclasses.replace(spec, seed=args.seed)
    name = safe_name(args.name or spec.name)
    url = resolve_storage_url(args.storage)
    workdir = Workdir.resolve(args.workdir).make()
    scale = "full" if args.data else "demo"
    devices, workers, threads = _plan_devices(args)
    wandb_mode = _wandb_mode(args.wandb)
    # Every input is checked before anything is written to the storage: a database
    # server is opened now (an unreachable one fails before the data is prepared), a
    # SQLite file is created only once the data has loaded.
    storage = _open_server_storage(url)

    data_root = Path(args.data).absolute() if args.data else _demo_data(spec, workdir)
    data_config = _data_config(spec, scale, data_root, workdir)
    info = _prepare_data(data_config)
    if storage is None:
        storage = open_storage(url)
    attrs = study_attrs(
        spec,
        scale,
        {**_data_attrs(data_config), "synthetic": info["synthetic"]},
        str(workdir.root),
    )
    study = create_or_load(name, storage, spec, attrs)
    total = spec.budget(scale)
    done_before = _finished_slots(study, storage, total)

    from hpsearch.progress import Progress

    progress = Progress(total, spec.metric, spec.direction, done_before=done_before)
    what = "SYNTHETIC demo data" if info["synthetic"] else "data"
    progress.handle(
        {
            "kind": "message",
            "text": f"study {name!r} ({spec.sampler}, pruner {spec.pruner.kind}, {scale} scale) "
            f"on {redact(url)}: {total} trials in all, {done_before} done before; "
            f"{what} {data_root} ({info['counts']}); {workers} worker(s) on "
            f"{'GPU ' + ','.join(devices) if devices else f'CPU ({threads} thread(s) each)'}",
        }
    )
    spec_timeout = args.timeout or spec.timeout_s
    deadline = time.time() + spec_timeout if spec_timeout else None

    from hpsearch.worker import WorkerContext

    contexts = [
        WorkerContext(
            index=i,
            storage_url=url,
            study_name=name,
            spec_path=spec_path.absolute(),
            scale=scale,
            data=data_config,
            workdir=workdir.root,
            device="cuda" if devices else "cpu",
            cuda_visible=devices[i] if devices else None,
            threads=None if devices else threads,
            wandb_mode=wandb_mode,
            deadline=deadline,
        )
        for i in range(workers)
    ]
    if args.seed is not None:
        for ctx in contexts:
            ctx.extra["seed"] = args.seed
    interrupted, errors, died = False, [], []
    try:
        if workers == 1 and not devices:
            interrupted = _run_inline(contexts[0], args.n_trials, progress)
        else:
            interrupted, errors, died = _run_processes(contexts, args.n_trials, progress)
    finally:
        progress.close()
    _summary(study, spec.metric, name)
    if wandb_mode != "off":
        _study_table(study, wandb_mode, workdir)
    if interrupted:
        print("interrupted: completed trials are saved; run the same command again to resume")
        return 130
    if errors:
        raise UserError(errors[0])
    if died:
        left = _open_slots(study, storage, total)
        codes = ", ".join(f"worker {i}: exit code {code}" for i, code in died)
        print(
            f"hpsearch run: {len(died)} worker process(es) died ({codes}); "
            + (
                f"{left} trial(s) left: run the same command again to finish them"
                if left
                else "their trials were run again by the others"
            ),
            file=sys.stderr,
        )
        return 1 if left else 0
    return 0


def _open_server_storage(url: str) -> Any:
    """The storage when it is a database server, else None after checking the SQLite URL."""
    from sqlalchemy.engine import make_url

    from hpsearch.storage import normalize_url, open_storage, redact
    from trainer.errors import UserError

    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite":
        return open_storage(url)
    if parsed.database and parsed.database != ":memory:":
        folder = Path(parsed.database).absolute().parent
        if not folder.is_dir():
            raise UserError(f"storage {redact(url)}: folder {folder} does not exist")
    return None


def _plan_devices(args: argparse.Namespace) -> tuple[list[str], int, int]:
    """(GPU indices, workers, CPU threads per worker)."""
    from trainer.errors import UserError

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    devices: list[str] = []
    if args.devices:
        import torch

        available = torch.cuda.device_count()
        for part in args.devices.split(","):
            part = part.strip()
            if not part.isdigit():
                raise UserError(f"--devices: {part!r} is not a GPU index")
            if int(part) >= available:
                raise UserError(f"--devices: GPU {part} is not there ({available} GPU(s) visible)")
            devices.append(part)
    elif args.workers is None or args.workers >= 1:
        import torch

        if torch.cuda.is_available():
            devices = [str(i) for i in range(torch.cuda.device_count())]
    if devices:
        workers = args.workers or len(devices)
        if workers > len(devices):
            devices = [devices[i % len(devices)] for i in range(workers)]
        return devices[:workers], workers, 0
    workers = args.workers or 1
    return [], workers, max(1, cores // workers)


def _wandb_mode(flag: str | None) -> str:
    try:
        from hpsearch.tracking import resolve_wandb_mode
    except ImportError:
        return "off"
    return resolve_wandb_mode(flag)


def _demo_data(spec: Any, workdir: Any) -> Path:
    """The synthetic dataset of the study's demo scale, generated once into the workdir."""
    demo = spec.demo_values("demo")
    n, size, seed = (
        demo.get("demo_images", 2000),
        demo.get("demo_size", 128),
        demo.get("demo_seed", 0),
    )
    out = workdir.root / f"demo-data-n{n}-{size}px-seed{seed}"
    if (out / "SYNTHETIC.txt").is_file():
        return out
    from hpsearch.taskbar import progress_bar
    from trainer.demo import write_demo_dataset

    with progress_bar("synthetic demo images") as on_progress:
        write_demo_dataset(out, n=n, size=size, seed=seed, on_progress=on_progress)
    return out


def _data_config(spec: Any, scale: str, root: Path, workdir: Any) -> Any:
    from trainer.data import DataConfig

    values = spec.data_values(scale)
    return DataConfig(root=root, cache_dir=workdir.cache, **values)


def _data_attrs(config: Any) -> dict[str, Any]:
    return {
        "root": str(config.root),
        "image_size": config.image_size,
        "val_fraction": config.val_fraction,
        "test_fraction": config.test_fraction,
        "split_seed": config.split_seed,
    }


def _prepare_data(config: Any) -> dict[str, Any]:
    """Build (or find) the decoded cache once, before any worker starts."""
    from hpsearch.taskbar import progress_bar
    from hpsearch.worker import trainer_module

    with progress_bar("decoding images into the cache") as on_progress:
        data = trainer_module().load_data(config, on_progress=on_progress)
    counts = {
        "train": len(data.train_y),
        "val": len(data.val_y),
        "test": len(data.test_y),
    }
    return {"synthetic": data.synthetic, "counts": ", ".join(f"{k} {v}" for k, v in counts.items())}


def _finished_slots(study: Any, storage: Any, total: int) -> int:
    from hpsearch.slots import DONE, SlotBoard

    return SlotBoard(study, storage, total).counts()[DONE]


def _open_slots(study: Any, storage: Any, total: int) -> int:
    """Slots that a later run would still train (not done, attempts not used up)."""
    from hpsearch.slots import DONE, FAILED, MAX_ATTEMPTS, SlotBoard

    rows = SlotBoard(study, storage, total).rows()
    closed = sum(
        r.status == DONE or (r.status == FAILED and r.attempts >= MAX_ATTEMPTS) for r in rows
    )
    return total - closed


def _run_inline(ctx: Any, n_trials: int | None, progress: Any) -> bool:
    from hpsearch.worker import TrialBudget, worker_main

    try:
        worker_main(ctx, TrialBudget(n_trials), progress.handle)
    except KeyboardInterrupt:
        return True
    return False


def _child(ctx: Any, limit: int | None, shared: Any, queue: Any) -> None:
    from hpsearch.worker import TrialBudget, worker_main
    from trainer.errors import UserError

    # Ctrl-C at a terminal reaches every process of the group. Workers ignore it; the run
    # sends each one a single SIGTERM (which the worker treats like Ctrl-C) instead, so a
    # second signal never lands while a worker is recording its interrupted trial.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        worker_main(ctx, TrialBudget(limit, shared), queue.put)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except UserError as err:
        queue.put(
            {"kind": "message", "text": f"worker {ctx.index}: error: {err}", "error": str(err)}
        )
        raise SystemExit(2) from None


def _run_processes(
    contexts: list[Any], n_trials: int | None, progress: Any
) -> tuple[bool, list[str], list[tuple[int, int]]]:
    """Run the workers as processes; (interrupted, workers' errors, (worker, exit code) of
    those that died)."""
    import multiprocessing as mp
    import queue as queue_mod

    mpctx = mp.get_context("spawn")
    events = mpctx.Queue()
    shared = mpctx.Value("i", 0)
    procs = [
        mpctx.Process(target=_child, args=(ctx, n_trials, shared, events), daemon=False)
        for ctx in contexts
    ]
    for proc in procs:
        proc.start()
    interrupted = False
    errors: list[str] = []

    def show(event: dict[str, Any]) -> None:
        if event.get("error"):
            errors.append(event["error"])
        progress.handle(event)

    def drain(timeout: float) -> None:
        with contextlib.suppress(queue_mod.Empty):
            show(events.get(timeout=timeout))

    try:
        while any(p.is_alive() for p in procs):
            drain(0.5)
    except KeyboardInterrupt:
        interrupted = True
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.time() + 60
        while any(p.is_alive() for p in procs) and time.time() < deadline:
            try:
                drain(0.5)
            except KeyboardInterrupt:
                break  # a second Ctrl-C: stop now
        for proc in procs:
            if proc.is_alive():
                proc.kill()
    for proc in procs:
        proc.join()
    while True:
        try:
            show(events.get_nowait())
        except (queue_mod.Empty, OSError, ValueError):
            break
    if any(p.exitcode == 130 for p in procs):
        interrupted = True
    died = (
        []
        if interrupted
        else [(i, p.exitcode) for i, p in enumerate(procs) if p.exitcode not in (0, 2, 130)]
    )
    return interrupted, errors, died


def _summary(study: Any, metric: str, name: str) -> None:
    from hpsearch.summary import print_summary

    print_summary(study, metric, name)


def _study_table(study: Any, mode: str, workdir: Any) -> None:
    try:
        from hpsearch.tracking import log_study_table
    except ImportError:
        return
    log_study_table(study, mode, workdir.wandb)
