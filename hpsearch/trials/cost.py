"""What a trial cost, what a study cost, and what pruning saved.

A trial's cost is measured where it trains (:class:`CostMeter`): **device-seconds** (on a
GPU, the seconds the trial held it; on CPU, the core-seconds its process used, so four
threads for a minute are 240), the epochs this trial trained itself (epochs resumed from
an earlier attempt's checkpoint were paid for by that attempt) and the peak memory. It
is recorded in the trial's ``result`` (complete and pruned trials) or, for a trial that
ends without one (interrupted, failed), as its own ``cost`` attribute, so a study's
totals count every attempt.

What pruning saved is estimated per pruned trial: the epochs it did not train (its
budget minus the epochs its curve reached), at its own measured device-seconds per
epoch (the mean of the trials that finished training, for a pruned trial that measured
none).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpsearch.trials.record import RESULT, TrialRecord

COST = "cost"
"""The attribute (and the ``result`` key) a trial's cost is recorded under."""


@dataclass(frozen=True)
class TrialCost:
    """One trial's cost, as recorded."""

    device_seconds: float
    """GPU-seconds on a GPU, CPU core-seconds on a CPU."""
    unit: str
    """``gpu`` or ``cpu``: what a device-second is."""
    epochs: int
    """Epochs this trial trained itself."""
    peak_memory_mb: float | None = None

    def to_attr(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_attr(cls, raw: Any) -> TrialCost | None:
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                device_seconds=float(raw["device_seconds"]),
                unit=str(raw.get("unit", "cpu")),
                epochs=int(raw.get("epochs", 0)),
                peak_memory_mb=_float_or_none(raw.get("peak_memory_mb")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def plus(self, later: TrialCost) -> TrialCost:
        """This cost and that of a later run of the same trial (a promoted one), together."""
        peaks = [p for p in (self.peak_memory_mb, later.peak_memory_mb) if p is not None]
        return TrialCost(
            device_seconds=round(self.device_seconds + later.device_seconds, 3),
            unit=later.unit,
            epochs=self.epochs + later.epochs,
            peak_memory_mb=max(peaks) if peaks else None,
        )

    @property
    def seconds_per_epoch(self) -> float | None:
        return self.device_seconds / self.epochs if self.epochs else None


class CostMeter:
    """Measures one trial from its start: wall time on a GPU, process CPU time on CPU."""

    def __init__(self, device: str) -> None:
        self.unit = "gpu" if device.startswith("cuda") else "cpu"
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def read(self, epochs: int, peak_memory_mb: float | None = None) -> TrialCost:
        if self.unit == "gpu":
            seconds = time.perf_counter() - self._wall
        else:
            seconds = time.process_time() - self._cpu
        peak = round(peak_memory_mb, 1) if peak_memory_mb is not None else None
        return TrialCost(round(seconds, 3), self.unit, epochs, peak)


def trial_cost(trial: FrozenTrial) -> TrialCost | None:
    """The cost a trial recorded (in its ``result``, else its ``cost`` attribute)."""
    result = trial.user_attrs.get(RESULT)
    if isinstance(result, dict) and COST in result:
        return TrialCost.from_attr(result[COST])
    return TrialCost.from_attr(trial.user_attrs.get(COST))


@dataclass(frozen=True)
class StudyCost:
    """A study's totals over the trials that recorded a cost, and pruning's savings."""

    trials: int
    device_seconds: float
    epochs: int
    units: tuple[str, ...]
    """The kinds of device-second summed (``gpu``, ``cpu``; both for a mixed study)."""
    peak_memory_mb: float | None
    pruned: int
    epochs_saved: int
    device_seconds_saved: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "units": list(self.units)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudyCost:
        return cls(**{**raw, "units": tuple(raw.get("units", ()))})

    @property
    def unit_label(self) -> str:
        labels = {"gpu": "GPU-seconds", "cpu": "CPU core-seconds"}
        return " + ".join(labels[u] for u in self.units) or "device-seconds"


def study_cost(trials: Iterable[FrozenTrial]) -> StudyCost:
    """Totals over ``trials`` (each with a recorded cost) and what pruning saved."""
    costed = [(t, c) for t in trials if (c := trial_cost(t)) is not None]
    finished_rates = [
        rate
        for t, c in costed
        if t.state == TrialState.COMPLETE and (rate := c.seconds_per_epoch) is not None
    ]
    fallback = sum(finished_rates) / len(finished_rates) if finished_rates else 0.0
    epochs_saved, seconds_saved, pruned = 0, 0.0, 0
    for trial, cost in costed:
        if trial.state != TrialState.PRUNED:
            continue
        pruned += 1
        saved = epochs_not_trained(trial)
        rate = cost.seconds_per_epoch
        epochs_saved += saved
        seconds_saved += saved * (rate if rate is not None else fallback)
    peaks = [c.peak_memory_mb for _, c in costed if c.peak_memory_mb is not None]
    return StudyCost(
        trials=len(costed),
        device_seconds=round(sum(c.device_seconds for _, c in costed), 3),
        epochs=sum(c.epochs for _, c in costed),
        units=tuple(sorted({c.unit for _, c in costed})),
        peak_memory_mb=max(peaks) if peaks else None,
        pruned=pruned,
        epochs_saved=epochs_saved,
        device_seconds_saved=round(seconds_saved, 3),
    )


def epochs_not_trained(trial: FrozenTrial) -> int:
    """Epochs of its budget a pruned trial did not train (its curve's end to the budget)."""
    record = TrialRecord.read(trial)
    budget = (record.config or {}).get("epochs")
    reached = record.epochs_run
    if reached is None and trial.intermediate_values:
        reached = max(trial.intermediate_values)
    if not isinstance(budget, int) or reached is None:
        return 0
    return max(0, budget - int(reached))


def format_cost(cost: StudyCost, what: str = "search") -> list[str]:
    """The cost lines of ``status`` and the report (empty when nothing recorded one)."""
    if not cost.trials:
        return []
    peak = f", peak memory {cost.peak_memory_mb:.0f} MB" if cost.peak_memory_mb else ""
    lines = [
        f"  cost of the {what}: {_seconds(cost.device_seconds)} {cost.unit_label} over "
        f"{cost.trials} trials, {cost.epochs} epochs trained{peak}"
    ]
    if cost.pruned:
        whole = cost.device_seconds + cost.device_seconds_saved
        share = 100 * cost.device_seconds_saved / whole if whole else 0.0
        lines.append(
            f"  pruning saved about {cost.epochs_saved} epochs and "
            f"{_seconds(cost.device_seconds_saved)} {cost.unit_label} ({share:.0f} % of "
            f"the {what} without pruning; estimated for its {cost.pruned} pruned trials)"
        )
    return lines


def _seconds(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
