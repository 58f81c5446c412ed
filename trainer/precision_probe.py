"""Whether bf16 pays on this CPU, measured: a short probe at a trial's shapes, cached.

Native bf16 instructions do not make bf16 autocast faster on every CPU. With ResNet-18 at
64 px it trained 1.9x as fast as fp32 on an AMD EPYC with AVX512-BF16 and 1.8x on an
Intel Xeon with AMX, but on an Intel Xeon with AVX512-BF16 and no AMX forward + backward
ran at 0.81x fp32 and the whole trainer at 1.05x. And bf16 costs more than speed: a run
resumed from its checkpoint repeats an uninterrupted one bit for bit in fp32, not on
every CPU in bf16. So on a CPU with native bf16, ``precision = "auto"`` is decided by
measuring a few training steps of each precision at the trial's shapes (architecture,
image size, batch size, memory format, channels, classes) and thread count, interleaved,
and is bf16 only when bf16 is at least :data:`BF16_MIN_SPEEDUP` times as fast.

The figures are kept in one JSON file (hpsearch keeps it in its workdir as
:data:`PROBE_CACHE_FILE`), keyed by the CPU, the torch version, the shapes and the thread
count, so a machine measures each shape once; another CPU, torch or shape is measured
afresh. One process measures at a time (``flock`` on ``<file>.lock``, held for any key,
so two probes never share the cores); the others wait, then read what it wrote. The file
is replaced atomically, so a reader without the lock finds the old contents or the new.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer import precision as _precision
from trainer.config import TrainConfig
from trainer.errors import UserError
from trainer.model import build_model

BF16_MIN_SPEEDUP = 1.15
"""bf16 is chosen only when the probe runs it at least this many times as fast as fp32.

A smaller gain is not worth what bf16 costs (bit-exact resume on some CPUs, other
rounding), and is within what separates the probe from a trial: the probe times the
model's steps alone, while batch building and validation, the same in both precisions,
dilute a trial's gain. The CPUs measured so far lie far on either side: 1.8-1.9x where
bf16 pays, 0.8-1.05x where it does not.
"""

PROBE_CACHE_FILE = "precision-probe.json"
"""The cache file's name; hpsearch keeps it in the workdir (one per machine)."""

CACHE_FORMAT = 1
"""Bump when the measurement changes, so that older figures are measured again."""

PROBE_STEPS = 4
"""Timed training steps of each precision (after one untimed step of each): two pairs
with fp32 first, two with bf16 first."""

MIN_CPU_SHARE = 0.5
"""Figures measured while the probe got less than this share of the CPU time its threads
asked for are not cached: they decide the run that measured them, and the next run
measures again. On a machine loaded far beyond its cores, threads wait for each other
more than they compute and bf16 loses its lead: on a 2-core AVX512-BF16 EPYC at a load
average of about 30, the probe on 2 threads got 15-22 % of its CPU time and measured
bf16 at 0.51-0.97x fp32 (the trainer ran it at 0.52x then), while on 1 thread it got
40-55 % and measured 1.67-1.97x (the trainer: 1.82x). Such a verdict is true while the
load lasts, and must not outlive it."""

Measure = Callable[["ProbeShape", int], dict[str, float]]
"""``measure(shape, threads)`` -> ``{"fp32": steps/s, "bf16": steps/s}``, optionally with
``"cpu_share"``: the probe's CPU time over its wall time times ``threads``."""


