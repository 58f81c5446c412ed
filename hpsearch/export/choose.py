"""Which trial a study's export ships, and what the study recorded about it.

With a confirmed ranking (``hpsearch confirm``) the winner is a confirmation run of the
best configuration; without one, the search's best complete trial. The runner-up it is
compared with is chosen here too: this is the one place that chooses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.paths import Workdir
from hpsearch.storage.optuna_api import study_storage
from hpsearch.study.confirm import confirm_study_name
from hpsearch.study.ranking import confirmed_ranking
from hpsearch.study.record import ATTR, SPLIT_SETTINGS, StudyRecord
from hpsearch.trials import (
    best_search_trial,
    first_value,
    is_feasible,
    is_multi_objective,
    no_best_reason,
    pareto_front,
    search_trials,
    trial_value,
)
from hpsearch.trials.constraints import broken, from_record
from hpsearch.trials.record import TrialRecord, is_confirmation_run
from trainer.config import DataConfig
from trainer.errors import UserError


@dataclass(frozen=True)
class SelectedTrial:
    """The trial being exported, as the study recorded it."""

    study: str
    number: int
    value: float | None
    metric: str | None
    """The objective's name (e.g. ``val_accuracy``), on the validation split."""
    params: dict[str, Any]
    best_epoch: int | None
    epochs_run: int | None
    selection_metrics: dict[str, float | None]
    """The best epoch's validation metrics (the trial's ``val_*`` user attrs)."""
    data_settings: dict[str, Any]
    """The data settings ``hpsearch run`` recorded on the study."""
    seed: int | None = None
    """The training seed of the exported run."""


def recorded_settings(study: optuna.Study) -> dict[str, Any]:
    """The settings ``hpsearch run`` recorded on the study, as a mapping ({} for none)."""
    record = StudyRecord.read(study)
    return record.to_dict() if record else {}


def best_complete_trial(study: optuna.Study) -> FrozenTrial:
    """The study's best complete trial; a UserError when there is none yet."""
    best = best_search_trial(study)
    if best is None:
        raise UserError(f"study {study.study_name!r} has {no_best_reason(study)}")
    return best


def choose_winner_and_runner_up(
    study: optuna.Study, chosen: int | None = None
) -> tuple[FrozenTrial, FrozenTrial | None]:
    """The trial to export and the one to compare it with: the one place that chooses.

    ``chosen`` (``best --trial N``): search trial N, a complete and feasible one (a
    point of a Pareto front, say), with no runner-up.

    With a confirmed ranking (``hpsearch confirm``), the winner is the run of the best
    configuration whose value is closest to that configuration's mean over seeds, and
    the runner-up the same for the second configuration. Without one, the winner is the
    search's best complete trial (one seed: unconfirmed) and the runner-up the best
    complete trial of another configuration; ties go to the earlier trial. The
    runner-up is None when there is no other configuration.
    """
    if chosen is not None:
        return chosen_trial(study, chosen), None
    confirmed = _confirmed_choice(study)
    if confirmed is not None:
        return confirmed
    winner = best_complete_trial(study)
    others = [
        t
        for t in search_trials(study, (TrialState.COMPLETE,))
        if t.params != winner.params and t.value is not None and is_feasible(t)
    ]
    if not others:
        return winner, None
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return winner, min(others, key=lambda t: (sign * trial_value(t), t.number))


def chosen_trial(study: optuna.Study, number: int) -> FrozenTrial:
    """Search trial ``number``, if it is complete and keeps the study's constraints."""
    trial = next((t for t in search_trials(study) if t.number == number), None)
    where = f"--trial {number}"
    if trial is None:
        raise UserError(f"{where}: study {study.study_name!r} ran no trial {number}")
    if trial.state != TrialState.COMPLETE:
        raise UserError(f"{where}: trial {number} is {trial.state.name.lower()}, not complete")
    if not is_feasible(trial):
        raise UserError(f"{where}: trial {number} breaks {', '.join(broken(trial))}")
    return trial


def _confirmed_choice(study: optuna.Study) -> tuple[FrozenTrial, FrozenTrial | None] | None:

    ranking = confirmed_ranking(study)
    if ranking is None or not ranking.has_intervals:
        return None  # a configuration without an interval is not confirmed
    companion = optuna.load_study(
        study_name=confirm_study_name(study.study_name), storage=study_storage(study)
    )
    trials = {t.number: t for t in companion.get_trials(deepcopy=False)}
    chosen = [trials[c.representative()[0]] for c in ranking.configs[:2]]
    return chosen[0], (chosen[1] if len(chosen) > 1 else None)


def trial_label(trial: FrozenTrial, study: optuna.Study) -> str:
    """``trial N``, or ``trial N of STUDY.confirm`` for a confirmation run (whose number
    would otherwise read as one of the search's)."""
    if not is_confirmation_run(trial):
        return f"trial {trial.number}"
    return f"trial {trial.number} of {confirm_study_name(study.study_name)}"


def selection_statement(study: optuna.Study, trial: FrozenTrial, chosen: bool = False) -> str:
    """How the exported trial was chosen, in one sentence (confirmed or not, or by
    ``--trial``)."""
    if chosen:
        if is_multi_objective(study):
            front = trial.number in {t.number for t in pareto_front(study)}
            what = "a point of the Pareto front" if front else "dominated: off the front"
        else:
            best = best_search_trial(study)
            same = best is not None and best.number == trial.number
            what = "the search's best" if same else "not the search's best"
        values = ", ".join(f"{v:.4g}" for v in trial.values or [])
        return (
            f"chosen with --trial: trial {trial.number} ({what}; values {values}, "
            f"validation split), one run (one seed)" + feasibility_note(study)
        )
    return _confirmed_or_not(study, trial) + feasibility_note(study)


