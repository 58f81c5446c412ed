"""A study file as one typed, frozen :class:`StudySpec`, and what it says at each scale.

A study file declares the sampler, the pruner, the objective, the budget, the fixed
training values, the search space, configurations to run first, and its scales
(``demo`` for the synthetic data, ``full`` for real data, others by name). Reading and
checking a file is :mod:`hpsearch.study.load`; this module only answers questions about
a study that was read: its values, space, grid and budget at a scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from pydantic import BaseModel

from hpsearch.study import grid
from hpsearch.study.samplers import SAMPLERS, build_pruner
from hpsearch.study.schema import StopSettings, objective_direction
from hpsearch.study.space import Param
from hpsearch.trials.applicable import IGNORED_NOTE
from hpsearch.trials.constraints import Constraint
from trainer.config import DemoConfig
from trainer.errors import UserError


@dataclass(frozen=True)
class PrunerSpec:
    kind: str = "none"
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScaleSpec:
    """Values of one scale: training fields, data settings, (demo) generator settings,
    search-space axes narrowed for this scale, pruner settings and enqueued points."""

    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    demo: dict[str, Any] = field(default_factory=dict)
    space: tuple[Param, ...] = ()
    pruner: dict[str, Any] = field(default_factory=dict)
    """Pruner settings that replace the study's at this scale (its kind stays)."""
    enqueue: tuple[dict[str, Any], ...] | None = None
    """Configurations run first at this scale, as written, in place of the study's;
    None: the study's."""
    queued: tuple[dict[str, Any], ...] = ()
    """The configurations run first at this scale, checked against its space and typed
    (filled in when the file is loaded)."""


