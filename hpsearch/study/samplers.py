"""Samplers and pruners by name: one typed entry each, the one place to add another.

A study file names its sampler (``[study] sampler``) and its pruner (``[pruner] kind``);
the schema accepts exactly the names below, a pruner's settings are the ones its entry
lists, and a sampler with settings of its own reads them from the study file's section
of its name (``[tpe]``). Adding a sampler or a pruner is one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import optuna
from pydantic import BaseModel, ConfigDict, Field

from hpsearch.study.promotion import KIND as PROMOTION
from hpsearch.study.promotion import PromotionPruner

STRICT = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class TpeSettings(BaseModel):
    """``[tpe]``: settings of the TPE sampler."""

    model_config = STRICT
    n_startup_trials: Annotated[int, Field(ge=0)] | None = None
    """Random trials before TPE models the results; None: min(10, budget)."""
    constant_liar: bool = True
    """Parallel workers see running trials as bad ones, so they do not all sample alike."""


@dataclass(frozen=True)
class SamplerInputs:
    """What a sampler is built from for one slot of a study."""

    seed: int
    """Derived from the study's seed and the slot: a search is reproducible whatever
    worker runs which slot."""
    budget: int
    """Trials that complete the study."""
    settings: BaseModel | None
    """The sampler's own section of the study file, if it has one (defaults if absent)."""


@dataclass(frozen=True)
class SamplerKind:
    """A sampler a study file may name."""

    build: Callable[[SamplerInputs], optuna.samplers.BaseSampler]
    fixed_points: bool = False
    """Each slot trains one point of the study's grid (every point once); the sampler
    only fills what the point leaves open."""
    settings: type[BaseModel] | None = None
    """The model of its own study file section, named like the sampler (``[tpe]``)."""


def _tpe(inputs: SamplerInputs) -> optuna.samplers.BaseSampler:
    settings = inputs.settings if isinstance(inputs.settings, TpeSettings) else TpeSettings()
    startup = settings.n_startup_trials
    return optuna.samplers.TPESampler(
        seed=inputs.seed,
        n_startup_trials=startup if startup is not None else min(10, inputs.budget),
        # Running trials count as bad ones, so parallel workers do not all propose alike.
        constant_liar=settings.constant_liar,
    )


SAMPLERS: dict[str, SamplerKind] = {
    "grid": SamplerKind(
        build=lambda inputs: optuna.samplers.RandomSampler(seed=inputs.seed), fixed_points=True
    ),
    "random": SamplerKind(build=lambda inputs: optuna.samplers.RandomSampler(seed=inputs.seed)),
    "tpe": SamplerKind(build=_tpe, settings=TpeSettings),
}


@dataclass(frozen=True)
class PrunerKind:
    """A pruner a study file may name, the settings it takes, and how it is built."""

    settings: tuple[str, ...]
    build: Callable[[dict[str, Any]], optuna.pruners.BasePruner]


def _percentile(settings: dict[str, Any]) -> optuna.pruners.BasePruner:
    settings = dict(settings)
    percentile = settings.pop("percentile", 25.0)
    return optuna.pruners.PercentilePruner(percentile, **settings)


_STARTUP = ("n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials")

PRUNERS: dict[str, PrunerKind] = {
    "none": PrunerKind((), lambda settings: optuna.pruners.NopPruner()),
    "median": PrunerKind(_STARTUP, lambda settings: optuna.pruners.MedianPruner(**settings)),
    "percentile": PrunerKind(("percentile", *_STARTUP), _percentile),
    "successive-halving": PrunerKind(
        ("min_resource", "reduction_factor", "min_early_stopping_rate"),
        lambda settings: optuna.pruners.SuccessiveHalvingPruner(**settings),
    ),
    # Successive halving whose trials pause at each rung and resume when promoted
    # (hpsearch.study.promotion): a stopped trial is not thrown away.
    PROMOTION: PrunerKind(
        ("min_resource", "reduction_factor"), lambda settings: PromotionPruner(**settings)
    ),
    "hyperband": PrunerKind(
        ("min_resource", "max_resource", "reduction_factor"),
        lambda settings: optuna.pruners.HyperbandPruner(**settings),
    ),
}


def build_pruner(kind: str, settings: dict[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner named ``kind`` with ``settings`` (names a study file's schema checked)."""
    return PRUNERS[kind].build(settings)
