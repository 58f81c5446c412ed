"""The study file's schema: pydantic models of its tables, and their errors as one line.

Types of training, data and demo settings come from the fields of ``TrainConfig``,
``DataConfig`` and ``DemoConfig`` themselves (strict: no bool for a number, no float for
an integer, no inf or nan); their ranges stay in those classes' ``__post_init__``.
Study-level rules (sampler, budget, pruner, stop, TPE) live here, next to their fields.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from hpsearch.study.promotion import KIND as PROMOTION
from hpsearch.study.samplers import PRUNERS, SAMPLERS, STRICT
from trainer.classes import CLASS_NAMES
from trainer.config import (
    MONITORS,
    DataConfig,
    DemoConfig,
    SettingError,
    TrainConfig,
    check_seed,
    monitor_direction,
)
from trainer.errors import UserError

DIRECTIONS = ("maximize", "minimize")
DEFAULT_SCALES = ("demo", "full")

TRAIN_TYPES: dict[str, Any] = typing.get_type_hints(TrainConfig)
DATA_KEYS = ("image_size", "val_fraction", "test_fraction", "split_seed")
DATA_TYPES = {key: typing.get_type_hints(DataConfig)[key] for key in DATA_KEYS}
DEMO_TYPES = {f"demo_{k}": t for k, t in typing.get_type_hints(DemoConfig).items()}
"""``demo_images``, ``demo_size``, ``demo_seed``: the fields of :class:`DemoConfig`."""


COST_MEASURES = ("device_seconds", "peak_memory_mb")
PER_CLASS = ("recall", "specificity", "auc")
#: Every metric name the trainer records at an epoch (``val_*``).
RECORDED_METRICS = (
    *MONITORS,
    *(f"val_{kind}_{name}" for kind in PER_CLASS for name in CLASS_NAMES),
)


def known_measure(name: str) -> str | None:
    """Why ``name`` is not a measure a constraint can bound (None: it is one)."""
    kind, dot, rest = name.partition(".")
    if dot:
        if kind not in ("recall", "specificity") or rest not in CLASS_NAMES:
            classes = ", ".join(CLASS_NAMES)
            return f"expected recall.CLASS or specificity.CLASS with CLASS one of {classes}"
        return None
    if name in COST_MEASURES or name in RECORDED_METRICS:
        return None
    return (
        "not a measure (recall.CLASS, specificity.CLASS, device_seconds, peak_memory_mb "
        "or a recorded metric such as val_accuracy or val_auc_covid)"
    )


def objective_direction(name: str) -> str:
    """The direction of an objective: costs and the loss are minimised, metrics maximised."""
    return "minimize" if name in COST_MEASURES else monitor_direction(name)


def _check_objectives(metric: str, objectives: list[str]) -> None:
    if len(objectives) < 2:
        raise rule("study.objectives", "expected two or more (one objective is study.metric)")
    if objectives[0] != metric:
        raise rule(
            "study.objectives",
            f"the first must be study.metric ({metric}): it selects each trial's epoch",
        )
    if len(set(objectives)) != len(objectives):
        raise rule("study.objectives", "repeated names")
    for name in objectives:
        if name.partition(".")[1] or known_measure(name) is not None:
            why = "not a recorded metric (val_*) or cost (device_seconds, peak_memory_mb)"
            raise rule("study.objectives", f"{name}: {why}")


def rule(key: str, why: str) -> PydanticCustomError:
    """A broken study-level rule that names its own key (for checks across fields)."""
    return PydanticCustomError("study_rule", "{why}", {"key": key, "why": why})


def _one_of(choices: Sequence[str]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            raise PydanticCustomError(
                "not_one_of", "{value} is not one of {choices}", _choices(value, choices)
            )
        return value

    return AfterValidator(check)


def _choices(value: Any, choices: Sequence[str]) -> dict[str, str]:
    return {"value": repr(value), "choices": ", ".join(choices)}


def _seed(value: int) -> int:
    try:
        return check_seed("seed", value)
    except SettingError as err:
        raise PydanticCustomError(
            "seed", "{why} (got {value})", {"why": err.why, "value": value}
        ) from None


def _int_or_auto(minimum: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value == "auto":
            return value
        if type(value) is not int:
            raise PydanticCustomError("int_or_auto", "expected an integer or 'auto'")
        if value < minimum:
            raise PydanticCustomError("int_or_auto", "must be >= {minimum}", {"minimum": minimum})
        return value

    return check


def _min_delta(value: Any) -> Any:
    if value == "val_se":
        return value
    if type(value) not in (int, float) or not 0 <= value < float("inf"):
        raise PydanticCustomError("min_delta", "expected a number >= 0 or 'val_se'")
    return float(value)


Seed = Annotated[int, AfterValidator(_seed)]
NonNegInt = Annotated[int, Field(ge=0)]
IntOrAuto = Annotated[Any, AfterValidator(_int_or_auto(1))]


class StudyTable(BaseModel):
    """``[study]``."""

    model_config = STRICT
    name: str | None = None
    description: str = ""
    sampler: Annotated[str, _one_of(tuple(SAMPLERS))]
    seed: Seed = 0
    metric: Annotated[str, _one_of(MONITORS)] = "val_accuracy"
    """The objective: the trial's value, the epoch it selects (the trainer's monitor, never
    set anywhere else) and, through the metric, the direction."""
    direction: Annotated[str, _one_of(DIRECTIONS)] | None = None
    """May be written, but only as the metric's own direction (the loss down, others up)."""
    objectives: list[str] | None = None
    """Two or more objectives (a Pareto front): ``metric`` first (it selects the epoch),
    then other recorded metrics or costs; each one's direction is its own."""

    @model_validator(mode="after")
    def _direction(self) -> StudyTable:
        natural = monitor_direction(self.metric)
        if self.direction is not None and self.direction != natural:
            why = f"{self.metric} is {natural}d (the direction follows study.metric)"
            raise rule("study.direction", why)
        if self.objectives is not None:
            _check_objectives(self.metric, self.objectives)
        return self

    scales: list[str] = Field(default=list(DEFAULT_SCALES), min_length=1)
    """Names of the scales; a ``[scale.X]`` of another name is refused (a typo, most likely)."""


