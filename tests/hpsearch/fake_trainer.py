"""A fast stand-in for the trainer (``$STAND_IN_TRAINER``) for orchestration tests.

It keeps the trainer's contract — ``load_data`` and ``fit`` with per-epoch callback,
early stop, per-epoch checkpoint and resume — and replaces training by a short sleep
and a deterministic learning curve computed from the parameters. Every epoch it
appends a line to ``$FAKE_TRAINER_LOG`` so tests can count the epochs really trained.

``$FAKE_TRAINER_STALL_AFTER=N``: once the log holds N lines, every epoch that starts
sleeps ``$FAKE_TRAINER_STALL_S`` (600 s) instead. A test that waits for N lines and then
stops the run (a signal, a kill) thus meets a run still training, however slowly a busy
machine lets the test itself notice the lines. ``$FAKE_TRAINER_STALL_SLOT=slot-0000K``
stalls only that slot's trial, from its second epoch, and only when it started afresh
(not resumed): a test can kill or freeze the worker that runs it while the others, and
the attempt that resumes it, go on.

``$FAKE_TRAINER_STALL_PROMOTED_AT=E``: the first resumed run (a trial promoted by the
promotion pruner, or a retried slot) that reaches epoch E writes its pid to
``$FAKE_TRAINER_LOG.promoted`` and stalls there, before the epoch is saved or logged: a test
can kill the worker in the middle of a promotion.

``$FAKE_TRAINER_TORCH_SAVE=1`` writes each epoch's state with the real trainer's
``atomic_save`` (``torch.save``) as ``last.pt`` too. With ``$FAKE_TRAINER_SAVE_STALL_AT=E``
the save of epoch E of a fresh trial blocks inside ``torch.save``'s write: the temporary
file ``atomic_save`` writes is made a FIFO that is opened but never read, so the write
blocks once the pipe is full (as a write to a slow disk does), and
``$FAKE_TRAINER_LOG.saving.slot-0000K`` says so. A signal then interrupts that write, and torch's
C++ writer turns the ``KeyboardInterrupt`` into ``RuntimeError: [enforce fail at
inline_container.cc] unexpected pos ...``, as it does on a real disk.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig


@dataclass
class FakeData:
    synthetic: bool = True
    train_y: list[int] = field(default_factory=lambda: [0] * 8)
    val_y: list[int] = field(default_factory=lambda: [0] * 2)
    test_y: list[int] = field(default_factory=list)


@dataclass
class FakeResult:
    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    epochs_run: int
    stopped_early: bool
    images_per_sec: float = 1000.0
    wall_seconds: float = 0.0
    device: str = "cpu (fake)"
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    peak_memory_mb: float = 0.0
    precision: str = "fp32"


def load_data(
    config: Any, device: Any = None, with_test: bool = True, on_progress=None, on_warning=None
) -> FakeData:
    return FakeData()


def curve(config: TrainConfig, epoch: int) -> float:
    """Accuracy after ``epoch``: best near lr=0.01, rising with epochs."""
    quality = math.exp(-((math.log10(config.lr) + 2.0) ** 2))
    bonus = 0.02 * (config.momentum or 0) + (0.01 if config.optimizer == "sgd" else 0.0)
    return round(0.25 + 0.6 * quality * (1 - math.exp(-epoch / 2)) + bonus, 6)


def _stall_s() -> float:
    """Seconds to stall this epoch (``$FAKE_TRAINER_STALL_AFTER`` reached), else 0."""
    after = int(os.environ.get("FAKE_TRAINER_STALL_AFTER") or 0)
    log_path = os.environ.get("FAKE_TRAINER_LOG")
    if not (after and log_path and os.path.exists(log_path)):
        return 0.0
    with open(log_path) as handle:
        lines = sum(1 for _ in handle)
    return float(os.environ.get("FAKE_TRAINER_STALL_S", "600")) if lines >= after else 0.0


def _torch_save(history: list[dict[str, float]], folder: Path, epoch: int, fresh: bool) -> None:
    """``last.pt`` through the real trainer's atomic writer (``$FAKE_TRAINER_TORCH_SAVE``)."""
    import torch

    from trainer.checkpoint import atomic_save

    payload: dict[str, Any] = {"history": list(history), "weights": torch.zeros(1 << 18)}
    if fresh and epoch == int(os.environ.get("FAKE_TRAINER_SAVE_STALL_AT") or 0):
        tmp = folder / f".last.pt.{os.getpid()}.tmp"  # the name atomic_save writes to
        os.mkfifo(tmp)
        os.open(tmp, os.O_RDONLY | os.O_NONBLOCK)  # a reader that never reads
        marker = f"{os.environ.get('FAKE_TRAINER_LOG', '')}.saving.{folder.name}"
        Path(marker).write_text(str(os.getpid()))
    atomic_save(payload, folder / "last.pt")


def fit(
    config: TrainConfig, data: Any, on_epoch=None, *, checkpoint_dir=None, resume=True, log=None
) -> FakeResult:
    started = time.time()
    history: list[dict[str, float]] = []
    state_file = Path(checkpoint_dir) / "last.json" if checkpoint_dir else None
    if state_file is not None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        if resume and state_file.exists():
            history = json.loads(state_file.read_text())["history"]
    delay = float(os.environ.get("FAKE_TRAINER_EPOCH_S", "0.05"))
    stopped = False
    slot_name = Path(checkpoint_dir).name if checkpoint_dir else None
    fresh = not history
    for epoch in range(len(history) + 1, config.epochs + 1):
        stalled = fresh and epoch >= 2 and slot_name == os.environ.get("FAKE_TRAINER_STALL_SLOT")
        stall = float(os.environ.get("FAKE_TRAINER_STALL_S", "600")) if stalled else 0.0
        if not fresh and epoch == int(os.environ.get("FAKE_TRAINER_STALL_PROMOTED_AT") or 0):
            marker = Path(f"{os.environ['FAKE_TRAINER_LOG']}.promoted")
            if not marker.exists():
                marker.write_text(f"{os.getpid()} {slot_name}")
                stall = 600.0
        time.sleep(stall or _stall_s() or delay)
        row = {"epoch": epoch, "val_accuracy": curve(config, epoch), "val_loss": 1.0 / epoch}
        history.append(row)
        if state_file is not None:
            if os.environ.get("FAKE_TRAINER_TORCH_SAVE"):
                _torch_save(history, state_file.parent, epoch, fresh)
            tmp = state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"history": history}))
            os.replace(tmp, state_file)
        log_path = os.environ.get("FAKE_TRAINER_LOG")
        if log_path:
            with open(log_path, "a") as fh:
                slot = Path(checkpoint_dir).name if checkpoint_dir else "-"
                fh.write(
                    f"{os.getpid()} {slot} {config.lr} {config.optimizer} "
                    f"{config.batch_size} {epoch}\n"
                )
        if on_epoch is not None and on_epoch(epoch, row):
            stopped = True
            break
    best = max(history, key=lambda r: r["val_accuracy"])
    best_ckpt = None
    if checkpoint_dir:
        best_ckpt = Path(checkpoint_dir) / "best.json"
        best_ckpt.write_text(json.dumps(best))
    return FakeResult(
        best_epoch=int(best["epoch"]),
        best_metrics=best,
        history=history,
        epochs_run=len(history),
        stopped_early=stopped,
        wall_seconds=time.time() - started,
        best_checkpoint=best_ckpt,
    )