@dataclass(frozen=True)
class ProbeShape:
    """The shapes of a trial's training step: what makes bf16's gain differ."""

    arch: str
    image_size: int
    batch_size: int
    channels_last: bool
    in_chans: int = 1
    num_classes: int = 4

    @classmethod
    def of(
        cls, config: TrainConfig, image_size: int, *, in_chans: int = 1, num_classes: int = 4
    ) -> ProbeShape:
        """The shapes of a trial trained with ``config`` on ``image_size``-px images."""
        return cls(
            arch=config.arch,
            image_size=image_size,
            batch_size=config.batch_size,
            channels_last=config.channels_last,
            in_chans=in_chans,
            num_classes=num_classes,
        )

    def describe(self) -> str:
        """One line: ``resnet18, 64 px, batch 128, NHWC, 1 channel(s), 4 classes``."""
        layout = "NHWC" if self.channels_last else "NCHW"
        return (
            f"{self.arch}, {self.image_size} px, batch {self.batch_size}, {layout}, "
            f"{self.in_chans} channel(s), {self.num_classes} classes"
        )


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a trial trains in, and how it was chosen.

    ``how`` is ``"asked"`` (an explicit fp32 or bf16), ``"cuda"`` (bf16, no probe),
    ``"no native bf16"`` (fp32, no probe: torch emulates bf16 there, several times slower)
    or ``"probe"`` (measured here or read from the cache; figures in steps/s).
    """

    precision: str
    how: str
    fp32_steps_per_sec: float | None = None
    bf16_steps_per_sec: float | None = None
    threshold: float | None = None
    from_cache: bool = False
    probe_seconds: float | None = None
    """What the measurement cost when it was made (also when read from the cache)."""
    cpu_share: float | None = None
    """The share of its threads' CPU time the probe got (:data:`MIN_CPU_SHARE`)."""
    stored: bool = False
    """Whether the figures are in the cache file (read from it, or measured and kept)."""
    cpu: str | None = None
    """The CPU as the cache names it (:func:`cpu_identity`); probe only."""
    threads: int | None = None
    shape: ProbeShape | None = None

    @property
    def bf16_speedup(self) -> float | None:
        """bf16's steps/s over fp32's; None without a probe."""
        if self.fp32_steps_per_sec is None or self.bf16_steps_per_sec is None:
            return None
        return self.bf16_steps_per_sec / self.fp32_steps_per_sec

    def to_attr(self) -> dict[str, Any]:
        """Plain JSON for a trial attribute or a report: the choice and both figures."""
        speedup = self.bf16_speedup
        return {
            "precision": self.precision,
            "how": self.how,
            "fp32_steps_per_sec": _round(self.fp32_steps_per_sec),
            "bf16_steps_per_sec": _round(self.bf16_steps_per_sec),
            "bf16_speedup": _round(speedup),
            "threshold": self.threshold,
            "from_cache": self.from_cache,
            "probe_seconds": _round(self.probe_seconds),
            "cpu_share": _round(self.cpu_share),
            "stored": self.stored,
            "cpu": self.cpu,
            "threads": self.threads,
            "shape": asdict(self.shape) if self.shape is not None else None,
        }

    @classmethod
    def from_attr(cls, attr: dict[str, Any]) -> PrecisionChoice:
        """The choice back from :meth:`to_attr`'s JSON (a trial attribute, a report)."""
        shape = attr.get("shape")
        return cls(
            precision=attr["precision"],
            how=attr["how"],
            fp32_steps_per_sec=attr.get("fp32_steps_per_sec"),
            bf16_steps_per_sec=attr.get("bf16_steps_per_sec"),
            threshold=attr.get("threshold"),
            from_cache=bool(attr.get("from_cache")),
            probe_seconds=attr.get("probe_seconds"),
            cpu_share=attr.get("cpu_share"),
            stored=bool(attr.get("stored")),
            cpu=attr.get("cpu"),
            threads=attr.get("threads"),
            shape=ProbeShape(**shape) if isinstance(shape, dict) else None,
        )

    def describe(self) -> str:
        """One line for a terminal, e.g. ``bf16, chosen by the probe: fp32 0.8 steps/s
        (102 img/s), bf16 1.5 steps/s (192 img/s) on 2 thread(s); bf16 1.88x fp32 >= 1.15x;
        measured in 9.8 s, cached``."""
        if self.how == "asked":
            return f"{self.precision}, as asked"
        if self.how != "probe":
            return f"{self.precision} (auto: {self.how}; not measured)"
        assert self.shape is not None and self.bf16_speedup is not None
        batch = self.shape.batch_size
        figures = (("fp32", self.fp32_steps_per_sec), ("bf16", self.bf16_steps_per_sec))
        rates = ", ".join(
            f"{name} {steps:.3g} steps/s ({steps * batch:.0f} img/s)"
            for name, steps in figures
            if steps is not None
        )
        verdict = ">=" if self.precision == "bf16" else "<"
        took = f"{self.probe_seconds:.1f} s" if self.probe_seconds is not None else "?"
        if self.from_cache:
            source = f"from the cache (measured in {took})"
        elif self.stored:
            source = f"measured in {took}, cached"
        else:
            share = f"{self.cpu_share:.0%}" if self.cpu_share is not None else "?"
            source = f"measured in {took} with {share} of the CPU, not cached"
        return (
            f"{self.precision}, chosen by the probe: {rates} on {self.threads} thread(s); "
            f"bf16 {self.bf16_speedup:.2f}x fp32 {verdict} {self.threshold:.2f}x; {source}"
        )


