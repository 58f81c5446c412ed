"""Which devices a run uses: one worker per GPU, or CPU workers sharing the cores; and
how many workers the machine can hold."""

from __future__ import annotations

import dataclasses
import os
import resource
import sys
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

    def with_workers(self, count: int) -> DevicePlan:
        """The same devices with ``count`` workers (the first ``count`` of the GPU list)."""
        if self.gpus:
            return dataclasses.replace(self, workers=count, gpus=self.gpus[:count])
        return DevicePlan(workers=count, threads=max(1, usable_cores() // count))

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


#: Environment variable: the most workers a run starts, instead of one per core (memory
#: and the trials left still limit them). For oversubscribing on purpose (load tests).
MAX_WORKERS_ENV = "HPSEARCH_MAX_WORKERS"

#: Share of the memory available now that the workers may take together.
MEMORY_SHARE = 0.8


@dataclass(frozen=True)
class Capacity:
    """What limits the number of workers of a run on this machine."""

    cores: int
    """Workers the cores carry: one each (training is compute-bound), or
    ``$HPSEARCH_MAX_WORKERS``."""
    available_bytes: int | None
    """Memory available now (None where it cannot be read)."""
    per_worker_bytes: int
    """Memory one worker process needs: this process's own (the same interpreter and
    libraries) plus the training and validation images it holds."""


def machine_capacity(data_bytes: int) -> Capacity:
    """Measure this machine for workers that each hold ``data_bytes`` of images."""
    override = os.environ.get(MAX_WORKERS_ENV, "").strip()
    cores = int(override) if override.isdigit() and int(override) > 0 else usable_cores()
    return Capacity(
        cores=cores,
        available_bytes=_available_memory(),
        per_worker_bytes=_own_memory() + data_bytes,
    )


def fit_to_machine(
    plan: DevicePlan, trials_left: int, capacity: Capacity
) -> tuple[DevicePlan, str | None]:
    """The plan with no more workers than the cores, the memory and the trials left allow
    (at least one), and a line saying why when that is fewer than planned."""
    limits = [(capacity.cores, f"{capacity.cores} core(s)")]
    if capacity.available_bytes is not None:
        fits = int(capacity.available_bytes * MEMORY_SHARE) // max(1, capacity.per_worker_bytes)
        limits.append(
            (
                fits,
                f"{_gib(capacity.available_bytes)} GiB of memory available at about "
                f"{capacity.per_worker_bytes / 2**20:.0f} MiB per worker",
            )
        )
    limits.append((trials_left, f"{trials_left} trial(s) left to run"))
    count = max(1, min(plan.workers, *(n for n, _ in limits)))
    if count >= plan.workers:
        return plan, None
    why = "; ".join(text for n, text in limits if n <= count)
    return plan.with_workers(count), f"starting {count} worker(s), not {plan.workers}: {why}"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"


def _own_memory() -> int:
    """Resident memory of this process in bytes."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _available_memory() -> int | None:
    """Memory the system can give now without swapping (Linux: MemAvailable, and within
    a container's limit)."""
    system = _system_available()
    limit = _cgroup_room()
    if system is None or limit is None:
        return system if limit is None else limit
    return min(system, limit)


def _cgroup_room() -> int | None:
    """Memory left under this process's cgroup (v2) limit; None without one."""
    try:
        folder = "/sys/fs/cgroup"
        with open(f"{folder}/memory.max") as handle:
            limit = handle.read().strip()
        with open(f"{folder}/memory.current") as handle:
            current = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return None if not limit.isdigit() else max(0, int(limit) - current)


def _system_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None
