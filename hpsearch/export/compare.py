"""Stage 3 of an export: the runner-up on the winner's images, and the intervals of every
number with the winner-vs-runner-up comparison, computed from the prediction files."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from hpsearch.export.choose import SelectedTrial, checkpoint_path, selected_trial, trial_label
from hpsearch.export.evaluate import Evaluation
from hpsearch.export.files import METRICS_FILE, PREDICTIONS_FILE, RUNNER_UP_PREDICTIONS_FILE
from hpsearch.export.weights import checkpoint_weights
from hpsearch.paths import Workdir
from hpsearch.study.confirm import CONFIRM_SUFFIX
from hpsearch.trials.record import TrialRecord
from trainer.data import Data
from trainer.errors import UserError


@dataclass(frozen=True)
class RunnerUp:
    """The runner-up, evaluated on the winner's split when it can be compared with it."""

    trial: SelectedTrial | None
    """None when the study has no complete trial of another configuration."""
    evaluation: Evaluation | None
    """None when there is no comparison; ``note`` says why."""
    note: str | None = None
    source_text: str | None = None


def evaluate_runner_up(
    study: optuna.Study,
    rival: FrozenTrial | None,
    winner: Evaluation,
    workdir: Workdir,
    data: Data,
    device: torch.device,
    *,
    retrain: bool,
    log: Callable[[str], None],
    chosen: bool = False,
) -> RunnerUp:
    """The runner-up's checkpoint on the winner's images, or a note saying why not
    (``chosen``: the exported trial was named with ``--trial``, and has no runner-up)."""
    from trainer.inference import predict_proba

    selected = selected_trial(study, rival) if rival is not None else None
    if rival is None and chosen:
        note = "the exported trial was chosen with --trial: no runner-up is compared with it"
    elif rival is None:
        note = "the study has no complete trial of another configuration to compare with"
    elif winner.split != "test":
        note = (
            "no held-out test split: on the validation split that chose the winner a "
            "comparison would favour it, so none is made"
        )
    elif retrain:
        note = (
            "with --retrain the exported model was trained on train+validation and the "
            "runner-up was not: they are not compared (export without --retrain to compare)"
        )
    elif checkpoint_path(rival, study.study_name, workdir) is None:
        note = (
            f"the checkpoint of runner-up {trial_label(rival, study)} was not found "
            f"({TrialRecord.read(rival).checkpoint!r}): no comparison"
        )
    else:
        note = None
    if note is not None or rival is None:
        log(f"note: {note}")
        return RunnerUp(selected, None, note)
    try:
        weights = checkpoint_weights(rival, study.study_name, workdir, data)
    except UserError as err:
        log(f"note: runner-up {trial_label(rival, study)} not compared: {err}")
        return RunnerUp(selected, None, f"runner-up {trial_label(rival, study)}: {err}")
    log(f"evaluating runner-up {trial_label(rival, study)} on the same {winner.split} images")
    proba = predict_proba(weights.model, winner.images, weights.mean, weights.std, device=device)
    evaluation = dataclasses.replace(winner, proba=proba, notes=())
    return RunnerUp(selected, evaluation, None, weights.source_text)


def write_uncertainty(
    out_dir: Path, runner_up: RunnerUp, n_resamples: int | None, log: Callable[[str], None]
) -> None:
    """Add the intervals and the winner-vs-runner-up comparison to ``metrics.json``.

    Both are computed from the prediction files read back; the runner-up's go to
    ``predictions_runner_up.csv``.
    """
    from reports.final import (
        compare_predictions,
        metric_intervals,
        predictions_frame,
        read_predictions,
        write_predictions,
    )
    from reports.uncertainty import BOOTSTRAP_SEED, N_RESAMPLES

    n_resamples = N_RESAMPLES if n_resamples is None else n_resamples
    frame = read_predictions(out_dir / PREDICTIONS_FILE)
    metrics = json.loads((out_dir / METRICS_FILE).read_text(encoding="utf-8"))
    log(f"bootstrap intervals: {n_resamples} resamples of the {metrics['split']} images")
    metrics["ci95"] = metric_intervals(frame, n_resamples, BOOTSTRAP_SEED)
    comparison: dict[str, Any] = {"runner_up": _rival_identity(runner_up)}
    path = out_dir / RUNNER_UP_PREDICTIONS_FILE
    if runner_up.evaluation is None:
        comparison["note"] = runner_up.note
        path.unlink(missing_ok=True)  # a previous export's into the same folder
    else:
        ev = runner_up.evaluation
        write_predictions(
            predictions_frame(list(ev.names), ev.split, ev.labels.numpy(), ev.proba), path
        )
        comparison.update(
            compare_predictions(frame, read_predictions(path), n_resamples, BOOTSTRAP_SEED)
        )
        comparison["predictions"] = path.name
    metrics["comparison"] = comparison
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


def _rival_identity(runner_up: RunnerUp) -> dict[str, Any] | None:
    """What metrics.json says about the runner-up trial."""
    trial = runner_up.trial
    if trial is None:
        return None
    confirmed = trial.study.endswith(CONFIRM_SUFFIX)
    return {
        "study": trial.study,
        "trial": trial.number,
        "value": trial.value,
        "metric": trial.metric,
        "params": trial.params,
        "weights": runner_up.source_text,
        "chosen_as": (
            "the second configuration of the confirmed ranking, its run closest to the "
            "configuration's mean"
            if confirmed
            else "the best trial of another configuration"
        ),
    }
