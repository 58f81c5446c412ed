"""Which devices a run uses: one worker per GPU, or CPU workers sharing the cores."""

from __future__ import annotations

import os
from dataclasses import dataclass

from trainer.errors import UserError


@dataclass(frozen=True)
class DevicePlan:
    """The workers of one run and where each trains."""

    workers: int
    gpus: tuple[str, ...] = ()
    """GPU index of each worker (empty on the CPU)."""
    threads: int = 0
    """CPU threads per worker (0 on GPUs)."""

    @property
    def device(self) -> str:
        return "cuda" if self.gpus else "cpu"

    def describe(self) -> str:
        if self.gpus:
            return f"{self.workers} worker(s) on GPU {','.join(self.gpus)}"
        return f"{self.workers} worker(s) on CPU ({self.threads} thread(s) each)"


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. under Slurm or a container)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def plan_devices(workers: int | None, devices: str | None) -> DevicePlan:
    """One worker per GPU (``--devices`` or every visible GPU), else CPU workers.

    ``workers`` beyond the GPUs share them round-robin; on the CPU the cores are split
    evenly between the workers.
    """
    gpus = _chosen_gpus(devices) if devices else _visible_gpus()
    if gpus:
        count = workers or len(gpus)
        return DevicePlan(workers=count, gpus=tuple(gpus[i % len(gpus)] for i in range(count)))
    count = workers or 1
    return DevicePlan(workers=count, threads=max(1, usable_cores() // count))


def _chosen_gpus(flag: str) -> list[str]:
    import torch

    available = torch.cuda.device_count()
    chosen = []
    for part in (p.strip() for p in flag.split(",")):
        if not part.isdigit():
            raise UserError(f"--devices: {part!r} is not a GPU index")
        if int(part) >= available:
            raise UserError(f"--devices: GPU {part} is not there ({available} GPU(s) visible)")
        chosen.append(part)
    return chosen


def _visible_gpus() -> list[str]:
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
