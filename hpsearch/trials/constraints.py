"""Constraints a study file sets (``[constraints]``), measured on each trial.

A constraint bounds one measure of a trial at its selected epoch, on the validation
split: ``recall.<class>`` and ``specificity.<class>`` (one-vs-rest), any metric the
trainer records (``val_accuracy``, ``val_auc_covid``...), the trial's cost
(``device_seconds``) or its peak memory (``peak_memory_mb``)::

    [constraints]
    "recall.covid" = { min = 0.90 }
    device_seconds = { max = 600 }

Each trial records each constraint's violation through Optuna's ``Trial.set_constraint``
(stored as the trial's ``constraints:<name>`` system attribute): the amount by which it
misses its bound, or a negative margin when it keeps it. TPE, NSGA-II and GP read them
there (Optuna 5 replaced the samplers' ``constraints_func`` by this), optuna-dashboard and
Optuna's plots mark infeasible trials from them, and a trial is feasible when every value
is zero or less (:func:`is_feasible`), the rule Optuna uses.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial

#: A violation recorded for a measure the trial did not record (a diverged model's NaN,
#: a metric of a class absent from the split): such a trial is infeasible.
UNMEASURED = 1.0e6


@dataclass(frozen=True)
class Constraint:
    """A bound on one measure: ``min <= value`` and/or ``value <= max``."""

    name: str
    """As the study file writes it (``recall.covid``)."""
    min: float | None = None
    max: float | None = None

    @property
    def key(self) -> str:
        """Where the value is recorded: a metric name, or a cost measure."""
        kind, dot, rest = self.name.partition(".")
        return f"val_{kind}_{rest}" if dot else self.name

    def violation(self, value: float | None) -> float:
        """By how much ``value`` misses the bound (> 0), or keeps it (<= 0)."""
        if value is None or not math.isfinite(value):
            return UNMEASURED
        over = [self.min - value] if self.min is not None else []
        over += [value - self.max] if self.max is not None else []
        return max(over)

    def describe(self) -> str:
        parts = [f"{self.name} >= {self.min:g}"] if self.min is not None else []
        parts += [f"{self.name} <= {self.max:g}"] if self.max is not None else []
        return " and ".join(parts)

    def to_dict(self) -> dict[str, float]:
        return {k: v for k, v in (("min", self.min), ("max", self.max)) if v is not None}


def from_table(table: Mapping[str, Mapping[str, float]]) -> tuple[Constraint, ...]:
    """The constraints of a checked ``[constraints]`` table, in file order."""
    return tuple(Constraint(name, b.get("min"), b.get("max")) for name, b in table.items())


def from_record(raw: Any) -> tuple[Constraint, ...]:
    """The constraints a study recorded (``{name: {min, max}}``); () for none. An entry
    that is not such a table of numbers (a record written by hand) is left out."""
    if not isinstance(raw, dict):
        return ()
    table = {
        name: bounds
        for name, bounds in raw.items()
        if isinstance(name, str)
        and isinstance(bounds, dict)
        and all(_number(bounds.get(k)) or bounds.get(k) is None for k in ("min", "max"))
    }
    return from_table(table)


def measures(result: Mapping[str, Any], cost: Mapping[str, Any] | None) -> dict[str, float]:
    """Every value a constraint may bound, from a trial's result and cost."""
    values = {k: float(v) for k, v in result.items() if _number(v) and k.startswith("val_")}
    if cost is not None and _number(cost.get("device_seconds")):
        values["device_seconds"] = float(cost["device_seconds"])
    peak = (cost or {}).get("peak_memory_mb", result.get("peak_memory_mb"))
    if _number(peak):
        values["peak_memory_mb"] = float(peak)
    return values


def violations(constraints: Iterable[Constraint], values: Mapping[str, float]) -> dict[str, float]:
    """Each constraint's violation (<= 0: kept) given the measured ``values``."""
    return {c.name: c.violation(values.get(c.key)) for c in constraints}


def is_feasible(trial: FrozenTrial) -> bool:
    """Optuna's rule: every recorded constraint value <= 0 (a trial without any is)."""
    return all(v <= 0.0 for v in trial.constraints.values())


def broken(trial: FrozenTrial) -> list[str]:
    """Names of the constraints ``trial`` breaks."""
    return [name for name, v in trial.constraints.items() if v > 0.0]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def format_checks(checks: list[dict[str, Any]]) -> list[str]:
    """One line per constraint an export checked on its evaluated split
    (``metrics.json``'s ``constraints``), for the log, the report and the model card."""
    lines = []
    for check in checks:
        value = "not measured" if check["value"] is None else f"{check['value']:.4g}"
        ci = check["ci95"]
        interval = f" (95 % CI {ci[0]:.4g}-{ci[1]:.4g})" if ci else ""
        verdict = "kept" if check["kept"] else "NOT kept"
        if check["kept"] and ci and not check["kept_by_whole_interval"]:
            verdict += ", but its interval crosses the bound"
        where = f"on the {check['split']} split" if check["split"] else "while it trained"
        lines.append(f"{check['bound']} {where}: {value}{interval}: {verdict}")
    return lines
