"""Studies in the storage: created from a study file, found by name, joined only when the
same search."""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import replace
from typing import Any

import optuna

from hpsearch.storage.optuna_api import contains, study_storage
from hpsearch.study.record import DataRecord, StudyRecord, stored_record
from hpsearch.study.space import Param, distributions
from hpsearch.study.spec import StudySpec
from trainer.errors import UserError

#: Seconds a command waits for the record of a study another command has just created.
RECORD_WAIT_S = 10.0


def spec_for_existing(
    name: str, storage: optuna.storages.BaseStorage, spec: StudySpec, scale: str
) -> StudySpec:
    """``spec`` as the existing study ``name`` was made: a grid study whose slots are
    every point of the grid (made before points that train alike were skipped) keeps them,
    so its slot k still means the same point."""
    if not spec.is_grid or spec.grid_every_point:
        return spec
    existing = existing_record(name, storage)
    every = len(spec.grid_points(scale))
    if (
        existing is not None
        and existing.confirm is None
        and existing.grid_order is not None
        and len(existing.grid_order) == every != spec.budget(scale)
    ):
        return replace(spec, grid_every_point=True)
    return spec


def existing_record(name: str, storage: optuna.storages.BaseStorage) -> StudyRecord | None:
    """The record of study ``name`` if it exists already (and was made by hpsearch)."""
    study = existing_study(name, storage)
    return None if study is None else StudyRecord.read(study)


def build_record(spec: StudySpec, scale: str, data: DataRecord, workdir: str) -> StudyRecord:
    """What the study records about itself (read back by status, best and report)."""
    return StudyRecord(
        spec_file=str(spec.path),
        scale=scale,
        sampler=spec.sampler,
        pruner=spec.pruner_at(scale).kind,
        pruner_settings=dict(spec.pruner_at(scale).settings),
        metric=spec.metric,
        direction=spec.direction,
        fixed=spec.train_values(scale),
        space=[p.name for p in spec.space_at(scale)],
        axes={p.name: describe_axis(p) for p in spec.space_at(scale)},
        data=data,
        workdir=workdir,
        n_slots=spec.budget(scale),
        grid_order=spec.grid_order(scale) if spec.is_grid else None,
        overrides=dict(spec.overrides),
        seed=spec.seed,
        constraints={c.name: c.to_dict() for c in spec.constraints},
        uid=uuid.uuid4().hex[:12],
        objectives=list(spec.objectives),
    )


def create_or_load(
    name: str,
    storage: optuna.storages.BaseStorage,
    spec: StudySpec,
    record: StudyRecord,
    *,
    adopt: bool = False,
) -> optuna.Study:
    """Create the study, or join the existing one if it is the same search.

    A study of that name that hpsearch did not make (no record: plain Optuna's, say) is
    refused in one line, unless ``adopt`` (``--adopt``): then, if its direction and every
    trial's parameters fit this search, it becomes this search, its trials kept.
    """
    directions = [optuna.study.StudyDirection[d.upper()] for d in spec.directions]
    try:
        storage.create_new_study(directions=directions, study_name=name)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        created = False
    study = optuna.load_study(
        study_name=name, storage=storage, pruner=spec.build_pruner(record.scale)
    )
    if created:
        _write_new(study, spec, record)
        return study
    raw = _wait_for_record(study)
    if raw is None:
        if not adopt:
            raise UserError(_not_ours(study))
        check_adoptable(study, spec, record.scale)
        _write_new(study, spec, record)
        return study
    _check_same_search(name, StudyRecord.from_dict(raw), record, set(raw))
    return study


def check_joinable(
    name: str,
    storage: optuna.storages.BaseStorage | None,
    spec: StudySpec,
    scale: str,
    *,
    adopt: bool = False,
) -> None:
    """Before a run prepares its data: refuse an existing study ``name`` that is not this
    search (another training budget, space, pruner...) or that hpsearch did not make
    (unless ``adopt``). The data is compared once it is known, in :func:`create_or_load`."""
    if storage is None:
        return
    existing = existing_study(name, storage)
    if existing is None:
        return
    raw = stored_record(existing)
    if raw is None:
        if not existing.get_trials(deepcopy=False):
            return  # an empty study may be another command's, its record on the way
        if not adopt:
            raise UserError(_not_ours(existing))
        check_adoptable(existing, spec, scale)
        return
    placeholder = DataRecord(root="", image_size=0, val_fraction=0.0)
    spec = spec_for_existing(name, storage, spec, scale)
    record = build_record(spec, scale, placeholder, workdir="")
    differences = StudyRecord.from_dict(raw).differences(record, set(raw))
    if differences:
        _refuse_difference(name, differences[0])


