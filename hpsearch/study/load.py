"""Reading a study file into a :class:`StudySpec`, and the command line's changes to it.

The schema is :mod:`hpsearch.study.schema`, the axes :mod:`hpsearch.study.space`, the
checks by the configuration classes' own rules :mod:`hpsearch.study.rules`. Every mistake
is a one-line :class:`UserError` naming the file and the key (or the flag).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpsearch.study import rules
from hpsearch.study.samplers import SAMPLERS
from hpsearch.study.schema import (
    DATA_KEYS,
    DEMO_TYPES,
    MONITOR_SET_BY_METRIC,
    TRAIN_TYPES,
    StudyFile,
    given,
    is_setting,
    typed,
    validate,
)
from hpsearch.study.space import parse_axis
from hpsearch.study.spec import PrunerSpec, ScaleSpec, StudySpec
from hpsearch.trials.constraints import from_table
from trainer.config import SettingError, monitor_direction
from trainer.config import check_seed as _seed_rule
from trainer.errors import UserError

DEMO_KEYS = tuple(DEMO_TYPES)

#: Where shipped study files are found by name, after ``./studies``.
SHIPPED_STUDIES = Path(__file__).resolve().parents[2] / "studies"


def find_study_file(name_or_path: str, search_dirs: list[Path] | None = None) -> Path:
    """A study file by path, or by name in ``./studies`` and the project's ``studies/``."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or "/" in name_or_path or candidate.exists():
        if candidate.is_file():
            return candidate
        raise UserError(f"study file {name_or_path} not found")
    dirs = search_dirs or [Path.cwd() / "studies", SHIPPED_STUDIES]
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
    return _checked(_build(path, validate(path, StudyFile, raw)))


def check_seed(value: Any, key: str = "--seed") -> int:
    """``value`` if it is a seed of a study, in [0, 2**32); else a one-line error at ``key``."""
    if type(value) is not int:
        raise UserError(f"{key}: expected an integer, got {value!r}")
    try:
        return _seed_rule("seed", value)
    except SettingError as err:
        raise UserError(f"{key}: {err.why} (got {value})") from None


def with_seed(spec: StudySpec, seed: Any) -> StudySpec:
    """``spec`` with another seed (the ``--seed`` override), checked like the file's."""
    return replace(spec, seed=check_seed(seed, "--seed"))


def with_overrides(spec: StudySpec, items: Sequence[str], scale: str) -> StudySpec:
    """``spec`` with ``KEY=VALUE`` settings (``--set``) replacing ``scale``'s values.

    Values are TOML scalars (anything else is a string), checked exactly like the file's;
    an error names ``--set KEY``. The applied values are in ``overrides``.
    """
    values = parse_overrides(items, spec, scale)
    table = spec.scale(scale)
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
    changed = replace(
        spec, scales={**spec.scales, scale: table}, overrides={**spec.overrides, **values}
    )
    rules.check_scale(changed, scale)
    return _resolved(changed)


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
        if name == "monitor":
            raise UserError(f"{key}: {MONITOR_SET_BY_METRIC}")
        if name in axes:
            raise UserError(f"{key}: is a search-space axis at scale {scale}")
        if name in DEMO_KEYS and scale != "demo":
            raise UserError(f"{key}: synthetic data settings belong to the demo scale")
        values[name] = typed(spec.path, key, name, _scalar(text.strip()))
    return values


def _kind(name: str) -> str:
    if name in DEMO_KEYS:
        return "demo"
    return "data" if name in DATA_KEYS else "train"


def _scalar(text: str) -> Any:
    """A TOML scalar (``10``, ``1e-3``, ``false``, ``"x"``), else the text itself."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    return value if isinstance(value, bool | int | float | str) else text


def _checked(spec: StudySpec) -> StudySpec:
    """Every scale checked by the configuration classes' rules, derived values filled in."""
    for scale in spec.scales:
        rules.check_scale(spec, scale)
    return _resolved(spec)


def _resolved(spec: StudySpec) -> StudySpec:
    """``spec`` with each scale's enqueued points and the demo scale's dataset filled in."""
    scales = {
        name: replace(table, queued=rules.enqueued(spec, name))
        for name, table in spec.scales.items()
    }
    demo = rules.demo_config(spec, "demo") if "demo" in spec.scales else None
    return replace(spec, scales=scales, demo=demo)


def _build(path: Path, file: Any) -> StudySpec:
    sampler = file.study.sampler
    space = tuple(
        parse_axis(path, f"space.{name}", name, axis, sampler) for name, axis in file.space.items()
    )
    kind = SAMPLERS[sampler]
    settings = file.sampler_settings(sampler)
    if settings is None and kind.settings is not None:
        settings = kind.settings()
    return StudySpec(
        path=path,
        name=file.study.name if file.study.name is not None else path.stem,
        sampler=sampler,
        seed=file.study.seed,
        metric=file.study.metric,
        direction=monitor_direction(file.study.metric),
        pruner=PrunerSpec(kind=file.pruner.kind, settings=file.pruner.given()),
        n_trials=file.budget.n_trials,
        timeout_s=file.budget.timeout_s,
        fixed=given(file.fixed, TRAIN_TYPES),
        space=space,
        scales={name: _scale(path, file, name) for name in file.study.scales},
        description=file.study.description,
        enqueue=tuple(file.enqueue),
        stop=file.stop,
        sampler_settings=settings,
        constraints=from_table({k: b.model_dump() for k, b in file.constraints.items()}),
        objectives=tuple(file.study.objectives or ()),
    )


def _scale(path: Path, file: Any, name: str) -> ScaleSpec:
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
