"""The training loop: ``fit(config, data, on_epoch)`` trains, evaluates each epoch, checkpoints.

Images stay uint8 on the training device and batches are built there, so an epoch costs
one host synchronisation (the epoch's loss and the validation metrics), not one per step.
"""

from __future__ import annotations

import contextlib
import math
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from trainer.batches import batches_per_epoch, train_batches
from trainer.checkpoint import (
    atomic_save,
    cpu_state_dict,
    remove_stale_temporaries,
    run_fingerprint,
)
from trainer.config import TrainConfig, monitor_direction
from trainer.data import Data
from trainer.errors import UserError
from trainer.inference import predict_logits
from trainer.memory import (
    MicroBatches,
    does_not_fit,
    is_out_of_memory,
    one_line_reason,
    release_memory,
)
from trainer.metrics import classification_metrics
from trainer.model import build_model
from trainer.optim import make_optimizer, make_scheduler
from trainer.precision import autocast_dtype, resolve_precision

Row = dict[str, float]
OnEpoch = Callable[[int, Row], Any]

LAST = "last.pt"
BEST = "best.pt"


@dataclass
class FitResult:
    """What a training run produced; ``history`` holds one row per epoch."""

    best_epoch: int
    """1-based epoch with the best ``config.monitor``."""
    best_metrics: Row
    history: list[Row]
    epochs_run: int
    """Epochs in ``history``, resumed ones included."""
    stopped_early: bool
    images_per_sec: float
    """Training throughput over the epochs trained by this call, data handling included."""
    wall_seconds: float
    device: str
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    peak_memory_mb: float = 0.0
    """CUDA: peak allocated by tensors; CPU: the process's peak resident memory."""
    precision: str = "fp32"
    """The arithmetic used: 'bf16' (autocast) or 'fp32' (``config.precision`` resolved)."""
    memory_fallback: dict[str, Any] | None = None
    """None when every batch fitted the device; after a training step ran out of memory,
    how the run went on: ``batch_size`` (``config.batch_size``), ``micro_batch`` (the most
    images a forward pass then saw), ``accumulate`` (forward and backward passes per
    optimizer step: ``config.accumulate`` times the micro-batches per batch),
    ``effective_batch`` (``batch_size * config.accumulate``, unchanged), ``retries`` (1 per
    halving) and ``reason`` (the first error's first line)."""


