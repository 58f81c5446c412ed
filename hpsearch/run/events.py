"""What workers tell the command that started them, as typed events.

A worker sends each event to an :data:`Emit` callback: the live view
(:class:`hpsearch.run.progress.Progress`) in its own process, or a queue that the parent
process reads, for workers in processes of their own (events are plain frozen
dataclasses, so they pickle). Adding an event is one class here and one handler there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class _TrialEvent:
    """Something that happened to a worker's trial."""

    worker: int
    trial: int | None
    """The trial's number in the study."""


@dataclass(frozen=True)
class TrialStarted(_TrialEvent):
    """A worker claimed a slot and its trial began (it may resume an earlier attempt)."""

    slot: int
    params: dict[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    """The trial's epoch budget."""
    token: str = ""
    """The claim on the slot (what settles it if the worker cannot)."""
    trial_id: int | None = None


@dataclass(frozen=True)
class EpochEnded(_TrialEvent):
    """A trial finished an epoch and reported it."""

    epoch: int
    value: float
    """The study's metric at this epoch (validation split)."""
    epochs: int | None = None


@dataclass(frozen=True)
class TrialEnded(_TrialEvent):
    """A trial ended, its slot settled."""

    state: str
    """How it ended, as shown: complete, pruned, interrupted or failed."""
    value: float | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None


@dataclass(frozen=True)
class WorkerWaiting:
    """No trial to claim now, but running ones may come back."""

    worker: int


@dataclass(frozen=True)
class WorkerStopped:
    """A worker starts no further trial."""

    worker: int
    reason: str
    """Why no further trial starts ('study done', 'timeout', 'n-trials reached', ...)."""


@dataclass(frozen=True)
class Message:
    """A line of the run's own (not a worker's row in the live view)."""

    text: str
    error: str | None = None
    """The one-line error that stopped a worker, which the command then exits with."""


Event = TrialStarted | EpochEnded | TrialEnded | WorkerWaiting | WorkerStopped | Message
Emit = Callable[[Event], None]
