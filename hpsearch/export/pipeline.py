"""The export pipeline: :func:`export_best` runs the stages of :mod:`hpsearch.export` in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from hpsearch.export.choose import (
    choose_winner_and_runner_up,
    data_config,
    selected_trial,
    selection_statement,
)
from hpsearch.export.compare import evaluate_runner_up, write_uncertainty
from hpsearch.export.constraints import check_on_split
from hpsearch.export.evaluate import Evaluation, evaluate
from hpsearch.export.render import render
from hpsearch.export.weights import checkpoint_weights, retrained_weights
from hpsearch.export.write import confirmation, read_evidence, write_metrics, write_model
from hpsearch.paths import Workdir
from hpsearch.trials.constraints import format_checks
from hpsearch.trials.record import TrialRecord
from trainer.config import DataConfig
from trainer.data import Data

__all__ = ["ExportResult", "export_best"]


@dataclass(frozen=True)
class ExportResult:
    """What ``export_best`` wrote and measured."""

    out_dir: Path
    metrics: dict[str, Any]
    """The content of ``metrics.json``."""
    png_message: str | None = None
    files: tuple[Path, ...] = ()


def export_best(
    study: optuna.Study,
    out_dir: Path,
    workdir: Workdir,
    *,
    retrain: bool = False,
    device: str = "auto",
    data: Data | None = None,
    pngs: bool = True,
    log: Callable[[str], None] = print,
    n_resamples: int | None = None,
    chosen: int | None = None,
) -> ExportResult:
    """Write the best trial's final model, its predictions, metrics, report and model card.

    ``data`` defaults to the study's data loaded through the workdir's cache;
    ``n_resamples`` is the number of bootstrap resamples of every interval
    (default ``reports.uncertainty.N_RESAMPLES``); ``chosen``: export search trial N
    (``best --trial N``: a point of a Pareto front, say) instead of the best.
    """
    from trainer.training import resolve_device

    trial, rival = choose_winner_and_runner_up(study, chosen)
    selected = selected_trial(study, trial)
    if data is None:
        data = _load(data_config(study, workdir))
    torch_device = resolve_device(device)

    if retrain:
        weights = retrained_weights(trial, data, torch_device, log)
    else:
        weights = checkpoint_weights(trial, study.study_name, workdir, data)
    evaluation = evaluate(weights, data, torch_device, retrain=retrain, log=log)
    runner_up = evaluate_runner_up(
        study, rival, evaluation, workdir, data, torch_device, retrain=retrain, log=log,
        chosen=chosen is not None,
    )  # fmt: skip

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx = write_model(out_dir, weights, evaluation, selected, synthetic=bool(data.synthetic))
    selection = selection_statement(study, trial, chosen is not None)
    log(selection)
    checks = constraint_checks(study, trial, evaluation, n_resamples)
    for line in format_checks(checks):
        log(f"constraint: {line}")
    write_metrics(
        out_dir, evaluation, weights, selected, onnx, data, selection, confirmation(study), checks
    )
    write_uncertainty(out_dir, runner_up, n_resamples, log)
    # The report and the card read the files just written, nothing else.
    frame, metrics = read_evidence(out_dir)
    png = render(out_dir, study, frame, metrics, pngs=pngs)
    files = tuple(sorted(p for p in out_dir.iterdir() if p.is_file()))
    return ExportResult(out_dir, metrics, png.message(), files)


def constraint_checks(
    study: optuna.Study, trial: FrozenTrial, evaluation: Evaluation, n_resamples: int | None
) -> list[dict[str, Any]]:
    """The study's constraints measured on the evaluated split ([] for a study without)."""
    from hpsearch.study.record import StudyRecord
    from hpsearch.trials.constraints import from_record, measures
    from hpsearch.trials.cost import trial_cost

    record = StudyRecord.read(study)
    constraints = from_record(record.constraints) if record is not None else ()
    if not constraints:
        return []
    cost = trial_cost(trial)
    trained = measures(TrialRecord.read(trial).result, cost.to_attr() if cost else None)
    y_true = evaluation.labels.numpy()
    resamples = n_resamples if n_resamples is not None else 1000
    return check_on_split(
        constraints, evaluation.split, y_true, evaluation.proba, trained, resamples
    )


def _load(config: DataConfig) -> Data:
    from trainer.data import load_data

    return load_data(config)