def resolve_device(name: str) -> torch.device:
    """'auto' means the first CUDA device if there is one, else the CPU."""
    if name == "auto":
        if _has_cuda():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"device={name!r}: not a device name") from error
    if device.type == "cuda":
        if not _has_cuda():
            raise UserError(f"device={name!r}: CUDA is not available here")
        # torch's stubs type the index as int, but a bare 'cuda' has None.
        index = cast("int | None", device.index)
        if index is None:
            index = torch.cuda.current_device()
            device = torch.device("cuda", index)
        if index >= torch.cuda.device_count():
            raise UserError(f"device={name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise UserError(f"device={name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def fit(
    config: TrainConfig,
    data: Data,
    on_epoch: OnEpoch | None = None,
    *,
    checkpoint_dir: Path | None = None,
    resume: bool = True,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train ``config.arch`` on ``data.train_*``, evaluating on ``data.val_*`` after each epoch.

    After every epoch ``on_epoch(epoch, row)`` is called (1-based epoch, the history row);
    a truthy return stops training. With ``checkpoint_dir``, ``last.pt`` is written every
    epoch and ``best.pt`` (a self-contained model file) whenever ``config.monitor``
    improves; with ``resume`` a matching ``last.pt`` continues where it ended, and gives
    the same result as a run that was never interrupted. A diverged run (non-finite
    training loss) stops after that epoch with ``diverged`` = 1 in its row.

    A batch that does not fit the device's memory does not fail the run: it goes on in
    smaller micro-batches at the same effective batch (``_fit_in_memory``), says so in one
    line through ``log``, and records it in ``FitResult.memory_fallback``.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    _check_data(config, data)
    threads = config.threads if device.type == "cpu" else None
    with _torch_threads(threads):
        run, fallback = _fit_in_memory(
            config, data, device, on_epoch, checkpoint_dir, resume, log or (lambda _m: None)
        )
        # Inside the block, so the reported device names this trial's thread count.
        result = run.result(time.perf_counter() - started)
    result.memory_fallback = fallback
    return result


def _fit_in_memory(
    config: TrainConfig,
    data: Data,
    device: torch.device,
    on_epoch: OnEpoch | None,
    checkpoint_dir: Path | None,
    resume: bool,
    log: Callable[[str], None],
) -> tuple[_Run, dict[str, Any] | None]:
    """Train; when a training step runs out of memory, train again in micro-batches.

    Each retry halves the micro-batch (rounded up) and cuts every batch of ``config`` into
    twice as many micro-batches whose gradients accumulate into the batch's. The batches
    (images, order, augmentation), their number per epoch, the optimizer steps and the
    learning-rate schedule stay exactly those of ``config``, and so does the checkpoint's
    fingerprint; only batch norm sees its statistics per micro-batch. The failed attempt's
    model, optimizer and tensors are freed first. The retry resumes from ``last.pt`` when
    this call restored or wrote it (an epoch boundary, written with this config), else it
    starts from epoch 1 and ``on_epoch`` is called again for the epochs it repeats. When a
    micro-batch of one image does not fit either, the error is raised again in one line.
    An out-of-memory error outside the training steps (the data, evaluation) is not retried.
    """
    micro = MicroBatches(min(config.batch_size, data.train_y.numel()))
    effective = config.batch_size * config.accumulate
    first: BaseException | None = None
    retries = 0
    while True:
        run = _Run(config, data, device, checkpoint_dir, log, micro)
        error = run.attempt(resume, on_epoch)
        if error is None:
            break
        first = first or error
        resume, done = run.checkpointed, len(run.history)
        run.release()
        del run
        release_memory(device)
        smaller = micro.halved()
        settings = f"batch_size={config.batch_size}, accumulate={config.accumulate}"
        if smaller is None:
            message = f"out of memory in a training step even at {micro.size} image(s) a pass"
            raise does_not_fit(
                error, f"{message} ({settings}): {one_line_reason(error)}"
            ) from error
        where = f"from {LAST} after epoch {done}" if resume else "from epoch 1"
        log(
            f"out of memory training on {micro.size} image(s) a pass ({settings}): "
            f"training again {where} with {smaller.pieces} micro-batches of at most "
            f"{smaller.size} per batch, the same effective batch of {effective}"
        )
        micro, retries = smaller, retries + 1
    if first is None:
        return run, None
    return run, micro.record(config.batch_size, config.accumulate, retries, first)


class _StepOutOfMemory(Exception):
    """A training step ran out of memory: ``error`` is what torch raised."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


class _Run:
    """State of one attempt of a call to ``fit``; exists to keep ``fit`` itself short."""

    def __init__(
        self,
        config: TrainConfig,
        data: Data,
        device: torch.device,
        checkpoint_dir: Path | None,
        log: Callable[[str], None],
        micro: MicroBatches,
    ) -> None:
        self.config = config
        self.device = device
        self.log = log
        self.micro = micro
        """How each training batch is cut for the forward and backward passes."""
        self.cuda = device.type == "cuda"
        # NHWC: about 10 % faster for ResNet-18 on 2 CPU threads, and up to twice as fast
        # on CUDA once batches are large enough not to be bound by kernel launches.
        self.channels_last = config.channels_last
        self.precision = resolve_precision(config.precision, device)
        self.autocast_dtype = autocast_dtype(self.precision)
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            torch.cuda.reset_peak_memory_stats(device)

        self.fingerprint = run_fingerprint(config, data)
        self.data = data.to(device)
        self.val_y = self.data.val_y.cpu().numpy()
        self._build_model(data)
        self.batches = batches_per_epoch(data.train_y.numel(), config.batch_size)
        self.steps_per_epoch = math.ceil(self.batches / config.accumulate)
        self.optimizer = make_optimizer(config, self.model.parameters(), fused=self.cuda)
        self.scheduler = make_scheduler(self.optimizer, config, self.steps_per_epoch)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

        self.history: list[Row] = []
        self.best_epoch: int | None = None
        self.stopped_early = False
        self.trained_images = 0
        self.train_seconds = 0.0
        self.dir = self._checkpoint_dir(checkpoint_dir)
        self.checkpointed = False
        """Whether ``last.pt`` holds an epoch of this call (restored or written by it)."""

    def attempt(self, resume: bool, on_epoch: OnEpoch | None) -> BaseException | None:
        """Restore and train; the error of a training step that ran out of memory, or None.

        The error's frames are cleared, so its traceback holds no tensor of this attempt.
        """
        try:
            self.restore(resume)
            self.train(on_epoch)
        except _StepOutOfMemory as wrapper:
            error = wrapper.error
            traceback.clear_frames(wrapper.__traceback__)
            traceback.clear_frames(error.__traceback__)
            return error
        return None

    def release(self) -> None:
        """Drop the model, optimizer and device data, so that their memory can be freed."""
        del self.model, self.train_model, self.optimizer, self.scheduler, self.data

    def _build_model(self, data: Data) -> None:
        """``self.model`` (saved, evaluated) and ``self.train_model`` (compiled if asked)."""
        config = self.config
        torch.manual_seed(config.seed)
        model = build_model(
            config.arch,
            num_classes=len(data.class_names),
            in_chans=data.train_x.shape[1],
            pretrained=config.pretrained,
            weights_path=config.weights_path,
        ).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.train_model: Callable[..., torch.Tensor] = model
        if config.compile and self.cuda:
            self.train_model = torch.compile(model)

    def _checkpoint_dir(self, checkpoint_dir: Path | None) -> Path | None:
        """The checkpoint folder, created and cleared of interrupted writes; None without one."""
        if checkpoint_dir is None:
            return None
        folder = Path(checkpoint_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_temporaries(folder):
            self.log(f"removed {stale.name}, left by an interrupted checkpoint write")
        return folder

    # -- checkpoints -------------------------------------------------------------------

    def restore(self, resume: bool) -> None:
        """Continue from ``last.pt`` when asked and it belongs to this run."""
        if not resume or self.dir is None or not (self.dir / LAST).is_file():
            return
        path = self.dir / LAST
        try:
            saved = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as error:
            raise UserError(f"cannot read checkpoint {path}: {type(error).__name__}") from error
        if saved.get("fingerprint") != self.fingerprint:
            raise UserError(
                f"{path} was written with other settings or data; "
                "use another checkpoint directory or do not resume"
            )
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.history = list(saved["history"])
        self.best_epoch = saved["best_epoch"]
        self.checkpointed = True
        self.log(f"resumed from {path} after epoch {len(self.history)}")

    def save(self, improved: bool) -> None:
        if self.dir is None:
            return
        epoch = len(self.history)
        if improved:
            atomic_save(self._best_payload(epoch), self.dir / BEST)
        atomic_save(
            {
                "fingerprint": self.fingerprint,
                "epoch": epoch,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "history": self.history,
                "best_epoch": self.best_epoch,
            },
            self.dir / LAST,
        )
        self.checkpointed = True

    def _best_payload(self, epoch: int) -> dict[str, Any]:
        data = self.data
        return {
            "state_dict": cpu_state_dict(self.model),
            "arch": self.config.arch,
            "num_classes": len(data.class_names),
            "in_chans": int(data.train_x.shape[1]),
            "image_size": int(data.image_size),
            "mean": float(data.mean),
            "std": float(data.std),
            "class_names": list(data.class_names),
            "config": self.config.to_dict(),
            "epoch": epoch,
            "metrics": dict(self.history[-1]),
        }

    # -- training ----------------------------------------------------------------------

    def train(self, on_epoch: OnEpoch | None) -> None:
        if self.history and self.history[-1].get("diverged"):
            return
        for epoch in range(len(self.history) + 1, self.config.epochs + 1):
            started = time.perf_counter()
            train_loss, lr, images, seconds = self._train_epoch(epoch)
            row = self._evaluate(epoch, train_loss)
            row.update(
                lr=lr,
                images_per_sec=images / seconds,
                epoch_seconds=time.perf_counter() - started,
                diverged=0.0 if math.isfinite(train_loss) else 1.0,
            )
            self.history.append(row)
            self.trained_images += images
            self.train_seconds += seconds
            improved = self._is_best(row)
            if improved:
                self.best_epoch = epoch
            self.save(improved)
            self.log(self._summary(row))
            stop = on_epoch(epoch, row) if on_epoch is not None else False
            if row["diverged"]:
                self.log(f"training loss is {train_loss} at epoch {epoch}: stopping")
            if stop or row["diverged"]:
                self.stopped_early = epoch < self.config.epochs
                break

    def _train_epoch(self, epoch: int) -> tuple[float, float, int, float]:
        """One epoch's training steps; an out-of-memory error comes out as ``_StepOutOfMemory``."""
        config = self.config
        started = time.perf_counter()
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        images = 0
        lr = self.optimizer.param_groups[0]["lr"]
        try:
            for i, (x, y) in enumerate(self._batches(epoch)):
                group_start = i - i % config.accumulate
                group_size = min(config.accumulate, self.batches - group_start)
                self._backward(x, y, group_size, loss_sum)
                images += y.shape[0]
                if i + 1 - group_start == group_size:
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scheduler.step()
            train_loss = (loss_sum / images).item()  # the epoch's one synchronisation
        except Exception as error:
            if is_out_of_memory(error):
                raise _StepOutOfMemory(error) from error
            raise
        return train_loss, float(lr), images, time.perf_counter() - started

    def _backward(
        self, x: torch.Tensor, y: torch.Tensor, group_size: int, loss_sum: torch.Tensor
    ) -> None:
        """Accumulate the gradient of one batch's mean loss / ``group_size``; add its summed
        loss to ``loss_sum``. The batch goes through the model in ``self.micro.pieces``
        parts, each weighted by its share of the batch: the same gradient as in one pass,
        batch norm's statistics apart."""
        pieces = self.micro.pieces
        parts = zip(x.tensor_split(pieces), y.tensor_split(pieces), strict=True)
        for part_x, part_y in parts if pieces > 1 else [(x, y)]:
            with self._autocast():
                logits = self.train_model(part_x)
            loss = self.criterion(logits.float(), part_y)
            # One pass: loss / group_size, as float(group_size) divides exactly alike.
            (loss / (group_size * y.shape[0] / part_y.shape[0])).backward()
            loss_sum += loss.detach() * part_y.shape[0]

    def _batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data = self.data
        return train_batches(
            data.train_x,
            data.train_y,
            self.config,
            epoch,
            mean=data.mean,
            std=data.std,
            channels_last=self.channels_last,
        )

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _evaluate(self, epoch: int, train_loss: float) -> Row:
        data = self.data
        logits = predict_logits(
            self.model,
            data.val_x,
            data.mean,
            data.std,
            batch_size=self.config.eval_batch_size,
            channels_last=self.channels_last,
            autocast_dtype=self.autocast_dtype,
        )
        val_loss = F.cross_entropy(logits, data.val_y).item()
        proba = torch.softmax(logits, dim=1).cpu().numpy()
        metrics = classification_metrics(self.val_y, proba, loss=val_loss)
        row: Row = {"epoch": epoch, "train_loss": train_loss}
        row.update({f"val_{k}": v for k, v in metrics.items()})
        return row

    def _is_best(self, row: Row) -> bool:
        if self.best_epoch is None:
            return True
        value = row[self.config.monitor]
        best = self.history[self.best_epoch - 1][self.config.monitor]
        if math.isnan(value):
            return False
        if math.isnan(best):
            return True
        return (
            value < best if monitor_direction(self.config.monitor) == "minimize" else value > best
        )

    def _summary(self, row: Row) -> str:
        return (
            f"epoch {row['epoch']}/{self.config.epochs}: train_loss {row['train_loss']:.4f} "
            f"val_loss {row['val_loss']:.4f} val_accuracy {row['val_accuracy']:.4f} "
            f"val_auc_macro {row['val_auc_macro']:.4f} lr {row['lr']:.3g} "
            f"{row['images_per_sec']:.0f} img/s"
        )

    # -- result ------------------------------------------------------------------------

    def result(self, wall_seconds: float) -> FitResult:
        history = self.history
        # Set by the first epoch trained or restored, and epochs >= 1: never None here.
        assert self.best_epoch is not None
        best_epoch = self.best_epoch
        if self.train_seconds > 0:
            throughput = self.trained_images / self.train_seconds
        else:  # nothing left to train: report the recorded epochs
            throughput = sum(r["images_per_sec"] for r in history) / len(history)
        stopped = self.stopped_early or (
            len(history) < self.config.epochs and bool(history[-1]["diverged"])
        )
        best_path = self.dir / BEST if self.dir is not None else None
        last_path = self.dir / LAST if self.dir is not None else None
        return FitResult(
            best_epoch=best_epoch,
            best_metrics=dict(history[best_epoch - 1]),
            history=[dict(r) for r in history],
            epochs_run=len(history),
            stopped_early=stopped,
            images_per_sec=throughput,
            wall_seconds=wall_seconds,
            device=self._device_name(),
            best_checkpoint=best_path if best_path is not None and best_path.is_file() else None,
            last_checkpoint=last_path if last_path is not None and last_path.is_file() else None,
            peak_memory_mb=self._peak_memory_mb(),
            precision=self.precision,
        )

    def _device_name(self) -> str:
        if self.cuda:
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return f"cpu ({torch.get_num_threads()} threads)"

    def _peak_memory_mb(self) -> float:
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MiB.

    On Linux this is ``VmHWM``, which starts afresh when a program is executed:
    ``getrusage``'s ``ru_maxrss`` carries the parent's peak over into a child started by
    fork + exec, so a trial launched by a large process would report the launcher's memory.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def _check_data(config: TrainConfig, data: Data) -> None:
    for split in ("train", "val"):
        x, y = getattr(data, f"{split}_x"), getattr(data, f"{split}_y")
        if x.dim() != 4 or x.dtype != torch.uint8:
            shape = tuple(x.shape)
            raise ValueError(f"{split}_x: expected uint8 (N, C, H, W), got {x.dtype} {shape}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{split}_x has {x.shape[0]} images but {split}_y {y.shape[0]} labels")
    if data.train_y.numel() < 2:
        raise UserError(f"{data.train_y.numel()} training image(s): need at least 2")
    if data.val_y.numel() == 0:
        raise UserError("no validation images: use a validation fraction above 0")
    side = min(data.train_x.shape[-2:])
    if config.crop_padding >= side:
        raise UserError(f"crop_padding={config.crop_padding}: must be below the image side {side}")


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _has_cuda() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0