def feasibility_note(study: optuna.Study) -> str:
    """What the study's constraints left to choose from ('' for a study without)."""
    record = StudyRecord.read(study)
    constraints = from_record(record.constraints) if record is not None else ()
    if not constraints:
        return ""
    complete = search_trials(study, (TrialState.COMPLETE,))
    feasible = sum(is_feasible(t) for t in complete)
    rules = "; ".join(c.describe() for c in constraints)
    return (
        f"; chosen among the feasible trials only: {feasible} of {len(complete)} complete "
        f"trials keep {rules} (validation split)"
    )


def _confirmed_or_not(study: optuna.Study, trial: FrozenTrial) -> str:
    ranking = confirmed_ranking(study)
    if ranking is None or not ranking.has_intervals or not is_confirmation_run(trial):
        return (
            f"unconfirmed winner: trial {trial.number} is the best of one run (one seed) per "
            f"configuration; `hpsearch confirm --study {study.study_name}` trains the best "
            "again with new seeds"
        )
    from hpsearch.study.race import stored_race

    top = ranking.configs[0]
    n = len(top.values)
    race = stored_race(study)
    raced = f"{race['summary']}; " if race is not None else ""
    return (
        f"confirmed winner: the configuration of search trial {top.source_trial}, mean "
        f"{top.mean:.4f} over {n} seed(s) (95 % CI {top.ci95[0]:.4f}-{top.ci95[1]:.4f}); "
        f"{raced}{ranking.verdict()}. Exported: its run closest to the mean, trial "
        f"{trial.number} of {study.study_name}.confirm (seed {TrialRecord.read(trial).seed})"
    )


def selected_trial(study: optuna.Study, trial: FrozenTrial) -> SelectedTrial:
    """``trial`` of ``study`` with what the study and the trial recorded about it."""
    attrs = recorded_settings(study)
    record = TrialRecord.read(trial)
    confirmed = is_confirmation_run(trial)
    return SelectedTrial(
        study=confirm_study_name(study.study_name) if confirmed else study.study_name,
        seed=record.training_seed,
        number=trial.number,
        value=first_value(trial),
        metric=attrs.get("metric"),
        params={k: _plain(v) for k, v in trial.params.items()},
        best_epoch=record.best_epoch,
        epochs_run=record.epochs_run,
        selection_metrics=validation_metrics(trial),
        data_settings=dict(attrs.get("data") or {}),
    )


def checkpoint_path(trial: FrozenTrial, study_name: str, workdir: Workdir) -> Path | None:
    """The trial's ``best.pt``: as recorded, or in ``workdir`` if the workdir has moved."""
    record = TrialRecord.read(trial)
    recorded = record.checkpoint
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    if recorded and "studies" in Path(recorded).parts:
        # The same place under the moved workdir (its study's own id folder included).
        parts = Path(recorded).parts
        tail = parts[len(parts) - 1 - parts[::-1].index("studies") :]
        moved = workdir.artifact_root.joinpath(*tail)
        if moved.is_file():
            return moved
    slot = record.slot
    if is_confirmation_run(trial):
        study_name = confirm_study_name(study_name)
    if slot is not None:
        try:
            candidate = workdir.trial_dir(study_name, int(slot)) / "best.pt"
        except UserError:
            return None
        if candidate.is_file():
            return candidate
    return None


def validation_metrics(trial: FrozenTrial) -> dict[str, float | None]:
    """The best epoch's validation metrics recorded on the trial (``val_*``)."""
    return TrialRecord.read(trial).validation_metrics()


def best_summary(
    study: optuna.Study, workdir: Workdir, chosen: int | None = None
) -> dict[str, Any]:
    """The best trial (or trial ``chosen``) as JSON-able data: parameters, validation
    metrics, checkpoint."""
    trial, runner_up = choose_winner_and_runner_up(study, chosen)
    selected = selected_trial(study, trial)
    ckpt = checkpoint_path(trial, study.study_name, workdir)
    return {
        "study": selected.study,
        "metric": selected.metric,
        "direction": ", ".join(d.name.lower() for d in study.directions),
        "synthetic": bool(selected.data_settings.get("synthetic", False)),
        "trial": selected.number,
        "value": selected.value,
        "params": selected.params,
        "best_epoch": selected.best_epoch,
        "epochs_run": selected.epochs_run,
        "validation_metrics": selected.selection_metrics,
        "checkpoint": str(ckpt) if ckpt else TrialRecord.read(trial).checkpoint,
        "checkpoint_exists": ckpt is not None,
        "runner_up": runner_up.number if runner_up else None,
        "seed": selected.seed,
        "selection": selection_statement(study, trial, chosen is not None),
    }


def data_config(study: optuna.Study, workdir: Workdir) -> DataConfig:
    """The study's data settings (as ``hpsearch run`` recorded them), cache in the workdir."""
    record = StudyRecord.read(study)
    if record is None or not record.data.root:
        raise UserError(
            f"study {study.study_name!r} records no data settings "
            f"(user attr {ATTR!r}); was it created by hpsearch run?"
        )
    settings = {k: getattr(record.data, k) for k in SPLIT_SETTINGS}
    return DataConfig(root=Path(record.data.root), cache_dir=workdir.cache, **settings)


def _plain(value: Any) -> Any:
    """Parameter values as plain JSON/pickle-safe Python values."""
    if isinstance(value, np.generic):
        return value.item()
    return value
