"""Study files: TOML parsed into typed, validated dataclasses.

A study file declares the sampler, the pruner, the objective, the budget, the fixed
training values, the search space and two scales (``demo`` for the synthetic data,
``full`` for real data). Every mistake is a :class:`UserError` naming the file and key.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from trainer.config import MONITORS, TrainConfig
from trainer.errors import UserError

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "percentile", "successive-halving", "hyperband")
SCALES = ("demo", "full")
DATA_KEYS = ("image_size", "val_fraction", "test_fraction", "split_seed")
DEMO_KEYS = ("demo_images", "demo_size", "demo_seed")
_PRUNER_SETTINGS = {
    "none": (),
    "median": ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"),
    "percentile": (
        "percentile",
        "n_startup_trials",
        "n_warmup_steps",
        "interval_steps",
        "n_min_trials",
    ),
    "successive-halving": ("min_resource", "reduction_factor", "min_early_stopping_rate"),
    "hyperband": ("min_resource", "max_resource", "reduction_factor"),
}
_TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}


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


@dataclass(frozen=True)
class PrunerSpec:
    kind: str = "none"
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScaleSpec:
    """Values of one scale: training fields, data settings, (demo) generator settings,
    and search-space axes narrowed for this scale."""

    train: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    demo: dict[str, Any] = field(default_factory=dict)
    space: tuple[Param, ...] = ()
    pruner: dict[str, Any] = field(default_factory=dict)
    """Pruner settings that replace the study's at this scale (its kind stays)."""


@dataclass(frozen=True)
class StudySpec:
    """A whole study file."""

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

    def pruner_at(self, scale: str) -> PrunerSpec:
        """The pruner at ``scale``: ``[scale.X.pruner]`` replaces the settings it names."""
        settings = {**self.pruner.settings, **self.scales[scale].pruner}
        return PrunerSpec(kind=self.pruner.kind, settings=settings)

    def space_at(self, scale: str) -> tuple[Param, ...]:
        """The search space at ``scale``: ``[scale.X.space]`` replaces the axes it names."""
        override = {p.name: p for p in self.scales[scale].space}
        return tuple(override.get(p.name, p) for p in self.space)

    def grid_points(self, scale: str) -> list[dict[str, Any]]:
        """Every point of the grid at ``scale``, in file order (first axis varies slowest)."""
        space = self.space_at(scale)
        names = [p.name for p in space]
        combos = itertools.product(*(p.values for p in space))
        return [dict(zip(names, combo, strict=True)) for combo in combos]

    def budget(self, scale: str) -> int:
        """Number of trials that completes the study (exactly once each)."""
        if self.sampler == "grid":
            return len(self.grid_points(scale))
        assert self.n_trials is not None
        return self.n_trials

    def train_values(self, scale: str) -> dict[str, Any]:
        """Fixed training values at ``scale`` (the scale's values override ``[fixed]``)."""
        return {**self.fixed, **self.scales[scale].train}

    def data_values(self, scale: str) -> dict[str, Any]:
        return dict(self.scales[scale].data)

    def demo_values(self, scale: str) -> dict[str, Any]:
        return dict(self.scales[scale].demo)


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
    return _Parser(path).study(raw)


