"""Study files: TOML parsed into one typed, validated, frozen :class:`StudySpec`.

A study file declares the sampler, the pruner, the objective, the budget, the fixed
training values, the search space, configurations to run first, and its scales
(``demo`` for the synthetic data, ``full`` for real data, others by name). The schema is
in :mod:`hpsearch.spec_model`, the axes in :mod:`hpsearch.spec_space`, the checks by the
configuration classes' own rules in :mod:`hpsearch.spec_rules`. Every mistake is a
one-line :class:`UserError` naming the file and the key.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hpsearch import spec_rules
from hpsearch.spec_model import (
    DATA_KEYS,
    DEMO_TYPES,
    PRUNERS,
    SAMPLERS,
    TRAIN_TYPES,
    StopSettings,
    StudyFile,
    TpeSettings,
    given,
    is_setting,
    typed,
    validate,
)
from hpsearch.spec_space import Param, parse_axis
from reports.applicable import IGNORED_NOTE, applicable
from trainer.config import DemoConfig, SettingError
from trainer.config import check_seed as _seed_rule
from trainer.errors import UserError

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "Param",
    "PrunerSpec",
    "ScaleSpec",
    "StopSettings",
    "StudySpec",
    "TpeSettings",
    "check_seed",
    "find_study_file",
    "load_study_file",
]

DEMO_KEYS = tuple(DEMO_TYPES)


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
    """Configurations run first at this scale, in place of the study's; None: the study's."""


def check_seed(value: Any, key: str = "--seed") -> int:
    """``value`` if it is a seed of a study, in [0, 2**32); else a one-line error at ``key``."""
    if type(value) is not int:
        raise UserError(f"{key}: expected an integer, got {value!r}")
    try:
        return _seed_rule("seed", value)
    except SettingError as err:
        raise UserError(f"{key}: {err.why} (got {value})") from None


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
    tpe: TpeSettings | None = None
    """``[tpe]`` settings; None unless the sampler is TPE."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Values given with ``--set`` (see :meth:`with_overrides`), for the record."""
    grid_every_point: bool = False
    """Train every point of a grid, also those that would train alike (see
    :meth:`grid_indices`): how studies made before such points were skipped go on."""

    @property
    def scale_names(self) -> tuple[str, ...]:
        return tuple(self.scales)

    def scale(self, scale: str) -> ScaleSpec:
        """The values of ``scale``; an unknown one is a one-line error listing the others."""
        if scale not in self.scales:
            known = ", ".join(self.scales)
            raise UserError(f"{self.path}: no scale {scale!r} (defined: {known})")
        return self.scales[scale]

    def pruner_at(self, scale: str) -> PrunerSpec:
        """The pruner at ``scale``: ``[scale.X.pruner]`` replaces the settings it names."""
        settings = {**self.pruner.settings, **self.scale(scale).pruner}
        return PrunerSpec(kind=self.pruner.kind, settings=settings)

    def space_at(self, scale: str) -> tuple[Param, ...]:
        """The search space at ``scale``: ``[scale.X.space]`` replaces the axes it names."""
        override = {p.name: p for p in self.scale(scale).space}
        return tuple(override.get(p.name, p) for p in self.space)

    def grid_points(self, scale: str) -> list[dict[str, Any]]:
        """Every point of the grid at ``scale``, in file order (first axis varies slowest)."""
        space = self.space_at(scale)
        names = [p.name for p in space]
        combos = itertools.product(*(p.values for p in space))
        return [dict(zip(names, combo, strict=True)) for combo in combos]

    def training_key(self, scale: str, point: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
        """What of a grid point reaches the training: its values less those its optimizer
        ignores (an Adam point's momentum), with the optimizer taken from the point or from
        ``[fixed]``. Two points with the same key train alike."""
        merged = {**self.train_values(scale), **point}
        return tuple(sorted((k, v) for k, v in applicable(merged).items() if k in point))

    def grid_indices(self, scale: str) -> list[int]:
        """The grid points that are trained (indices in file order): one per distinct
        training, the first in file order. A grid crosses every axis with every other, so
        without this the original team's grid trains 12 of its 48 points twice (Adam with
        each momentum). With ``grid_every_point``, every point."""
        points = self.grid_points(scale)
        if self.grid_every_point:
            return list(range(len(points)))
        first: dict[tuple[tuple[str, Any], ...], int] = {}
        for i, point in enumerate(points):
            first.setdefault(self.training_key(scale, point), i)
        return sorted(first.values())

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
        if self.sampler != "grid" or skipped == 0:
            return ""
        return f"{skipped} grid point(s) skipped as they would train like another: {IGNORED_NOTE}"

    def budget(self, scale: str) -> int:
        """Number of trials that completes the study (exactly once each)."""
        if self.sampler == "grid":
            return len(self.grid_indices(scale))
        assert self.n_trials is not None
        return self.n_trials

    def train_values(self, scale: str) -> dict[str, Any]:
        """Fixed training values at ``scale`` (the scale's values override ``[fixed]``)."""
        return {**self.fixed, **self.scale(scale).train}

    def data_values(self, scale: str) -> dict[str, Any]:
        return dict(self.scale(scale).data)

    def demo_values(self, scale: str) -> dict[str, Any]:
        return dict(self.scale(scale).demo)

    def demo_config(self, scale: str) -> DemoConfig:
        """The synthetic dataset of ``scale`` (defaults where the file gives none)."""
        return spec_rules.demo_config(self, scale)

    def enqueued(self, scale: str) -> list[dict[str, Any]]:
        """Configurations to run first at ``scale``, each giving every axis, in file order."""
        self.scale(scale)
        return spec_rules.enqueued(self, scale)

    def with_seed(self, seed: Any) -> StudySpec:
        """This study with another seed (the ``--seed`` override), checked like the file's."""
        return replace(self, seed=check_seed(seed, "--seed"))

    def with_overrides(self, items: Sequence[str], scale: str) -> StudySpec:
        """This study with ``KEY=VALUE`` settings (``--set``) replacing ``scale``'s values.

        Values are TOML scalars (anything else is a string), checked exactly like the
        file's; an error names ``--set KEY``. The applied values are in ``overrides``.
        """
        values = parse_overrides(items, self, scale)
        table = self.scale(scale)
        split = {
            kind: {k: v for k, v in values.items() if _kind(k) == kind}
            for kind in ("train", "data", "demo")
        }
        table = replace(
            table,
            train={**table.train, **split["train"]},
            data={**table.data, **split["data"]},
            demo={**table.demo, **split["demo"]},
        )
        spec = replace(
            self,
            scales={**self.scales, scale: table},
            overrides={**self.overrides, **values},
        )
        spec_rules.check_scale(spec, scale)
        return spec

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


def _kind(name: str) -> str:
    if name in DEMO_KEYS:
        return "demo"
    return "data" if name in DATA_KEYS else "train"


def parse_overrides(items: Sequence[str], spec: StudySpec, scale: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings as typed settings of ``scale``; one-line errors name the key."""
    axes = {p.name for p in spec.space_at(scale)}
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        key = f"--set {name}"
        if not sep or not name:
            raise UserError(f"--set {item}: expected KEY=VALUE")
        if not is_setting(name):
            raise UserError(f"{key}: not a training, data or demo setting")
        if name in axes:
            raise UserError(f"{key}: is a search-space axis at scale {scale}")
        if name in DEMO_KEYS and scale != "demo":
            raise UserError(f"{key}: synthetic data settings belong to the demo scale")
        values[name] = typed(spec.path, key, name, _scalar(text.strip()))
    return values


def _scalar(text: str) -> Any:
    """A TOML scalar (``10``, ``1e-3``, ``false``, ``"x"``), else the text itself."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    return value if isinstance(value, bool | int | float | str) else text


def find_study_file(name_or_path: str, search_dirs: list[Path] | None = None) -> Path:
    """A study file by path, or by name in ``./studies`` and the project's ``studies/``."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path or candidate.exists():
        if candidate.is_file():
            return candidate
        raise UserError(f"study file {name_or_path} not found")
    dirs = search_dirs or [Path.cwd() / "studies", Path(__file__).resolve().parents[1] / "studies"]
    for folder in dirs:
        path = folder / f"{name_or_path}.toml"
        if path.is_file():
            return path
    known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.toml")})
    raise UserError(
        f"no study named {name_or_path!r} (known: {', '.join(known) or 'none'}; "
        "or give a path to a .toml file)"
    )


def load_study_file(path: Path) -> StudySpec:
    """Parse and validate a study file."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: TOML syntax error: {err}") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror}") from None
    spec = _build(path, validate(path, StudyFile, raw))
    for scale in spec.scales:
        spec_rules.check_scale(spec, scale)
    return spec