def resolve_trial_precision(
    config: TrainConfig,
    *,
    image_size: int,
    cache_file: Path,
    in_chans: int = 1,
    num_classes: int = 4,
    measure: Measure | None = None,
    log: Callable[[str], None] | None = None,
) -> PrecisionChoice:
    """The precision a trial of ``config`` on ``image_size``-px images trains in, and why.

    An explicit ``fp32`` or ``bf16`` is kept, and ``auto`` is bf16 on CUDA and fp32 on a
    CPU without native bf16, all without measuring. On a CPU with native bf16, ``auto`` is
    :func:`choose_precision` at the trial's shapes and thread count (``config.threads``,
    else torch's), measured once per machine and shape and then read from ``cache_file``.
    Train with ``dataclasses.replace(config, precision=choice.precision)``.
    """
    from trainer.training import resolve_device

    device = resolve_device(config.device)
    if config.precision != "auto":
        return PrecisionChoice(config.precision, "asked")
    if device.type == "cuda":
        return PrecisionChoice("bf16", "cuda")
    if not _precision.cpu_has_native_bf16():
        return PrecisionChoice("fp32", "no native bf16")
    shape = ProbeShape.of(config, image_size, in_chans=in_chans, num_classes=num_classes)
    threads = config.threads or torch.get_num_threads()
    return choose_precision(shape, threads, cache_file, measure=measure, log=log)


def choose_precision(
    shape: ProbeShape,
    threads: int,
    cache_file: Path,
    *,
    measure: Measure | None = None,
    threshold: float = BF16_MIN_SPEEDUP,
    log: Callable[[str], None] | None = None,
) -> PrecisionChoice:
    """fp32 or bf16 for ``shape`` on ``threads`` CPU threads, from ``cache_file`` or measured.

    Figures cached for this CPU, torch version, shape and thread count are reused
    (``from_cache``); otherwise ``measure`` (default :func:`measure_steps_per_sec`) runs
    while this process holds the file's lock, and its figures are added to the file unless
    the probe got less than :data:`MIN_CPU_SHARE` of the CPU (then they decide this call
    only, and ``log`` says so). The choice is bf16 when bf16's steps/s are at least
    ``threshold`` times fp32's.
    """
    cache_file = Path(cache_file)
    key, identity = probe_key(shape, threads)
    entry = _entry(_read(cache_file), key)
    if entry is not None:
        return _choice(entry, shape, threads, threshold, from_cache=True, stored=True)
    with _locked(cache_file):
        entry = _entry(_read(cache_file), key)  # measured by another process while we waited
        if entry is not None:
            return _choice(entry, shape, threads, threshold, from_cache=True, stored=True)
        if log is not None:
            log(f"measuring fp32 against bf16 for {shape.describe()} on {threads} thread(s)")
        load = os.getloadavg()[0]
        started = time.perf_counter()
        figures = (measure or measure_steps_per_sec)(shape, threads)
        entry = {
            **identity,
            "fp32_steps_per_sec": float(figures["fp32"]),
            "bf16_steps_per_sec": float(figures["bf16"]),
            "cpu_share": round(float(figures.get("cpu_share", 1.0)), 3),
            "load_average": round(load, 2),
            "probe_seconds": round(time.perf_counter() - started, 3),
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
        }
        if not _has_rates(entry):
            raise ValueError(f"the precision probe measured {figures!r}: expected two rates > 0")
        stored = entry["cpu_share"] >= MIN_CPU_SHARE
        if stored:
            doc = _read(cache_file)
            doc["entries"][key] = entry
            _write(cache_file, doc)
        elif log is not None:
            log(
                f"the precision probe got {entry['cpu_share']:.0%} of the CPU time it asked for "
                f"(load average {load:.1f}): its figures decide this run only, not cached"
            )
    return _choice(entry, shape, threads, threshold, from_cache=False, stored=stored)