class Bound(BaseModel):
    """One entry of ``[constraints]``: ``{ min = X }``, ``{ max = Y }`` or both."""

    model_config = STRICT
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise PydanticCustomError("bound", "expected { min = X }, { max = Y } or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("bound", "min is above max: no trial could keep it")
        return self


class PrunerSettings(BaseModel):
    """Settings of an Optuna pruner; which of them a kind takes is its entry in ``PRUNERS``."""

    model_config = STRICT
    n_startup_trials: NonNegInt | None = None
    n_warmup_steps: NonNegInt | None = None
    interval_steps: Annotated[int, Field(ge=1)] | None = None
    n_min_trials: Annotated[int, Field(ge=1)] | None = None
    percentile: Annotated[float, Field(ge=0, le=100)] | None = None
    min_resource: IntOrAuto = None
    max_resource: IntOrAuto = None
    reduction_factor: Annotated[int, Field(ge=2)] | None = None
    min_early_stopping_rate: NonNegInt | None = None

    def given(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.model_fields_set}


class PrunerTable(PrunerSettings):
    """``[pruner]``: its kind and settings."""

    kind: Annotated[str, _one_of(tuple(PRUNERS))] = "none"

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in super().given().items() if k != "kind"}


class ScalePruner(PrunerSettings):
    """``[scale.X.pruner]``: settings that replace those of ``[pruner]`` at this scale, or
    with ``kind`` another pruner there (whose settings then start from its defaults)."""

    kind: Annotated[str, _one_of(tuple(PRUNERS))] | None = None


class BudgetTable(BaseModel):
    """``[budget]``: trials to complete (random/TPE) and a wall-clock limit."""

    model_config = STRICT
    n_trials: Annotated[int, Field(ge=1)] | None = None
    timeout_s: Annotated[float, Field(gt=0)] | None = None


class StopSettings(BaseModel):
    """``[stop]`` (random/TPE): stop once ``patience`` trials in a row improve the best
    by no more than ``min_delta`` (a number, or ``"val_se"``: the best's standard error)."""

    model_config = STRICT
    patience: Annotated[int, Field(ge=1)]
    min_delta: Annotated[Any, AfterValidator(_min_delta)] = 0.0


def _settings(types_by_name: dict[str, Any]) -> dict[str, Any]:
    # None means "not in the file" (TOML has no null); model_fields_set tells them apart.
    return {name: (kind | None, None) for name, kind in types_by_name.items()}