def _build(path: Path, file: StudyFile) -> StudySpec:
    sampler = file.study.sampler
    space = tuple(
        parse_axis(path, f"space.{name}", name, axis, sampler) for name, axis in file.space.items()
    )
    return StudySpec(
        path=path,
        name=file.study.name if file.study.name is not None else path.stem,
        sampler=sampler,
        seed=file.study.seed,
        metric=file.study.metric,
        direction=file.study.direction,
        pruner=PrunerSpec(kind=file.pruner.kind, settings=file.pruner.given()),
        n_trials=file.budget.n_trials,
        timeout_s=file.budget.timeout_s,
        fixed=given(file.fixed, TRAIN_TYPES),
        space=space,
        scales={name: _scale(path, file, name) for name in file.study.scales},
        description=file.study.description,
        enqueue=tuple(file.enqueue),
        stop=file.stop,
        tpe=(file.tpe or TpeSettings()) if sampler == "tpe" else None,
    )


def _scale(path: Path, file: StudyFile, name: str) -> ScaleSpec:
    table = file.scale.get(name)
    if table is None:
        return ScaleSpec()
    where = f"scale.{name}"
    space = tuple(
        parse_axis(path, f"{where}.space.{axis}", axis, raw, file.study.sampler)
        for axis, raw in (table.space or {}).items()
    )
    return ScaleSpec(
        train=given(table, TRAIN_TYPES),
        data=given(table, DATA_KEYS),
        demo=given(table, DEMO_KEYS),
        space=space,
        pruner=table.pruner.given() if table.pruner else {},
        enqueue=None if table.enqueue is None else tuple(table.enqueue),
    )
