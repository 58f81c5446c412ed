"""What a worker process is given: how to reach the study, where it trains, what it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from hpsearch.paths import Workdir
from hpsearch.run.kinds import RunKind
from hpsearch.storage import Heartbeat
from hpsearch.trainer_api import TrainerAPI
from trainer.config import DataConfig

#: Seconds between looks at the board while other workers' trials may still fail.
POLL_S = 2.0


@dataclass(frozen=True)
class StudyAccess:
    """How a worker reaches the study: the storage, the study's name, the heartbeat."""

    storage_url: str
    study_name: str
    heartbeat: Heartbeat = field(default_factory=Heartbeat)


@dataclass(frozen=True)
class Placement:
    """Which worker this is and where it trains."""

    index: int
    device: str = "cpu"
    """'cpu' or 'cuda' (the one GPU this process sees)."""
    cuda_visible: str | None = None
    threads: int | None = None
    """CPU threads its trials may use; None: torch's default."""


@dataclass(frozen=True)
class WorkerContext:
    """Everything a worker process needs; picklable, so it crosses ``spawn``."""

    access: StudyAccess
    placement: Placement
    kind: RunKind
    data: DataConfig
    workdir: Workdir
    """This machine's workdir, with the shared artifact location if there is one."""
    trainer: TrainerAPI
    wandb_mode: str = "off"
    deadline: float | None = None
    """Wall-clock time after which no new trial starts."""
    poll_s: float = POLL_S