class _ScaleBase(BaseModel):
    model_config = STRICT
    space: dict[str, Any] | None = None
    """Axes of ``[space]`` narrowed at this scale (checked like ``[space]``)."""
    pruner: ScalePruner | None = None
    """Settings that replace those of ``[pruner]`` at this scale, or another ``kind``."""
    enqueue: list[dict[str, Any]] | None = None
    """Configurations run first at this scale, in place of the study's ``[[enqueue]]``."""


if TYPE_CHECKING:
    # The checker's view of the two models built below from the config classes' fields at
    # run time: models of their base class, whose other fields it cannot know.
    class TrainTable(BaseModel): ...

    class ScaleTable(_ScaleBase): ...

else:
    TrainTable = create_model("TrainTable", __config__=STRICT, **_settings(TRAIN_TYPES))
    """``[fixed]``: any field of :class:`TrainConfig`, of its type."""

    ScaleTable = create_model(
        "ScaleTable",
        __base__=_ScaleBase,
        **_settings({**TRAIN_TYPES, **DATA_TYPES, **DEMO_TYPES}),
    )
    """``[scale.NAME]``: training, data and (demo scale only) demo settings, plus the above."""


class _StudyFileBase(BaseModel):
    model_config = STRICT
    study: StudyTable
    pruner: PrunerTable = PrunerTable()
    budget: BudgetTable = BudgetTable()
    fixed: TrainTable = TrainTable()
    space: dict[str, Any] = {}
    scale: dict[str, ScaleTable] = {}
    enqueue: list[dict[str, Any]] = []
    stop: StopSettings | None = None
    constraints: dict[str, Bound] = {}

    def sampler_settings(self, name: str) -> BaseModel | None:
        """The section of sampler ``name``'s own settings (``[tpe]``), None if absent."""
        value = getattr(self, name, None)
        return value if isinstance(value, BaseModel) else None

    @model_validator(mode="after")
    def _rules(self) -> _StudyFileBase:
        """Rules across tables; the first broken one names its key."""
        _check_sections(self)
        _check_pruner(self)
        _check_space_names(self)
        for name in self.constraints:
            why = known_measure(name)
            if why is not None:
                raise rule(f"constraints.{name}", why)
        for name, table in self.scale.items():
            _check_scale(self, name, table)
        return self


StudyFile: type[_StudyFileBase] = create_model(
    "StudyFile",
    __base__=_StudyFileBase,
    **_settings({name: kind.settings for name, kind in SAMPLERS.items() if kind.settings}),
)
"""A whole study file, as written: the tables above and each sampler's own section."""


def _check_sections(study: _StudyFileBase) -> None:
    sampler = study.study.sampler
    grid = SAMPLERS[sampler].fixed_points
    if study.budget.n_trials is None and not grid:
        raise rule("budget.n_trials", f"required for the {sampler} sampler")
    if study.stop is not None and grid:
        raise rule("stop", "a grid runs every point; early stopping is for random and tpe")
    if study.stop is not None and study.study.objectives:
        raise rule("stop", "a study of several objectives has a front, not a best to stop on")
    for name in SAMPLERS:
        if study.sampler_settings(name) is not None and sampler != name:
            raise rule(name, f"settings of the {name} sampler, but the sampler is {sampler}")
    if len(set(study.study.scales)) != len(study.study.scales):
        raise rule("study.scales", "repeated names")


def _check_pruner(study: _StudyFileBase) -> None:
    kinds = {"pruner": study.pruner.kind}
    tables = {"pruner": study.pruner.given()}
    for name, table in study.scale.items():
        if table.pruner:
            settings = table.pruner.given()
            kinds[f"scale.{name}.pruner"] = settings.pop("kind", None) or study.pruner.kind
            tables[f"scale.{name}.pruner"] = settings
    for where, settings in tables.items():
        kind = kinds[where]
        allowed = PRUNERS[kind].settings
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            why = f"not a {kind} setting (allowed: {', '.join(allowed) or 'none'})"
            raise rule(f"{where}.{unknown[0]}", why)
        if kind == PROMOTION and settings.get("min_resource") == "auto":
            raise rule(f"{where}.min_resource", "the promotion pruner needs a number of epochs")
        if kind == PROMOTION and study.stop is not None:
            why = (
                f"[{where}] is the promotion pruner: its trials wait at rungs, and a stop "
                "rule that starts nothing new would leave them waiting"
            )
            raise rule("stop", why)


MONITOR_SET_BY_METRIC = "set by [study] metric: the metric and the epoch it selects are one"


