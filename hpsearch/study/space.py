"""Search-space axes of a study file, and the configurations it enqueues."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel

from hpsearch.study.samplers import STRICT
from hpsearch.study.schema import TRAIN_TYPES, one_line, typed, validate


@dataclass(frozen=True)
class Param:
    """One search-space axis: a list of values (grid or categorical) or a numeric range."""

    name: str
    values: tuple[Any, ...] = ()
    """Grid values, or the choices of a categorical axis."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    integer: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a range axis."""
        assert self.low is not None and self.high is not None, f"{self.name} is not a range"
        return self.low, self.high


class _RangeAxis(BaseModel):
    """``{low, high, log, step}`` or ``{choices}``; numbers are typed by the setting."""

    model_config = STRICT
    low: Any = None
    high: Any = None
    log: bool = False
    step: Any = None
    choices: list[Any] | None = None


def parse_axis(path: Path, key: str, name: str, axis: Any, sampler: str) -> Param:
    """The axis of setting ``name`` written at ``key``: values typed like the setting."""
    if isinstance(axis, list):
        return Param(name=name, values=_values(path, key, name, axis))
    if sampler == "grid":
        raise one_line(path, key, "a grid axis must be a list of values")
    if not isinstance(axis, dict):
        raise one_line(path, key, "expected a list of values or a {low, high} table")
    table = validate(path, _RangeAxis, axis, key)
    if table.choices is not None:
        if len(table.model_fields_set) > 1:
            raise one_line(path, key, "choices take no low, high, log or step")
        return Param(name=name, values=_values(path, key, name, table.choices))
    number = _number_type(name)
    if number is None:
        raise one_line(path, key, "a range needs a numeric setting; give a list of values")
    if table.low is None or table.high is None:
        raise one_line(path, key, "a range needs low and high")
    low = typed(path, f"{key}.low", name, table.low)
    high = typed(path, f"{key}.high", name, table.high)
    if not low < high:
        raise one_line(path, key, f"low ({low}) must be < high ({high})")
    if table.log and low <= 0:
        raise one_line(path, f"{key}.low", "must be > 0 on a log scale")
    step = None if table.step is None else typed(path, f"{key}.step", name, table.step)
    if step is not None and step <= 0:
        raise one_line(path, f"{key}.step", "must be > 0")
    integer = number is int
    return Param(name=name, low=low, high=high, log=table.log, step=step, integer=integer)


def _values(path: Path, key: str, name: str, raw: list[Any]) -> tuple[Any, ...]:
    if not raw:
        raise one_line(path, key, "empty list of values")
    values = tuple(typed(path, key, name, v) for v in raw)
    if len(set(values)) != len(values):
        raise one_line(path, key, "repeated values")
    return values


def _number_type(name: str) -> type | None:
    """``int`` or ``float`` for a numeric setting (``int | None`` counts), else None."""
    kinds: set[type] = set(typing.get_args(TRAIN_TYPES[name]) or (TRAIN_TYPES[name],))
    kinds -= {type(None)}
    if kinds == {int} or kinds == {float}:
        return kinds.pop()
    return None


def check_point(
    path: Path, key: str, point: dict[str, Any], space: tuple[Param, ...], where: str
) -> dict[str, Any]:
    """An enqueued configuration, checked against the axes of one scale (``where``).

    Every axis is given; a value of a list axis is one of its values (on a grid: a grid
    point, which then shares that point's slot); a range value lies within the range and
    on its step. Returns the values typed like their settings, in axis order.
    """
    names = [p.name for p in space]
    unknown = sorted(set(point) - set(names))
    if unknown:
        axes = ", ".join(names)
        raise one_line(path, f"{key}.{unknown[0]}", f"not one of the axes ({axes}) {where}")
    missing = [n for n in names if n not in point]
    if missing:
        raise one_line(path, key, f"gives no {missing[0]} (every axis is needed)")
    result = {}
    for p in space:
        value = typed(path, f"{key}.{p.name}", p.name, point[p.name])
        problem = _outside(p, value)
        if problem:
            raise one_line(path, f"{key}.{p.name}", f"{problem} {where}")
        result[p.name] = value
    return result


def _outside(p: Param, value: Any) -> str | None:
    """Why ``value`` is not a value of axis ``p``, or None."""
    if not p.is_range:
        if value in p.values:
            return None
        return f"{value!r} is not one of {', '.join(map(repr, p.values))}"
    assert p.low is not None and p.high is not None
    if not p.low <= value <= p.high:
        return f"{value!r} is outside [{p.low}, {p.high}]"
    if p.step is not None:
        steps = (value - p.low) / p.step
        if not math.isclose(steps, round(steps), abs_tol=1e-9):
            return f"{value!r} is not on the step {p.step} from {p.low}"
    return None


def suggest(trial: optuna.Trial, space: tuple[Param, ...]) -> dict[str, Any]:
    """Ask the trial for every axis of the space (grid axes are categorical)."""
    params: dict[str, Any] = {}
    for p in space:
        if not p.is_range:
            params[p.name] = trial.suggest_categorical(p.name, list(p.values))
        elif p.integer:
            low, high = p.bounds()
            step = int(p.step) if p.step else 1
            params[p.name] = trial.suggest_int(p.name, int(low), int(high), step=step, log=p.log)
        else:
            low, high = p.bounds()
            params[p.name] = trial.suggest_float(p.name, low, high, step=p.step, log=p.log)
    return params


def distributions(space: tuple[Param, ...]) -> dict[str, BaseDistribution]:
    """The Optuna distribution of every axis, exactly as :func:`suggest` asks for it."""
    out: dict[str, BaseDistribution] = {}
    for p in space:
        if not p.is_range:
            out[p.name] = CategoricalDistribution(list(p.values))
        elif p.integer:
            low, high = p.bounds()
            step = int(p.step) if p.step else 1
            out[p.name] = IntDistribution(int(low), int(high), log=p.log, step=step)
        else:
            low, high = p.bounds()
            out[p.name] = FloatDistribution(low, high, log=p.log, step=p.step)
    return out
