"""Flags that several commands share, declared once, and the checks argparse cannot make."""

from __future__ import annotations

import argparse
import math

from hpsearch.paths import ARTIFACTS_ENV
from hpsearch.storage.urls import DEFAULT_STORAGE, STORAGE_ENV
from trainer.errors import UserError


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    """``--storage URL``: where the studies are."""
    parser.add_argument(
        "--storage",
        metavar="URL",
        help=f"sqlite:///FILE or postgresql://user@host/db (default: ${STORAGE_ENV}, "
        f"else {DEFAULT_STORAGE})",
    )


def add_stored_study_options(parser: argparse.ArgumentParser, when_left_out: str) -> None:
    """``--study NAME`` (a study stored in the storage) and ``--storage URL``, for the
    commands that read a study; ``when_left_out`` says what leaving --study out does."""
    parser.add_argument(
        "--study",
        metavar="NAME",
        help="a study stored in the storage, by the name `hpsearch run` gave it (its study "
        f"file's name, or --name); {when_left_out}",
    )
    add_storage_option(parser)


def add_artifacts_option(parser: argparse.ArgumentParser) -> None:
    """The ``--artifacts LOCATION`` option, the same on every command that reads or writes
    checkpoints and artifacts."""
    parser.add_argument(
        "--artifacts",
        metavar="DIR",
        help="folder shared by every machine of the search for trial checkpoints and "
        f"artifacts (default: ${ARTIFACTS_ENV}, else the workdir)",
    )


def add_worker_options(parser: argparse.ArgumentParser, trials: str = "trials") -> None:
    """The flags of the commands that train (``run``, ``confirm``): workers, devices,
    limits, the workdir, the artifact location, wandb and the heartbeat."""
    parser.add_argument("--workers", type=int, help="worker processes (default: one per GPU, or 1)")
    parser.add_argument("--devices", help="GPU indices to use, e.g. 0,1 (one worker each)")
    parser.add_argument("--n-trials", type=int, help=f"start at most N {trials} in this run")
    parser.add_argument("--timeout", type=float, help=f"start no new {trials[:-1]} after S seconds")
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


def check_worker_options(args: argparse.Namespace) -> None:
    """The worker flags argparse cannot check alone, before anything is read or written."""
    if args.workers is not None and args.workers < 1:
        raise UserError("--workers must be >= 1")
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError("--n-trials must be >= 1")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout must be > 0 (a number of seconds), not {args.timeout}")
    if args.heartbeat is not None and args.heartbeat < 1:
        raise UserError(f"--heartbeat must be >= 1 (seconds), not {args.heartbeat}")