def measure_steps_per_sec(
    shape: ProbeShape, threads: int, *, steps: int = PROBE_STEPS, warmup: int = 1
) -> dict[str, float]:
    """Training steps per second of ``shape`` in fp32 and in bf16 autocast, on ``threads``.

    A step is what ``fit`` does per batch: forward (under autocast for bf16), loss in fp32,
    backward, an SGD step, on a random batch that stays in memory. Each precision has its
    own model, built alike; after ``warmup`` untimed steps of each, ``steps`` timed steps of
    each alternate, the first of each pair swapping every round, so a load that comes
    and goes on a shared machine slows both alike. Also returns ``cpu_share``: the
    process's CPU time over the timed wall time times ``threads`` (about 1 when the
    threads had their cores). The RNG state is left as it was.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps={steps}, warmup={warmup}: need steps >= 1 and warmup >= 0")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            step = {name: _training_step(shape, name) for name in ("fp32", "bf16")}
            for _ in range(warmup):
                for name in ("fp32", "bf16"):
                    step[name]()
            seconds = {"fp32": 0.0, "bf16": 0.0}
            cpu_started = time.process_time()
            for i in range(steps):
                for name in ("fp32", "bf16") if i % 2 == 0 else ("bf16", "fp32"):
                    started = time.perf_counter()
                    step[name]()
                    seconds[name] += time.perf_counter() - started
            cpu = time.process_time() - cpu_started
    finally:
        torch.set_num_threads(previous)
    wall = max(sum(seconds.values()), 1e-9)
    rates = {name: steps / max(spent, 1e-9) for name, spent in seconds.items()}
    return {**rates, "cpu_share": cpu / (wall * threads)}


def _training_step(shape: ProbeShape, precision: str) -> Callable[[], None]:
    """One training step of a fresh model of ``shape`` in ``precision``, as a function."""
    model = build_model(shape.arch, num_classes=shape.num_classes, in_chans=shape.in_chans)
    size = (shape.batch_size, shape.in_chans, shape.image_size, shape.image_size)
    x = torch.randn(size)
    if shape.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, shape.num_classes, (shape.batch_size,))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    dtype = _precision.autocast_dtype(precision)

    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = model(x)
        criterion(logits.float(), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def cpu_identity() -> str:
    """This CPU as the cache knows it: its name, its vendor's family/model/stepping, torch's
    capability and its bf16 flags.

    Virtual machines often show one name for very different CPUs (``Intel(R) Xeon(R)
    Processor`` with AMX on one, without bf16 on another), so the name alone is not enough.
    """
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor is enough
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    model = " ".join(
        f"{label} {fields[field]}"
        for label, field in (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"))
        if field in fields
    )
    flags = set(fields.get("flags", "").split())
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile"}) or ["no bf16 flags"]
    vendor = fields.get("vendor_id", platform.machine())
    return f"{name} ({vendor} {model}; {_precision.cpu_capability()}; {' '.join(bf16)})"


def probe_key(shape: ProbeShape, threads: int) -> tuple[str, dict[str, Any]]:
    """The cache key of ``shape`` on ``threads`` threads here, and what it is made of."""
    identity = {
        "format": CACHE_FORMAT,
        "cpu": cpu_identity(),
        "torch": str(torch.__version__),
        "shape": asdict(shape),
        "threads": threads,
    }
    key = f"{identity['cpu']} | torch {identity['torch']} | {shape.describe()} | {threads} threads"
    return key, identity


def _choice(
    entry: dict[str, Any],
    shape: ProbeShape,
    threads: int,
    threshold: float,
    *,
    from_cache: bool,
    stored: bool,
) -> PrecisionChoice:
    fp32, bf16 = entry["fp32_steps_per_sec"], entry["bf16_steps_per_sec"]
    return PrecisionChoice(
        precision="bf16" if bf16 >= threshold * fp32 else "fp32",
        how="probe",
        fp32_steps_per_sec=fp32,
        bf16_steps_per_sec=bf16,
        threshold=threshold,
        from_cache=from_cache,
        probe_seconds=entry.get("probe_seconds"),
        cpu_share=entry.get("cpu_share"),
        stored=stored,
        cpu=entry["cpu"],
        threads=threads,
        shape=shape,
    )


def _entry(doc: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The usable entry of ``key`` in ``doc``, or None (absent or not two rates > 0)."""
    entry = doc["entries"].get(key)
    return entry if isinstance(entry, dict) and _has_rates(entry) else None


def _has_rates(entry: dict[str, Any]) -> bool:
    """Whether ``entry`` holds both precisions' steps/s as finite numbers above 0."""
    rates = (entry.get("fp32_steps_per_sec"), entry.get("bf16_steps_per_sec"))
    return all(isinstance(v, int | float) and math.isfinite(v) and v > 0 for v in rates)


def _read(cache_file: Path) -> dict[str, Any]:
    """The cache file's contents; an empty cache when it is missing, unreadable or older."""
    empty: dict[str, Any] = {"format": CACHE_FORMAT, "entries": {}}
    try:
        doc = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return empty
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
        return empty
    if not isinstance(doc.get("entries"), dict):
        return empty
    return doc


def _write(cache_file: Path, doc: dict[str, Any]) -> None:
    """Replace ``cache_file`` with ``doc`` in one rename, so readers never see half of it."""
    tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, cache_file)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {cache_file}: {error.strerror}") from None


@contextlib.contextmanager
def _locked(cache_file: Path) -> Iterator[None]:
    """Hold ``<cache_file>.lock`` exclusively (waiting for a process that holds it).

    The lock file stays: deleting one that another process waits on would let two in.
    """
    lock_path = cache_file.with_name(f"{cache_file.name}.lock")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a+")  # noqa: SIM115 - held across the measurement
    except OSError as error:
        raise UserError(f"cannot write {lock_path}: {error.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _round(value: float | None) -> float | None:
    """``value`` to 4 significant digits (steps/s go from hundreds on a GPU to 0.01)."""
    return None if value is None else float(f"{value:.4g}")