class _Parser:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, why: str) -> UserError:
        return UserError(f"{self.path}: {key}: {why}")

    def table(self, raw: dict[str, Any], key: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        value = raw.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "expected a table")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown key (allowed: {', '.join(allowed)})")
        return value

    def typed(self, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"expected {_kind_names(kinds)}, got {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(key, f"expected {_kind_names(kinds)}, got {value!r}")
        return value

    def study(self, raw: dict[str, Any]) -> StudySpec:
        top = ("study", "pruner", "budget", "fixed", "space", "scale")
        unknown = sorted(set(raw) - set(top))
        if unknown:
            raise self.fail(unknown[0], f"unknown section (allowed: {', '.join(top)})")
        study = self.table(
            raw, "study", ("name", "description", "sampler", "seed", "metric", "direction")
        )
        name = self.typed("study.name", study.get("name", self.path.stem), str)
        sampler = self.typed("study.sampler", study.get("sampler", ""), str)
        if sampler not in SAMPLERS:
            raise self.fail("study.sampler", f"{sampler!r} is not one of {', '.join(SAMPLERS)}")
        metric = self.typed("study.metric", study.get("metric", "val_accuracy"), str)
        if metric not in MONITORS:
            raise self.fail("study.metric", f"{metric!r} is not one of {', '.join(MONITORS)}")
        direction = self.typed("study.direction", study.get("direction", "maximize"), str)
        if direction not in ("maximize", "minimize"):
            raise self.fail("study.direction", "expected 'maximize' or 'minimize'")
        seed = self.typed("study.seed", study.get("seed", 0), int)

        fixed = self.train_values("fixed", self.table(raw, "fixed", tuple(_TRAIN_FIELDS)))
        space = self.space(raw.get("space"), sampler)
        clash = sorted(set(fixed) & {p.name for p in space})
        if clash:
            raise self.fail(f"space.{clash[0]}", "is also set in [fixed]")

        budget = self.table(raw, "budget", ("n_trials", "timeout_s"))
        n_trials = budget.get("n_trials")
        if n_trials is not None:
            self.typed("budget.n_trials", n_trials, int)
            if n_trials < 1:
                raise self.fail("budget.n_trials", "must be >= 1")
        elif sampler != "grid":
            raise self.fail("budget.n_trials", f"required for the {sampler} sampler")
        timeout = budget.get("timeout_s")
        if timeout is not None and self.typed("budget.timeout_s", timeout, (int, float)) <= 0:
            raise self.fail("budget.timeout_s", "must be > 0")

        pruner = self.pruner(raw)
        spec = StudySpec(
            path=self.path,
            name=name,
            sampler=sampler,
            seed=seed,
            metric=metric,
            direction=direction,
            pruner=pruner,
            n_trials=n_trials,
            timeout_s=float(timeout) if timeout is not None else None,
            fixed=fixed,
            space=space,
            scales=self.scales(raw, {p.name for p in space}, sampler, pruner.kind),
            description=str(study.get("description", "")),
        )
        for scale in SCALES:
            self.check_config(spec, scale)
        return spec

    def train_values(self, key: str, values: dict[str, Any]) -> dict[str, Any]:
        for name, value in values.items():
            self.train_value(f"{key}.{name}", name, value)
        return dict(values)

    def train_value(self, key: str, name: str, value: Any) -> Any:
        annotation = str(_TRAIN_FIELDS[name].type)
        if annotation.startswith("bool"):
            return self.typed(key, value, bool)
        if annotation.startswith("int"):
            return self.typed(key, value, int)
        if annotation.startswith("float"):
            return self.typed(key, value, (int, float))
        return self.typed(key, value, str)

    def space(self, raw: Any, sampler: str) -> tuple[Param, ...]:
        if not isinstance(raw, dict) or not raw:
            raise self.fail("space", "the search space is empty")
        params = []
        for name, axis in raw.items():
            key = f"space.{name}"
            if name not in _TRAIN_FIELDS:
                raise self.fail(key, "not a training setting")
            params.append(self.param(key, name, axis, sampler))
        return tuple(params)

    def param(self, key: str, name: str, axis: Any, sampler: str) -> Param:
        if isinstance(axis, list):
            if not axis:
                raise self.fail(key, "empty list of values")
            values = tuple(self.train_value(key, name, v) for v in axis)
            if len(set(values)) != len(values):
                raise self.fail(key, "repeated values")
            return Param(name=name, values=values)
        if sampler == "grid":
            raise self.fail(key, "a grid axis must be a list of values")
        if not isinstance(axis, dict):
            raise self.fail(key, "expected a list of values or a {low, high} table")
        allowed = ("low", "high", "log", "step", "choices")
        unknown = sorted(set(axis) - set(allowed))
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}", f"unknown key (allowed: {', '.join(allowed)})")
        if "choices" in axis:
            return self.param(key, name, axis["choices"], "grid")
        if "low" not in axis or "high" not in axis:
            raise self.fail(key, "a range needs low and high")
        integer = str(_TRAIN_FIELDS[name].type).startswith("int")
        low = self.typed(f"{key}.low", axis["low"], (int, float))
        high = self.typed(f"{key}.high", axis["high"], (int, float))
        log = self.typed(f"{key}.log", axis.get("log", False), bool)
        if not low < high:
            raise self.fail(key, f"low ({low}) must be < high ({high})")
        if log and low <= 0:
            raise self.fail(f"{key}.low", "must be > 0 on a log scale")
        step = axis.get("step")
        if step is not None and self.typed(f"{key}.step", step, (int, float)) <= 0:
            raise self.fail(f"{key}.step", "must be > 0")
        return Param(name=name, low=low, high=high, log=log, step=step, integer=integer)

    def pruner(self, raw: dict[str, Any]) -> PrunerSpec:
        table = raw.get("pruner", {})
        if not isinstance(table, dict):
            raise self.fail("pruner", "expected a table")
        kind = self.typed("pruner.kind", table.get("kind", "none"), str)
        if kind not in PRUNERS:
            raise self.fail("pruner.kind", f"{kind!r} is not one of {', '.join(PRUNERS)}")
        settings = {k: v for k, v in table.items() if k != "kind"}
        return PrunerSpec(kind=kind, settings=self.pruner_settings("pruner", kind, settings))

    def pruner_settings(self, where: str, kind: str, settings: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(settings) - set(_PRUNER_SETTINGS[kind]))
        if unknown:
            allowed = ", ".join(_PRUNER_SETTINGS[kind]) or "none"
            raise self.fail(f"{where}.{unknown[0]}", f"not a {kind} setting (allowed: {allowed})")
        for key, value in settings.items():
            if key == "max_resource" and value == "auto":
                continue
            if self.typed(f"{where}.{key}", value, (int, float)) < 0:
                raise self.fail(f"{where}.{key}", "must be >= 0")
        return settings

    def scales(
        self, raw: dict[str, Any], space_names: set[str], sampler: str, pruner_kind: str
    ) -> dict[str, ScaleSpec]:
        table = raw.get("scale", {})
        if not isinstance(table, dict):
            raise self.fail("scale", "expected [scale.demo] and [scale.full] tables")
        unknown = sorted(set(table) - set(SCALES))
        if unknown:
            raise self.fail(f"scale.{unknown[0]}", "unknown scale (allowed: demo, full)")
        result = {}
        for scale in SCALES:
            allowed = (
                *_TRAIN_FIELDS,
                *DATA_KEYS,
                *(DEMO_KEYS if scale == "demo" else ()),
                "space",
                "pruner",
            )
            values = self.table(table, scale, tuple(allowed))
            train, data, demo = {}, {}, {}
            space: list[Param] = []
            pruner: dict[str, Any] = {}
            for key, value in values.items():
                where = f"scale.{scale}.{key}"
                if key == "space":
                    space = self.scale_space(where, value, space_names, sampler)
                    continue
                if key == "pruner":
                    if not isinstance(value, dict) or "kind" in value:
                        raise self.fail(where, "expected a table of settings of [pruner]'s kind")
                    pruner = self.pruner_settings(where, pruner_kind, dict(value))
                    continue
                if key in space_names:
                    raise self.fail(where, "is a search-space axis")
                if key in DATA_KEYS:
                    kind = float if "fraction" in key else int
                    data[key] = self.typed(where, value, (int, float) if kind is float else int)
                elif key in DEMO_KEYS:
                    demo[key] = self.typed(where, value, int)
                else:
                    train[key] = self.train_value(where, key, value)
            result[scale] = ScaleSpec(
                train=train, data=data, demo=demo, space=tuple(space), pruner=pruner
            )
        return result

    def scale_space(self, where: str, raw: Any, space_names: set[str], sampler: str) -> list[Param]:
        if not isinstance(raw, dict) or not raw:
            raise self.fail(where, "expected a non-empty table of axes")
        params = []
        for name, axis in raw.items():
            if name not in space_names:
                raise self.fail(f"{where}.{name}", "narrows no axis of [space]")
            params.append(self.param(f"{where}.{name}", name, axis, sampler))
        return params

    def check_config(self, spec: StudySpec, scale: str) -> None:
        """Build a TrainConfig with each value and range end: bad values fail on load."""
        base = spec.train_values(scale)
        for p in spec.space_at(scale):
            options = (p.low, p.high) if p.is_range else p.values
            for value in options:
                if p.integer and p.is_range:
                    value = int(value)
                try:
                    TrainConfig.from_dict({**base, p.name: value, "device": "cpu"})
                except UserError as err:
                    raise self.fail(f"space.{p.name}", str(err)) from None
        try:
            TrainConfig.from_dict({**base, "device": "cpu"})
        except UserError as err:
            raise self.fail(f"scale.{scale}", str(err)) from None
        data = spec.data_values(scale)
        for key in ("val_fraction", "test_fraction"):
            if key in data and not 0 <= data[key] < 1:
                raise self.fail(f"scale.{scale}.{key}", "must be in [0, 1)")
        if data.get("image_size", 64) < 16:
            raise self.fail(f"scale.{scale}.image_size", "must be >= 16")
        space = spec.space_at(scale)
        if spec.sampler == "grid" and math.prod(len(p.values) for p in space) > 100_000:
            raise self.fail("space", "grid has more than 100,000 points")


def _kind_names(kinds: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in kinds))
