"""Warm starts: a finished study's completed trials copied into a new random or TPE study.

``hpsearch run --from-study NAME [--from-storage URL]`` gives a search prior knowledge:
the completed trials of another study (a smaller scale, say) are added to this one with
Optuna's ``add_trial``, so TPE's first proposals already follow what worked there. A
copied trial carries the user attribute ``copied_from`` (source study, trial, scale),
has no per-epoch values (the pruner compares this study's epochs only) and is not one of
the study's own trials: no best trial, count, stop rule or confirmation takes it
(``hpsearch.trials.search_trials``); every trials table shows it as ``copied``.

Each source trial is copied once however many processes run the same command: a copy
is claimed first by an INSERT under the primary key (study, source trial) of a small
table beside Optuna's, the same single-write claim the slots use.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpsearch.storage import normalize_url, open_storage, redact
from hpsearch.storage.optuna_api import contains, study_id, study_storage
from hpsearch.storage.tables import copies_table, ensure_table, insert_once, update_if
from hpsearch.study.record import StudyRecord
from hpsearch.study.space import distributions
from hpsearch.study.spec import StudySpec
from hpsearch.study.stored import load_existing
from hpsearch.trials.record import COPIED, is_copied
from trainer.errors import UserError

#: Study user attribute naming the one study this study's copies come from.
SOURCE_ATTR = "hpsearch_copied_from"

#: A claimed copy whose trial was never added (its process died) is claimed again
#: after this many seconds.
STALE_CLAIM_S = 60.0


@dataclass
class CopyReport:
    """What a warm start did: trials copied now, copied before, and left out (why)."""

    source: str
    copied: int = 0
    before: int = 0
    left_out: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{self.copied} completed trial(s) copied from study {self.source}"]
        if self.before:
            parts.append(f"{self.before} copied before")
        parts += [f"{n} left out ({why})" for why, n in sorted(self.left_out.items())]
        return "warm start: " + "; ".join(parts) + " (shown as 'copied'; never this study's own)"


def check_can_warm_start(spec: StudySpec) -> None:
    """A grid trains every point whatever came before: --from-study is for random and TPE."""
    if spec.is_grid:
        raise UserError(
            f"--from-study warms up a random or TPE study; {spec.name!r} is a grid, which "
            "trains every point whatever came before"
        )


def open_source(
    name: str, storage: Any, from_storage: str | None, *, target: str, target_url: str
) -> tuple[optuna.Study, str]:
    """The source study, and how to name it in output (``NAME`` or ``NAME on URL``);
    the study being run (``target`` on ``target_url``) is refused as its own source."""
    elsewhere = from_storage and normalize_url(from_storage) != normalize_url(target_url)
    if name == target and not elsewhere:
        raise UserError(
            f"--from-study {name!r} is the study being run; name another study (or --name)"
        )
    if from_storage:
        source = load_existing(name, open_storage(from_storage, must_exist=True))
        return source, f"{name!r} on {redact(from_storage)}"
    return load_existing(name, storage), repr(name)


def copy_completed_trials(
    source: optuna.Study,
    target: optuna.Study,
    storage: optuna.storages.RDBStorage,
    spec: StudySpec,
    scale: str,
    label: str,
) -> CopyReport:
    """Copy the source's completed trials (its own, not copies it holds) into ``target``,
    a study on the RDB ``storage``.

    A trial is left out when a parameter of this study's space is missing from it or
    outside this study's range or choices (the sampler could not use it). Parameters
    this study does not search are dropped. Rerunning copies nothing twice.
    """
    check_can_warm_start(spec)
    _check_same_question(source, target, spec, label)
    _bind_source(target, source, label)
    space = distributions(spec.space_at(scale))
    board = _CopyBoard(storage, target)
    report = CopyReport(source=label)
    source_scale = _scale_of(source)
    for trial in source.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if is_copied(trial):
            continue
        why = _unusable(trial, space)
        if why is not None:
            report.left_out[why] = report.left_out.get(why, 0) + 1
            continue
        if not board.claim(trial.number):
            report.before += 1
            continue
        origin = {"study": source.study_name, "trial": trial.number, "scale": source_scale}
        copy = optuna.trial.create_trial(
            params={name: trial.params[name] for name in space},
            distributions=space,
            values=trial.values,
            user_attrs={COPIED: origin},
        )
        trial_id = study_storage(target).create_new_trial(study_id(target), template_trial=copy)
        board.done(trial.number, trial_id)
        report.copied += 1
    return report


def _check_same_question(
    source: optuna.Study, target: optuna.Study, spec: StudySpec, label: str
) -> None:
    if source.directions != target.directions:
        there = ", ".join(d.name.lower() for d in source.directions)
        here = ", ".join(d.name.lower() for d in target.directions)
        raise UserError(
            f"study {label} is {there}d, this one {here}d: its values cannot guide this search"
        )
    record = StudyRecord.read(source)
    if record is not None and record.metric != spec.metric:
        raise UserError(
            f"study {label} optimised {record.metric}, this one {spec.metric}: "
            "its values cannot guide this search"
        )


def _bind_source(target: optuna.Study, source: optuna.Study, label: str) -> None:
    """A study takes copies from one source; a second source is refused in one line."""
    bound = target.user_attrs.get(SOURCE_ATTR)
    if bound is None:
        target.set_user_attr(SOURCE_ATTR, {"study": source.study_name, "label": label})
        return
    if bound.get("study") != source.study_name:
        raise UserError(
            f"study {target.study_name!r} already holds trials copied from study "
            f"{bound.get('label', bound.get('study'))}; pass --name to start a new study"
        )


def _unusable(trial: FrozenTrial, space: dict[str, BaseDistribution]) -> str | None:
    if not trial.values or not all(math.isfinite(v) for v in trial.values):
        return "no finite value"
    for name, dist in space.items():
        if name not in trial.params:
            return f"no {name}"
        if not contains(dist, trial.params[name]):
            return f"{name} outside this study's space"
    return None


def _scale_of(study: optuna.Study) -> str | None:
    record = StudyRecord.read(study)
    return record.scale if record is not None else None


class _CopyBoard:
    """Single-write claims of source trials, so each is copied once."""

    def __init__(self, storage: optuna.storages.RDBStorage, study: optuna.Study) -> None:
        self.engine: sa.Engine = storage.engine
        self.study_id = study_id(study)
        ensure_table(self.engine, copies_table)

    def claim(self, source_trial: int) -> bool:
        """True when this process is to copy ``source_trial`` (first claim, or a stale
        one whose copier died before adding the trial)."""
        now = time.time()
        row = {"study_id": self.study_id, "source_trial": source_trial}
        if insert_once(self.engine, copies_table, {**row, "trial_id": None, "claimed_at": now}):
            return True
        c = copies_table.c
        stale = (
            c.study_id == self.study_id,
            c.source_trial == source_trial,
            c.trial_id.is_(None),
            c.claimed_at < now - STALE_CLAIM_S,
        )
        return update_if(self.engine, copies_table, stale, {"claimed_at": now})

    def done(self, source_trial: int, trial_id: int) -> None:
        c = copies_table.c
        where = (c.study_id == self.study_id, c.source_trial == source_trial)
        update_if(self.engine, copies_table, where, {"trial_id": trial_id})
