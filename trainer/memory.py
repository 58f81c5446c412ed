"""Out-of-memory errors: recognising one, freeing what a failed attempt held, and the
micro-batches a training run falls back to when its batch does not fit the device."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from typing import Any

import torch

from trainer.errors import first_line

OUT_OF_MEMORY_MESSAGES = (
    "can't allocate memory",  # torch's DefaultCPUAllocator (Linux, macOS)
    "not enough memory",  # torch's DefaultCPUAllocator (Windows)
    "CUDA out of memory",  # older torch raised a plain RuntimeError
    "CUDA error: out of memory",  # cudaMalloc outside the caching allocator
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
)
"""Parts of a ``RuntimeError``'s message that say an allocation failed."""

REASON_CHARS = 300
"""Longest reason recorded: CUDA's message runs to several hundred characters of advice."""


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised ``from``) says memory ran out.

    True for ``torch.OutOfMemoryError`` (CUDA), Python's ``MemoryError``, and a
    ``RuntimeError`` whose message says an allocator could not allocate memory.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, torch.OutOfMemoryError | MemoryError):
            return True
        if isinstance(current, RuntimeError):
            text = str(current)
            if any(part in text for part in OUT_OF_MEMORY_MESSAGES):
                return True
        seen.add(id(current))
        current = current.__cause__
    return False


def release_memory(device: torch.device) -> None:
    """Collect what is no longer referenced and, on CUDA, return cached blocks to the driver."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class MicroBatches:
    """Each training batch of ``batch`` images cut into ``pieces`` nearly equal parts.

    The batches themselves (their images, order, augmentation and number per epoch) do
    not change, so neither do the optimizer steps per epoch nor the effective batch;
    only the forward and backward passes see fewer images at a time.
    """

    batch: int
    """Images in one training batch: ``min(config.batch_size, training images)``."""
    pieces: int = 1

    @property
    def size(self) -> int:
        """The largest micro-batch: ``batch`` / ``pieces``, rounded up."""
        return math.ceil(self.batch / self.pieces)

    def halved(self) -> MicroBatches | None:
        """Micro-batches of half this size (rounded up); None when this size is 1."""
        if self.size <= 1:
            return None
        return MicroBatches(self.batch, min(self.batch, self.pieces * 2))

    def record(
        self, batch_size: int, accumulate: int, retries: int, first: BaseException
    ) -> dict[str, Any]:
        """``FitResult.memory_fallback`` of a run that fell back to these micro-batches.

        ``batch_size`` and ``accumulate`` are the configuration's; ``first`` is the error
        that started the fallback.
        """
        return {
            "batch_size": batch_size,
            "micro_batch": self.size,
            "accumulate": accumulate * self.pieces,
            "effective_batch": batch_size * accumulate,
            "retries": retries,
            "reason": one_line_reason(first),
        }


def one_line_reason(err: BaseException) -> str:
    """The first line of ``err``'s message, cut to ``REASON_CHARS``."""
    text = first_line(err)
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


def does_not_fit(err: BaseException, message: str) -> BaseException:
    """An error of ``err``'s type (RuntimeError where that cannot be built) with ``message``."""
    try:
        error = type(err)(message)
    except Exception:
        return RuntimeError(message)
    return error if str(error) == message else RuntimeError(message)