def existing_study(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study | None:
    """Study ``name`` of the storage, or None if there is none."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def _write_new(study: optuna.Study, spec: StudySpec, record: StudyRecord) -> None:
    record.write(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # optuna-dashboard labels its axes with them
        study.set_metric_names(list(spec.objectives or [spec.metric]))


def _wait_for_record(study: optuna.Study) -> dict[str, Any] | None:
    """The study's record; a study that has none yet and no trial either may have been
    made a moment ago by another command, which writes its record next: wait for it a
    little before taking the study for one hpsearch did not make."""
    deadline = time.monotonic() + RECORD_WAIT_S
    while True:
        raw = stored_record(study)
        if raw is not None or study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            return raw
        time.sleep(0.2)
        study = optuna.load_study(study_name=study.study_name, storage=study_storage(study))


def _not_ours(study: optuna.Study) -> str:
    trials = len(study.get_trials(deepcopy=False))
    return (
        f"study {study.study_name!r} in this storage was not made by hpsearch run (it has no "
        f"hpsearch record; {trials} trial(s)), so hpsearch does not train into it: pass "
        "--name to start a new study, or --adopt to make it this search, its trials kept"
    )


def check_adoptable(study: optuna.Study, spec: StudySpec, scale: str) -> None:
    """A study taken over with ``--adopt`` optimises the same way and its trials' parameters
    lie in this search's space (each trial then counts as one of this search's)."""
    there = ", ".join(d.name.lower() for d in study.directions)
    here = ", ".join(spec.directions)
    if there != here:
        raise UserError(f"--adopt: study {study.study_name!r} is {there}d, this search {here}d")
    space = distributions(spec.space_at(scale))
    for trial in study.get_trials(deepcopy=False):
        for name, value in trial.params.items():
            if name not in space or not contains(space[name], value):
                raise UserError(
                    f"--adopt: trial {trial.number} of {study.study_name!r} has "
                    f"{name}={value!r}, not in this search's space"
                )


def _check_same_search(
    name: str, existing: StudyRecord, record: StudyRecord, recorded: set[str]
) -> None:
    differences = existing.differences(record, recorded)
    if differences:
        _refuse_difference(name, differences[0])
    other_data = existing.data.difference(record.data)
    if other_data:
        raise UserError(
            f"study {name!r} already exists on other data ({other_data}); "
            "pass --name to start a new study"
        )


def _refuse_difference(name: str, difference: tuple[str, Any, Any]) -> None:
    key, there, now = difference
    raise UserError(
        f"study {name!r} already exists in this storage with a different {key} "
        f"({_shown(there)} there, {_shown(now)} now); pass --name to start a new study"
    )


def _shown(value: Any) -> str:
    return "not set" if value is None else repr(value)


def describe_axis(p: Param) -> dict[str, Any]:
    """An axis as recorded: its values, or its range."""
    if not p.is_range:
        return {"values": list(p.values)}
    return {"low": p.low, "high": p.high, "log": p.log, "step": p.step, "integer": p.integer}


def resolve_study_name(storage: optuna.storages.BaseStorage, name: str | None) -> str:
    """``name`` when given; else the storage's only study; else a UserError saying why."""
    if name:
        return name
    names = sorted(optuna.get_all_study_names(storage))
    if len(names) == 1:
        return names[0]
    if not names:
        raise UserError("no study in this storage: run one first (hpsearch run --study grid)")
    raise UserError(
        f"{len(names)} studies in this storage ({', '.join(names)}): choose one with --study NAME"
    )


def load_existing(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Load a study by name; a missing one is a UserError listing those present."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise UserError(
            f"no study named {name!r} in this storage (present: {', '.join(names) or 'none'})"
        ) from None