@dataclass(frozen=True)
class StudySpec:
    """A whole study file (frozen, picklable: it travels to worker processes)."""

    path: Path
    name: str
    sampler: str
    seed: int
    metric: str
    direction: str
    pruner: PrunerSpec
    n_trials: int | None
    """Trial budget (random/TPE); a grid's budget is its number of points."""
    timeout_s: float | None
    fixed: dict[str, Any]
    space: tuple[Param, ...]
    scales: dict[str, ScaleSpec]
    description: str = ""
    enqueue: tuple[dict[str, Any], ...] = ()
    """``[[enqueue]]``: configurations run first at every scale without its own list."""
    stop: StopSettings | None = None
    """``[stop]``: early stopping of a random or TPE study; None: run the whole budget."""
    sampler_settings: BaseModel | None = None
    """The sampler's own section (``[tpe]``), defaults filled in; None for a sampler
    without settings."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Values given with ``--set``, for the record."""
    grid_every_point: bool = False
    """Train every point of a grid, also those that would train alike (see
    :meth:`grid_indices`): how studies made before such points were skipped go on."""
    demo: DemoConfig | None = None
    """The synthetic dataset of the ``demo`` scale (filled in when the file is loaded)."""
    constraints: tuple[Constraint, ...] = ()
    """``[constraints]``: bounds a trial must keep to be feasible (validation split)."""
    objectives: tuple[str, ...] = ()
    """``[study] objectives``: two or more (a Pareto front), ``metric`` first; () for one."""

    @property
    def directions(self) -> tuple[str, ...]:
        """The direction of each objective (one for a single-objective study)."""
        if not self.objectives:
            return (self.direction,)
        return tuple(objective_direction(name) for name in self.objectives)

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def scale_names(self) -> tuple[str, ...]:
        return tuple(self.scales)

    @property
    def is_grid(self) -> bool:
        """True when each slot trains one point of the grid (every point once)."""
        return SAMPLERS[self.sampler].fixed_points

    def ensure_scale(self, scale: str) -> None:
        """A one-line error listing the scales the file defines, unless ``scale`` is one."""
        if scale not in self.scales:
            known = ", ".join(self.scales)
            raise UserError(f"{self.path}: no scale {scale!r} (defined: {known})")

    def scale(self, scale: str) -> ScaleSpec:
        """The values of ``scale`` (an unknown scale is :meth:`ensure_scale`'s error)."""
        self.ensure_scale(scale)
        return self.scales[scale]

    def pruner_at(self, scale: str) -> PrunerSpec:
        """The pruner at ``scale``: ``[scale.X.pruner]`` replaces the settings it names, or
        names another kind (then the study's ``[pruner]`` settings do not apply)."""
        over = dict(self.scale(scale).pruner)
        kind = over.pop("kind", None) or self.pruner.kind
        base = self.pruner.settings if kind == self.pruner.kind else {}
        return PrunerSpec(kind=kind, settings={**base, **over})

    def build_pruner(self, scale: str) -> optuna.pruners.BasePruner:
        """The Optuna pruner of ``scale``; pruning reads the per-epoch validation metric.
        None prunes a study of several objectives (Optuna prunes single-objective ones)."""
        if self.multi_objective:
            return optuna.pruners.NopPruner()
        pruner = self.pruner_at(scale)
        return build_pruner(pruner.kind, dict(pruner.settings))

    def space_at(self, scale: str) -> tuple[Param, ...]:
        """The search space at ``scale``: ``[scale.X.space]`` replaces the axes it names."""
        override = {p.name: p for p in self.scale(scale).space}
        return tuple(override.get(p.name, p) for p in self.space)

    def train_values(self, scale: str) -> dict[str, Any]:
        """Fixed training values at ``scale`` (the scale's values override ``[fixed]``);
        the trainer's monitor is always the study's metric."""
        return {**self.fixed, **self.scale(scale).train, "monitor": self.metric}

    def data_values(self, scale: str) -> dict[str, Any]:
        return dict(self.scale(scale).data)

    def demo_values(self, scale: str) -> dict[str, Any]:
        return dict(self.scale(scale).demo)

    def demo_config(self) -> DemoConfig:
        """The synthetic dataset the study trains on without ``--data`` (its demo scale's)."""
        self.ensure_scale("demo")
        return self.demo if self.demo is not None else DemoConfig()

    def enqueued(self, scale: str) -> list[dict[str, Any]]:
        """Configurations to run first at ``scale``, each giving every axis, in file order."""
        return list(self.scale(scale).queued)

    # -- the grid ------------------------------------------------------------------------

    def grid_points(self, scale: str) -> list[dict[str, Any]]:
        """Every point of the grid at ``scale``, in file order (first axis varies slowest)."""
        return grid.grid_points(self.space_at(scale))

    def training_key(self, scale: str, point: dict[str, Any]) -> grid.TrainingKey:
        """What of a grid ``point`` reaches the training; points with one key train alike."""
        return grid.training_key(point, self.train_values(scale))

    def grid_indices(self, scale: str) -> list[int]:
        """The grid points that are trained (indices in file order): one per distinct
        training, the first in file order. A grid crosses every axis with every other, so
        without this the original team's grid trains 12 of its 48 points twice (Adam with
        each momentum). With ``grid_every_point``, every point."""
        points = self.grid_points(scale)
        if self.grid_every_point:
            return list(range(len(points)))
        return grid.distinct_indices(points, self.train_values(scale))

    def trained_point(self, scale: str, point: dict[str, Any]) -> int:
        """The index of the trained grid point that trains like ``point`` (a grid point)."""
        points = self.grid_points(scale)
        if self.grid_every_point:
            return points.index(point)
        key = self.training_key(scale, point)
        trained = self.grid_indices(scale)
        return next(i for i in trained if self.training_key(scale, points[i]) == key)

    def grid_skipped(self, scale: str) -> str:
        """A few words on the grid points not trained because another trains alike, or ''."""
        skipped = len(self.grid_points(scale)) - len(self.grid_indices(scale))
        if not self.is_grid or skipped == 0:
            return ""
        return f"{skipped} grid point(s) skipped as they would train like another: {IGNORED_NOTE}"

    def grid_order(self, scale: str) -> list[int]:
        """Which grid point (index in file order) each slot trains: the enqueued points
        first, each in its own point's slot (so it runs once), then the others shuffled by
        the study's seed; a point that trains like an earlier one has no slot. The order is
        recorded in the study and checked when a study is resumed, so slot k always means
        the same point."""
        points = self.grid_points(scale)
        first = [self.trained_point(scale, p) for p in self.enqueued(scale) if p in points]
        return grid.slot_order(len(points), self.grid_indices(scale), first, self.seed)

    def budget(self, scale: str) -> int:
        """Number of trials that completes the study (exactly once each)."""
        if self.is_grid:
            return len(self.grid_indices(scale))
        assert self.n_trials is not None  # the schema requires it without a grid
        return self.n_trials

    # -- where a value was written (for errors) -------------------------------------------

    def setting_key(self, scale: str, name: str) -> str:
        """Where the value of setting ``name`` at ``scale`` was given (for errors)."""
        table = self.scales[scale]
        if name in self.overrides:
            return f"--set {name}"
        if name in table.train or name in table.data or name in table.demo:
            return f"scale.{scale}.{name}"
        if name in self.fixed:
            return f"fixed.{name}"
        return f"scale.{scale}.{name}"

    def axis_key(self, scale: str, name: str) -> str:
        narrowed = any(p.name == name for p in self.scales[scale].space)
        return f"scale.{scale}.space.{name}" if narrowed else f"space.{name}"
