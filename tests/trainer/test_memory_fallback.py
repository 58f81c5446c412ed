"""fit() when a batch does not fit in memory: micro-batches at the same effective batch.

Running out of memory is simulated: the model's forward raises the allocator's error when
a training pass is larger than a limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from tests.trainer.synthetic_tensors import synthetic_data
from tests.trainer.test_fit import _one_thread  # noqa: F401  (autouse: one thread)
from trainer import training
from trainer.config import TrainConfig
from trainer.memory import MicroBatches, is_out_of_memory
from trainer.training import LAST, fit

CPU_OOM = (
    "DefaultCPUAllocator: can't allocate memory: you tried to allocate 411041792 bytes. "
    "Error code 12 (Cannot allocate memory)"
)
CUDA_OOM = (
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"
    " of which 1.06 GiB is free.\nOf the allocated memory 75.2 GiB is allocated by PyTorch"
)

BUILD_MODEL, MAKE_OPTIMIZER = training.build_model, training.make_optimizer


@pytest.fixture(scope="module")
def small():
    """64 training images of 16 pixels: a batch of 24 gives 2 batches an epoch."""
    return synthetic_data(n_train=64, n_val=16, size=16, seed=1)


def _config(**changes) -> TrainConfig:
    base = TrainConfig(
        epochs=2,
        batch_size=24,
        lr=0.01,
        schedule="cosine",
        warmup_epochs=0.5,
        device="cpu",
        threads=1,
        precision="fp32",
    )
    return replace(base, **changes)


class Probe:
    """Watches training: the images of each training pass, optimizer steps and epochs.

    ``install`` has the trainer build watched models and optimizers; the probe installed
    last is the one that watches.
    """

    def __init__(self) -> None:
        self.passes: list[int] = []
        self.step_images: list[int] = []
        """Images that went into each optimizer step."""
        self.steps_at_epoch_end: list[int] = []
        self.epochs: list[int] = []
        self.lines: list[str] = []
        self._since_step = 0
        self.limit: int | None = None
        """Training passes of more images than this raise ``self.error``; None: no limit."""
        self.error: Callable[[int], BaseException] = lambda n: RuntimeError(CPU_OOM)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Probe:
        def build(*args, **kwargs):
            model = BUILD_MODEL(*args, **kwargs)
            forward = model.forward

            def limited(x):
                if model.training:
                    self.passes.append(x.shape[0])
                    if self.limit is not None and x.shape[0] > self.limit:
                        raise self.error(x.shape[0])
                    self._since_step += x.shape[0]
                return forward(x)

            model.forward = limited
            return model

        def make(*args, **kwargs):
            optimizer = MAKE_OPTIMIZER(*args, **kwargs)
            optimizer.register_step_post_hook(lambda *_: self._stepped())
            return optimizer

        monkeypatch.setattr(training, "build_model", build)
        monkeypatch.setattr(training, "make_optimizer", make)
        return self

    def _stepped(self) -> None:
        self.step_images.append(self._since_step)
        self._since_step = 0

    def on_epoch(self, epoch: int, row: dict[str, float]) -> bool:
        self.epochs.append(epoch)
        self.steps_at_epoch_end.append(len(self.step_images))
        return False

    def retry_lines(self) -> list[str]:
        """What ``fit`` logged about running out of memory (it logs each epoch too)."""
        return [line for line in self.lines if line.startswith("out of memory")]

    def steps_per_epoch(self) -> list[int]:
        ends = self.steps_at_epoch_end
        return [b - a for a, b in zip([0, *ends], ends, strict=False)]

    def fit(self, config: TrainConfig, data, **kwargs):
        return fit(config, data, self.on_epoch, log=self.lines.append, **kwargs)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError(CUDA_OOM),
        RuntimeError(CPU_OOM),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: "
            "you tried to allocate 8589934592 bytes."
        ),
        RuntimeError("CUDA error: out of memory"),
        MemoryError(),
    ],
    ids=["cuda", "cpu", "cpu-windows", "cuda-runtime", "python"],
)
def test_out_of_memory_errors_are_recognised(error):
    assert is_out_of_memory(error)
    wrapped = RuntimeError("compiled graph failed")
    wrapped.__cause__ = error
    assert is_out_of_memory(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (24x512 and 256x4)"),
        RuntimeError("CUDA error: device-side assert triggered"),
        ValueError("Expected more than 1 value per channel when training"),
        KeyboardInterrupt(),
        OSError(28, "No space left on device"),
    ],
    ids=["shapes", "cuda-assert", "batch-norm", "interrupt", "disk"],
)
def test_other_errors_are_not_out_of_memory(error):
    assert not is_out_of_memory(error)


@pytest.mark.parametrize(
    ("batch", "sizes"), [(24, [24, 12, 6, 3, 2, 1]), (15, [15, 8, 4, 2, 1]), (3, [3, 2, 1])]
)
def test_micro_batches_halve_down_to_one_image(batch, sizes):
    micro, seen = MicroBatches(batch), []
    while micro is not None:
        assert micro.pieces <= batch
        seen.append(micro.size)
        micro = micro.halved()
    assert seen == sizes


@pytest.mark.slow
@pytest.mark.parametrize(
    ("batch_size", "accumulate", "limit", "micro_batch", "retries"),
    [(24, 1, 12, 12, 1), (15, 2, 5, 4, 2)],
    ids=["even-batch", "odd-batch-accumulated"],
)
def test_fallback_keeps_the_effective_batch_steps_and_schedule(
    small, monkeypatch, batch_size, accumulate, limit, micro_batch, retries
):
    config = _config(batch_size=batch_size, accumulate=accumulate)
    plain_probe = Probe().install(monkeypatch)
    plain = plain_probe.fit(config, small)
    probe = Probe().install(monkeypatch)
    probe.limit = limit
    result = probe.fit(config, small)

    assert plain.memory_fallback is None
    assert result.epochs_run == config.epochs and not result.stopped_early
    fallback = result.memory_fallback
    assert fallback is not None
    assert fallback["reason"] == CPU_OOM
    assert fallback == {
        "batch_size": batch_size,
        "micro_batch": micro_batch,
        "accumulate": accumulate * -(-batch_size // micro_batch),
        "effective_batch": batch_size * accumulate,
        "retries": retries,
        "reason": CPU_OOM,
    }
    assert fallback["micro_batch"] <= limit
    assert max(probe.passes[retries:]) <= limit  # every pass once it fitted
    # The same optimizer steps, each on the same number of images, and the same schedule.
    assert probe.steps_per_epoch() == plain_probe.steps_per_epoch()
    assert probe.step_images == plain_probe.step_images
    assert set(plain_probe.step_images) == {batch_size * accumulate}
    assert [r["lr"] for r in result.history] == [r["lr"] for r in plain.history]
    assert probe.epochs == plain_probe.epochs == [1, 2]
    # One line said so for each retry.
    assert len(probe.retry_lines()) == retries
    assert all("out of memory" in line and "\n" not in line for line in probe.retry_lines())
    assert f"batch_size={batch_size}" in probe.retry_lines()[0]


def test_an_error_that_is_not_out_of_memory_is_not_retried(small, monkeypatch):
    probe = Probe().install(monkeypatch)
    probe.limit = 12
    probe.error = lambda n: RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({n}x512)")
    with pytest.raises(
        RuntimeError, match=r"^mat1 and mat2 shapes cannot be multiplied \(24x512\)$"
    ):
        probe.fit(_config(), small)
    assert probe.passes == [24]
    assert probe.retry_lines() == []


@pytest.mark.parametrize(
    "error",
    [lambda n: RuntimeError(CPU_OOM), lambda n: torch.OutOfMemoryError(CUDA_OOM)],
    ids=["cpu", "cuda"],
)
def test_when_one_image_does_not_fit_the_error_surfaces_in_one_line(small, monkeypatch, error):
    probe = Probe().install(monkeypatch)
    probe.limit, probe.error = 0, error
    with pytest.raises(RuntimeError) as raised:
        probe.fit(_config(batch_size=8), small)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("out of memory in a training step even at 1 image(s) a pass")
    assert "batch_size=8, accumulate=1" in message
    assert type(raised.value) is type(error(0))  # still what torch raised, and still OOM
    assert is_out_of_memory(raised.value)
    assert probe.passes == [8, 4, 2, 1]  # each attempt stopped at its first pass
    assert len(probe.retry_lines()) == 3


@pytest.mark.slow
@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoint", "no-checkpoint"])
def test_out_of_memory_after_an_epoch_resumes_from_its_checkpoint(
    small, monkeypatch, tmp_path, checkpoints
):
    probe = Probe().install(monkeypatch)
    on_epoch = probe.on_epoch

    def limit_after_the_first_epoch(epoch, row):
        probe.limit = 12  # as if memory had fragmented during epoch 1
        return on_epoch(epoch, row)

    probe.on_epoch = limit_after_the_first_epoch
    config = _config(epochs=3)
    result = probe.fit(config, small, checkpoint_dir=tmp_path if checkpoints else None)

    assert result.epochs_run == 3
    assert result.memory_fallback is not None and result.memory_fallback["micro_batch"] == 12
    if checkpoints:  # epoch 1 is taken from last.pt, not trained again
        assert probe.epochs == [1, 2, 3]
        assert f"from {LAST} after epoch 1" in probe.retry_lines()[0]
    else:
        assert probe.epochs == [1, 1, 2, 3]
        assert "from epoch 1" in probe.retry_lines()[0]
    assert probe.steps_per_epoch() == [2] * len(probe.epochs)


def test_a_retry_never_resumes_a_checkpoint_the_call_did_not_write(small, monkeypatch, tmp_path):
    config = _config(epochs=1, batch_size=32)
    fit(config, small, checkpoint_dir=tmp_path)  # a finished run's last.pt
    probe = Probe().install(monkeypatch)
    probe.limit = 16
    result = probe.fit(config, small, checkpoint_dir=tmp_path, resume=False)
    assert probe.epochs == [1]  # trained again, not taken from the old last.pt
    assert "from epoch 1" in probe.retry_lines()[0]
    assert result.memory_fallback is not None and result.memory_fallback["micro_batch"] == 16
