"""A scale of a study checked by the configuration classes' own rules.

``TrainConfig``, ``DataConfig`` and ``DemoConfig`` hold the ranges of their fields; this
module builds them from a scale's values (each axis value and range end in turn) and
reports a broken rule under the key where the user wrote the value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

from hpsearch.study.schema import one_line
from hpsearch.study.space import Param, check_point
from hpsearch.study.spec import StudySpec
from trainer.config import DataConfig, DemoConfig, SettingError, TrainConfig

_Config = TypeVar("_Config", TrainConfig, DataConfig, DemoConfig)

MAX_GRID_POINTS = 100_000
_MAX_DEMO_IMAGES = 100_000


def check_scale(spec: StudySpec, scale: str) -> None:
    """Raise the first broken rule of ``scale`` as one line naming file and key."""
    base = {**spec.train_values(scale), "device": "cpu"}
    _build(spec, scale, TrainConfig, base)
    for p in spec.space_at(scale):
        ends = (p.low, p.high) if p.is_range else p.values
        for value in ends:
            _build(spec, scale, TrainConfig, {**base, p.name: value}, axis=p)
    data = spec.data_values(scale)
    _build(spec, scale, DataConfig, {"root": Path("."), **data})
    if scale == "demo":
        demo = demo_config(spec, scale)
        _check_demo_splits(spec, scale, demo, DataConfig(root=Path("."), **data))
    space = spec.space_at(scale)
    if spec.is_grid and math.prod(len(p.values) for p in space) > MAX_GRID_POINTS:
        raise one_line(spec.path, "space", f"grid has more than {MAX_GRID_POINTS:,} points")
    for point in enqueued(spec, scale):
        _build(spec, scale, TrainConfig, {**base, **point})


def enqueued(spec: StudySpec, scale: str) -> tuple[dict[str, Any], ...]:
    """The configurations enqueued at ``scale``, checked against its space and typed."""
    own = spec.scales[scale].enqueue
    where = f"at scale {scale}"
    if own is None:
        where += f" (give it its own list there: [[scale.{scale}.enqueue]], or enqueue = [])"
    prefix = "enqueue" if own is None else f"scale.{scale}.enqueue"
    space = spec.space_at(scale)
    return tuple(
        check_point(spec.path, f"{prefix}[{i}]", point, space, where)
        for i, point in enumerate(spec.enqueue if own is None else own)
    )


def _build(
    spec: StudySpec,
    scale: str,
    config: type[_Config],
    values: dict[str, Any],
    axis: Param | None = None,
) -> _Config:
    try:
        return config(**values)
    except SettingError as err:
        name = err.name if config is not DemoConfig else f"demo_{err.name}"
        if axis is not None and name == axis.name:
            key = spec.axis_key(scale, name)
        else:
            key = spec.setting_key(scale, name)
        leaf = key.rsplit(".", 1)[-1].removeprefix("--set ")
        raise one_line(spec.path, key, f"{err.why} (got {leaf}={err.value!r})") from None


def demo_config(spec: StudySpec, scale: str) -> DemoConfig:
    """The scale's demo settings as a :class:`DemoConfig` (a broken rule names its key)."""
    values = {k.removeprefix("demo_"): v for k, v in spec.demo_values(scale).items()}
    return _build(spec, scale, DemoConfig, values)


def _check_demo_splits(spec: StudySpec, scale: str, demo: DemoConfig, data: DataConfig) -> None:
    """Every class must reach every split (validation metrics need all four classes)."""
    missing = _missing_split(demo.images, data.val_fraction, data.test_fraction)
    if missing is None:
        return
    enough = next(
        (
            n
            for n in range(demo.images, _MAX_DEMO_IMAGES + 1)
            if _missing_split(n, data.val_fraction, data.test_fraction) is None
        ),
        None,
    )
    need = f"at least {enough} are needed" if enough else "no number of images is enough"
    why = (
        f"{demo.images} images give the {missing[1]} split no {missing[0]} image at "
        f"val_fraction={data.val_fraction}, test_fraction={data.test_fraction}; {need}"
    )
    raise one_line(spec.path, spec.setting_key(scale, "demo_images"), why)


def _missing_split(
    images: int, val_fraction: float, test_fraction: float
) -> tuple[str, str] | None:
    """(class folder, split) of the first class that a split would lack, or None."""
    from trainer.demo import class_counts
    from trainer.split import split_sizes

    for folder, count in class_counts(images).items():
        train, val, test = split_sizes(count, val_fraction, test_fraction)
        for split, n, needed in (("training", train, True), ("validation", val, True)):
            if needed and n < 1:
                return folder, split
        if test_fraction > 0 and test < 1:
            return folder, "test"
    return None
