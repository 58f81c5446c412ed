"""The kinds of run a worker serves: a search, or a confirmation of a search's winners.

A worker claims slots and trains their trials the same way for both; what differs is
asked of the run's kind, here, and nowhere else: how many slots there are, which sampler
creates a slot's trial, the pruner, the values and attributes a slot's trial gets beyond
the sampled parameters, and whether the study's stop rule may end the run early.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import optuna

from hpsearch.study.confirm import ConfirmRun
from hpsearch.study.samplers import SAMPLERS, SamplerInputs
from hpsearch.study.space import Param
from hpsearch.study.spec import StudySpec
from hpsearch.study.stopping import check_stop
from hpsearch.trials.record import CONFIRM_OF, ENQUEUED, SEED

#: Seeds of the slots' samplers: the study's seed times this, plus the slot.
SLOT_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class RunKind(abc.ABC):
    """What a run trains: the study file at one scale, and how slots become trials."""

    spec: StudySpec
    """The study file as loaded (and overridden) by the command, never parsed again."""
    scale: str

    @property
    def metric(self) -> str:
        return self.spec.metric

    @property
    def space(self) -> tuple[Param, ...]:
        return self.spec.space_at(self.scale)

    @property
    @abc.abstractmethod
    def n_slots(self) -> int:
        """Slots that complete the run (exactly once each)."""

    @abc.abstractmethod
    def sampler(self, slot: int) -> optuna.samplers.BaseSampler:
        """The sampler that creates the trial of ``slot``."""

    @abc.abstractmethod
    def pruner(self) -> optuna.pruners.BasePruner:
        """The pruner its trials report to."""

    @abc.abstractmethod
    def slot_values(self, slot: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Training values of ``slot`` beyond its sampled parameters, and the user
        attributes its trial records about them."""

    def stop_reason(self, study: optuna.Study) -> str | None:
        """Why no new trial may start although slots are left (None: go on)."""
        return None

    def describe(self) -> str:
        """What the run is, for its first line."""
        return f"{self.scale} scale"

    def slots_note(self) -> str:
        """A few words on how the slots were chosen, for the first line ('' for none)."""
        return ""

    def train_values(self, slot: int, params: dict[str, Any]) -> dict[str, Any]:
        """Every training value of ``slot``'s trial with ``params`` sampled."""
        values = {**self.spec.train_values(self.scale), **params}
        values.setdefault("seed", self.spec.seed)
        return {**values, **self.slot_values(slot)[0]}


@dataclass(frozen=True)
class Search(RunKind):
    """A search: the study file's sampler over its budget of slots."""

    val_size: int = 0
    """Images in the validation split (the stop rule's standard error needs it)."""
    follow_stop_rule: bool = True
    """False when ``--n-trials`` asks for new trials on purpose."""

    @property
    def n_slots(self) -> int:
        return self.spec.budget(self.scale)

    def sampler(self, slot: int) -> optuna.samplers.BaseSampler:
        """A grid slot is one fixed point; random and TPE draw with a seed derived from the
        slot, so a search is reproducible whatever worker runs which slot. The first slots
        of a random or TPE study run the ``[[enqueue]]``-ed configurations."""
        spec, scale = self.spec, self.scale
        seed = spec.seed * SLOT_SEED_STRIDE + slot
        if spec.is_grid:
            point = spec.grid_points(scale)[spec.grid_order(scale)[slot]]
            return optuna.samplers.PartialFixedSampler(point, optuna.samplers.RandomSampler(seed))
        enqueued = spec.enqueued(scale)
        if slot < len(enqueued):
            fixed = enqueued[slot]
            return optuna.samplers.PartialFixedSampler(fixed, optuna.samplers.RandomSampler(seed))
        inputs = SamplerInputs(seed=seed, budget=self.n_slots, settings=spec.sampler_settings)
        return SAMPLERS[spec.sampler].build(inputs)

    def pruner(self) -> optuna.pruners.BasePruner:
        return self.spec.build_pruner(self.scale)

    def slot_values(self, slot: int) -> tuple[dict[str, Any], dict[str, Any]]:
        enqueued = slot < len(self.spec.enqueued(self.scale))
        return {}, ({ENQUEUED: True} if enqueued else {})

    def stop_reason(self, study: optuna.Study) -> str | None:
        if not self.follow_stop_rule:
            return None
        return check_stop(study, self.spec, self.val_size)

    def describe(self) -> str:
        spec = self.spec
        rules = "; ".join(c.describe() for c in spec.constraints)
        constrained = f", constraints {rules} (validation)" if rules else ""
        pruner = f"pruner {spec.pruner_at(self.scale).kind}"
        if spec.multi_objective:
            pruner = (
                f"objectives {', '.join(spec.objectives)} (a Pareto front), pruning off: "
                "Optuna prunes single-objective studies only"
            )
        return f"{spec.sampler}, {pruner}, {self.scale} scale{constrained}"

    def slots_note(self) -> str:
        return self.spec.grid_skipped(self.scale)


@dataclass(frozen=True)
class Confirmation(RunKind):
    """A confirmation: fixed runs, one per slot, each a configuration of the search
    trained again with a given seed, to the full budget, unpruned."""

    runs: tuple[ConfirmRun, ...] = ()

    @property
    def n_slots(self) -> int:
        return len(self.runs)

    def sampler(self, slot: int) -> optuna.samplers.BaseSampler:
        fixed = self.runs[slot].params
        return optuna.samplers.PartialFixedSampler(fixed, optuna.samplers.RandomSampler(slot))

    def pruner(self) -> optuna.pruners.BasePruner:
        return optuna.pruners.NopPruner()

    def slot_values(self, slot: int) -> tuple[dict[str, Any], dict[str, Any]]:
        run = self.runs[slot]
        return {"seed": run.seed}, {CONFIRM_OF: run.source_trial, SEED: run.seed}

    def describe(self) -> str:
        return f"confirmation of {self.scale} scale"