def _check_space_names(study: _StudyFileBase) -> None:
    if not study.space:
        raise rule("space", "the search space is empty")
    if "monitor" in study.fixed.model_fields_set:
        raise rule("fixed.monitor", MONITOR_SET_BY_METRIC)
    for name in study.space:
        if name == "monitor":
            raise rule("space.monitor", MONITOR_SET_BY_METRIC)
        if name not in TRAIN_TYPES:
            raise rule(f"space.{name}", "not a training setting")
        if name in study.fixed.model_fields_set:
            raise rule(f"space.{name}", "is also set in [fixed]")


def _check_scale(study: _StudyFileBase, name: str, table: _ScaleBase) -> None:
    where = f"scale.{name}"
    if name not in study.study.scales:
        declared = ", ".join(study.study.scales)
        raise rule(where, f"unknown scale (declared in study.scales: {declared})")
    for key in sorted(table.model_fields_set):
        if key == "monitor":
            raise rule(f"{where}.monitor", MONITOR_SET_BY_METRIC)
        if key in study.space:
            raise rule(f"{where}.{key}", "is a search-space axis")
        if key in DEMO_TYPES and name != "demo":
            raise rule(f"{where}.{key}", "synthetic data settings belong to the demo scale")
    if table.space is not None and not table.space:
        raise rule(f"{where}.space", "expected a non-empty table of axes")
    for axis in table.space or {}:
        if axis not in study.space:
            raise rule(f"{where}.space.{axis}", "narrows no axis of [space]")


_ADAPTERS = {
    name: TypeAdapter(kind, config=ConfigDict(strict=True, allow_inf_nan=False))
    for name, kind in {**TRAIN_TYPES, **DATA_TYPES, **DEMO_TYPES}.items()
}


def is_setting(name: str) -> bool:
    """True for the names a scale or ``--set`` may give: training, data and demo settings."""
    return name in _ADAPTERS


def typed(path: Path, key: str, name: str, value: Any) -> Any:
    """``value`` as the type of setting ``name`` (strict), or a one-line error at ``key``."""
    try:
        return _ADAPTERS[name].validate_python(value)
    except ValidationError as err:
        raise translate(path, err, None, key) from None


def validate(path: Path, model: type[BaseModel], raw: Any, prefix: str = "") -> Any:
    """``raw`` as ``model``, or its first error as one line (keys below ``prefix``)."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise translate(path, err, model, prefix) from None


def given(table: BaseModel, names: Any) -> dict[str, Any]:
    """The values of ``names`` that the file set in ``table``."""
    return {k: getattr(table, k) for k in names if k in table.model_fields_set}


def one_line(path: Path, key: str, why: str) -> UserError:
    """The user's error: ``FILE: KEY: WHY`` (a ``--set`` key needs no file)."""
    return UserError(f"{key}: {why}" if key.startswith("--") else f"{path}: {key}: {why}")


def translate(path: Path, error: ValidationError, model: Any, prefix: str = "") -> UserError:
    """Pydantic's first error as one line naming the file and the key."""
    first = error.errors()[0]
    loc = first["loc"]
    ctx = first.get("ctx") or {}
    if first["type"] == "study_rule":
        return one_line(path, ctx["key"], ctx["why"])
    key = _join(prefix, loc) or "file"
    return one_line(path, key, _why(first, model, loc))


def _join(prefix: str, loc: tuple[Any, ...]) -> str:
    key = prefix
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else str(part)
    return key


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true/false",
    "dict_type": "a table",
    "model_type": "a table",
    "list_type": "a list",
}
_BOUNDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _why(first: ErrorDetails, model: Any, loc: tuple[Any, ...]) -> str:
    kind, ctx = first["type"], first.get("ctx") or {}
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {first['input']!r}"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {next(iter(ctx.values()))}"
    if kind == "finite_number":
        return f"must be a finite number, got {first['input']!r}"
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        what = "section" if len(loc) == 1 and model is StudyFile else "key"
        allowed = ", ".join(_fields_at(model, loc[:-1]))
        return f"unknown {what} (allowed: {allowed})"
    if kind == "too_short":
        return "must not be empty"
    return str(first["msg"])


def _fields_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that ``loc`` leads to inside ``model``."""
    current = model
    for part in loc:
        current = _unwrap(current)
        if typing.get_origin(current) in (dict, list):
            current = typing.get_args(current)[-1]  # the part is a key or an index
        elif isinstance(current, type) and issubclass(current, BaseModel):
            current = current.model_fields[part].annotation
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """``X`` out of ``X | None``."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation
