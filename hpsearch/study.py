"""From a study file to an Optuna study: pruner, sampler per slot, creation and checks."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import optuna

from hpsearch.record import DataRecord, StudyRecord
from hpsearch.spec import Param, StudySpec
from trainer.errors import UserError


def build_pruner(spec: StudySpec, scale: str) -> optuna.pruners.BasePruner:
    """The study file's pruner at ``scale``; pruning reads the per-epoch validation metric."""
    pruner = spec.pruner_at(scale)
    kind, settings = pruner.kind, dict(pruner.settings)
    if kind == "none":
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(**settings)
    if kind == "percentile":
        percentile = settings.pop("percentile", 25.0)
        return optuna.pruners.PercentilePruner(percentile, **settings)
    if kind == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(**settings)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(**settings)
    raise ValueError(f"unknown pruner kind {kind!r}")


def sampler_for_slot(spec: StudySpec, scale: str, slot: int) -> optuna.samplers.BaseSampler:
    """The sampler that creates the trial of ``slot``.

    A grid slot is one fixed point; random and TPE draw with a seed derived from the
    slot, so a search is reproducible whatever worker happens to run which slot. The
    first slots of a random or TPE study run the ``[[enqueue]]``-ed configurations.
    """
    seed = spec.seed * 1_000_003 + slot
    if spec.sampler == "grid":
        point = spec.grid_points(scale)[grid_order(spec, scale)[slot]]
        return optuna.samplers.PartialFixedSampler(point, optuna.samplers.RandomSampler(seed))
    enqueued = spec.enqueued(scale)
    if slot < len(enqueued):
        fixed = enqueued[slot]
        return optuna.samplers.PartialFixedSampler(fixed, optuna.samplers.RandomSampler(seed))
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    tpe = spec.tpe
    startup = tpe.n_startup_trials if tpe and tpe.n_startup_trials is not None else None
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=startup if startup is not None else min(10, spec.budget(scale)),
        # Running trials count as bad ones, so parallel workers do not all propose alike.
        constant_liar=tpe.constant_liar if tpe else True,
    )


def is_enqueued(spec: StudySpec, scale: str, slot: int) -> bool:
    """True for the slots that run the ``[[enqueue]]``-ed configurations (the first ones)."""
    return slot < len(spec.enqueued(scale))


def grid_order(spec: StudySpec, scale: str) -> list[int]:
    """Which grid point (index in file order) each slot trains: a shuffle seeded by the study.

    Workers claim the lowest free slot, so this is the order in which the grid is run. A
    shuffled order, as Optuna's own GridSampler uses, makes the first trials (those that
    set the pruner's bar) and the trials of a search stopped early a spread of the grid
    rather than one corner of it. Enqueued grid points come first, in file order, each
    in its own point's slot (so it runs once). A point that would train like an earlier
    one (see ``StudySpec.grid_indices``) has no slot. The order is recorded in the study and
    checked when a study is resumed, so slot k always means the same point.
    """
    points = spec.grid_points(scale)
    trained = set(spec.grid_indices(scale))  # one point per distinct training
    first = [spec.trained_point(scale, p) for p in spec.enqueued(scale) if p in points]
    first = list(dict.fromkeys(first))
    rest = [int(i) for i in np.random.default_rng(spec.seed).permutation(len(points))]
    return first + [i for i in rest if i in trained and i not in first]


def spec_for_existing(
    name: str, storage: optuna.storages.BaseStorage, spec: StudySpec, scale: str
) -> StudySpec:
    """``spec`` as the existing study ``name`` was made: a grid study whose slots are
    every point of the grid (made before points that train alike were skipped) keeps them,
    so its slot k still means the same point."""
    if spec.sampler != "grid" or spec.grid_every_point:
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
    try:
        return StudyRecord.read(optuna.load_study(study_name=name, storage=storage))
    except KeyError:
        return None


def suggest(trial: optuna.Trial, space: tuple[Param, ...]) -> dict[str, Any]:
    """Ask the trial for every axis of the space (grid axes are categorical)."""
    params: dict[str, Any] = {}
    for p in space:
        if not p.is_range:
            params[p.name] = trial.suggest_categorical(p.name, list(p.values))
        elif p.integer:
            step = int(p.step) if p.step else 1
            params[p.name] = trial.suggest_int(
                p.name, int(p.low), int(p.high), step=step, log=p.log
            )
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return params


def build_record(spec: StudySpec, scale: str, data: DataRecord, workdir: str) -> StudyRecord:
    """What the study records about itself (read back by status, best and report)."""
    return StudyRecord(
        spec_file=str(spec.path),
        scale=scale,
        sampler=spec.sampler,
        pruner=spec.pruner.kind,
        pruner_settings=dict(spec.pruner_at(scale).settings),
        metric=spec.metric,
        direction=spec.direction,
        fixed=spec.train_values(scale),
        space=[p.name for p in spec.space_at(scale)],
        data=data,
        workdir=workdir,
        n_slots=spec.budget(scale),
        grid_order=grid_order(spec, scale) if spec.sampler == "grid" else None,
        overrides=dict(spec.overrides),
        seed=spec.seed,
    )


def create_or_load(
    name: str,
    storage: optuna.storages.BaseStorage,
    spec: StudySpec,
    record: StudyRecord,
) -> optuna.Study:
    """Create the study, or join the existing one if it is the same search."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=spec.direction,
        pruner=build_pruner(spec, record.scale),
        load_if_exists=True,
    )
    existing = StudyRecord.read(study)
    if existing is None:
        record.write(study)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([spec.metric])  # optuna-dashboard labels its axes with it
        return study
    differences = existing.differences(record)
    if differences:
        key, there, now = differences[0]
        raise UserError(
            f"study {name!r} already exists in this storage with a different {key} "
            f"({there!r} there, {now!r} now); pass --name to start a new study"
        )
    other_data = existing.data.difference(record.data)
    if other_data:
        raise UserError(
            f"study {name!r} already exists on other data ({other_data}); "
            "pass --name to start a new study"
        )
    return study


def resolve_study_name(storage: optuna.storages.BaseStorage, name: str | None) -> str:
    """``name`` when given; else the storage's only study; else a UserError saying why."""
    if name:
        return name
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    if len(names) == 1:
        return names[0]
    if not names:
        raise UserError("no study in this storage: run one first (hpsearch run --study grid)")
    raise UserError(
        f"{len(names)} studies in this storage ({', '.join(names)}): choose one with --study NAME"
    )


def add_stored_study_options(parser: Any, when_left_out: str) -> None:
    """``--study NAME`` (a study stored in the storage) and ``--storage URL``, for the
    commands that read a study; ``when_left_out`` says what leaving --study out does."""
    parser.add_argument(
        "--study",
        metavar="NAME",
        help="a study stored in the storage, by the name `hpsearch run` gave it (its study "
        f"file's name, or --name); {when_left_out}",
    )
    parser.add_argument("--storage", help="storage URL (default: $HPSEARCH_STORAGE or sqlite)")


def load_existing(name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """Load a study by name; a missing one is a UserError listing those present."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise UserError(
            f"no study named {name!r} in this storage (present: {', '.join(names) or 'none'})"
        ) from None
