"""From the best trial of a study to a finished model folder with its evidence.

The folder gets ``model.pt``, ``model.onnx``, ``predictions.csv`` (the evaluated split,
one row per image), ``metrics.json`` (computed from ``predictions.csv`` read back, with
a 95 % interval on every number), ``report.html`` with PNG copies of its figures, and
``MODEL_CARD.md``. The evaluated split is the held-out test split; a study without one is
evaluated on its validation split, and everything says so.

The winner is compared with the runner-up (the best complete trial of another
configuration) on the same test images; the runner-up's predictions go to
``predictions_runner_up.csv`` and the comparison into ``metrics.json``.

:func:`export_best` runs the stages in order: choose the weights (the trial's checkpoint
or a retrain) -> evaluate them (and the runner-up's checkpoint) -> write the model files
-> write the metrics -> render the report and the model card. What one stage hands the
next is a frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from hpsearch.model_file import MODEL_FILE, ONNX_FILE, export_onnx, onnx_probabilities, save_model
from hpsearch.paths import Workdir
from hpsearch.record import ATTR, SPLIT_SETTINGS, StudyRecord
from reports.trial_record import TrialRecord
from reports.trials import best_search_trial, search_trials
from trainer.classes import CLASS_NAMES
from trainer.data import Data, DataConfig
from trainer.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from reports.png import PngResult

PREDICTIONS_FILE = "predictions.csv"
RUNNER_UP_PREDICTIONS_FILE = "predictions_runner_up.csv"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
#: Images of the evaluated split run through both PyTorch and ONNX Runtime.
ONNX_CHECK_BATCH = 32


@dataclass(frozen=True)
class ExportResult:
    """What ``export_best`` wrote and measured."""

    out_dir: Path
    metrics: dict[str, Any]
    """The content of ``metrics.json``."""
    png_message: str | None = None
    files: tuple[Path, ...] = ()


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


@dataclass(frozen=True)
class Weights:
    """The model to export and where its weights come from."""

    model: nn.Module
    arch: str
    image_size: int
    mean: float
    std: float
    config: dict[str, Any] | None
    epoch: int | None
    source: str
    """``checkpoint`` (the trial's best epoch) or ``retrain`` (train + validation)."""
    source_text: str
    checkpoint: str | None = None
    """The checkpoint file the weights were read from (None for a retrain)."""


@dataclass(frozen=True)
class Evaluation:
    """The model's probabilities on the evaluated split."""

    split: str
    """``test``, or ``validation`` for a study that holds out no test split."""
    names: tuple[str, ...]
    images: torch.Tensor
    labels: torch.Tensor
    proba: np.ndarray
    notes: tuple[str, ...]
    """Caveats about these numbers, said in the log, metrics.json and the report."""


@dataclass(frozen=True)
class OnnxCheck:
    """``model.onnx`` against PyTorch on the first ``batch`` images of the evaluated split:
    the largest difference in a predicted probability, and the torch.onnx exporter used."""

    max_abs_prob_diff: float
    batch: int
    exporter: str


@dataclass(frozen=True)
class RunnerUp:
    """The runner-up, evaluated on the winner's split when it can be compared with it."""

    trial: SelectedTrial | None
    """None when the study has no complete trial of another configuration."""
    evaluation: Evaluation | None
    """None when there is no comparison; ``note`` says why."""
    note: str | None = None
    source_text: str | None = None


# -- the study record -------------------------------------------------------------------


def _recorded(study: optuna.Study) -> dict[str, Any]:
    """The settings ``hpsearch run`` recorded on the study, as a mapping ({} for none)."""
    record = StudyRecord.read(study)
    return record.to_dict() if record else {}


def best_complete_trial(study: optuna.Study) -> FrozenTrial:
    """The study's best complete trial; a UserError when there is none yet."""
    best = best_search_trial(study)
    if best is None:
        states = sorted({t.state.name.lower() for t in search_trials(study)})
        raise UserError(
            f"study {study.study_name!r} has no complete trial yet "
            f"(trial states: {', '.join(states) or 'no trials'})"
        )
    return best


def choose_winner_and_runner_up(study: optuna.Study) -> tuple[FrozenTrial, FrozenTrial | None]:
    """The trial to export and the one to compare it with: the one place that chooses.

    With a confirmed ranking (``hpsearch confirm``), the winner is the run of the best
    configuration whose value is closest to that configuration's mean over seeds, and
    the runner-up the same for the second configuration. Without one, the winner is the
    search's best complete trial (one seed: unconfirmed) and the runner-up the best
    complete trial of another configuration; ties go to the earlier trial. The
    runner-up is None when there is no other configuration.
    """
    confirmed = _confirmed_choice(study)
    if confirmed is not None:
        return confirmed
    winner = best_complete_trial(study)
    others = [
        t
        for t in search_trials(study, (TrialState.COMPLETE,))
        if t.params != winner.params and t.value is not None
    ]
    if not others:
        return winner, None
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return winner, min(others, key=lambda t: (sign * float(t.value), t.number))


def _confirmed_choice(study: optuna.Study) -> tuple[FrozenTrial, FrozenTrial | None] | None:
    from hpsearch.confirm import confirm_study_name
    from hpsearch.ranking import confirmed_ranking

    ranking = confirmed_ranking(study)
    if ranking is None:
        return None
    companion = optuna.load_study(
        study_name=confirm_study_name(study.study_name), storage=study._storage
    )
    trials = {t.number: t for t in companion.get_trials(deepcopy=False)}
    chosen = [trials[c.representative()[0]] for c in ranking.configs[:2]]
    return chosen[0], (chosen[1] if len(chosen) > 1 else None)


def trial_label(trial: FrozenTrial, study: optuna.Study) -> str:
    """``trial N``, or ``trial N of STUDY.confirm`` for a confirmation run (whose number
    would otherwise read as one of the search's)."""
    if "confirm_of" not in trial.user_attrs:
        return f"trial {trial.number}"
    from hpsearch.confirm import confirm_study_name

    return f"trial {trial.number} of {confirm_study_name(study.study_name)}"


def selection_statement(study: optuna.Study, trial: FrozenTrial) -> str:
    """How the exported trial was chosen, in one sentence (confirmed or not)."""
    from hpsearch.ranking import confirmed_ranking

    ranking = confirmed_ranking(study)
    if ranking is None or "confirm_of" not in trial.user_attrs:
        return (
            f"unconfirmed winner: trial {trial.number} is the best of one run (one seed) per "
            f"configuration; `hpsearch confirm --study {study.study_name}` trains the best "
            "again with new seeds"
        )
    top = ranking.configs[0]
    n = len(top.values)
    return (
        f"confirmed winner: the configuration of search trial {top.source_trial}, mean "
        f"{top.mean:.4f} over {n} seed(s) (95 % CI {top.ci95[0]:.4f}-{top.ci95[1]:.4f}); "
        f"{ranking.verdict()}. Exported: its run closest to the mean, trial {trial.number} "
        f"of {study.study_name}.confirm (seed {trial.user_attrs.get('seed')})"
    )


def selected_trial(study: optuna.Study, trial: FrozenTrial) -> SelectedTrial:
    """``trial`` of ``study`` with what the study and the trial recorded about it."""
    from hpsearch.confirm import confirm_study_name

    attrs = _recorded(study)
    record = TrialRecord.read(trial)
    confirmed = "confirm_of" in trial.user_attrs
    return SelectedTrial(
        study=confirm_study_name(study.study_name) if confirmed else study.study_name,
        seed=trial.user_attrs.get("seed") if confirmed else (record.config or {}).get("seed"),
        number=trial.number,
        value=trial.value,
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
    slot = record.slot
    if "confirm_of" in trial.user_attrs:
        from hpsearch.confirm import confirm_study_name

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


def best_summary(study: optuna.Study, workdir: Workdir) -> dict[str, Any]:
    """The best trial as JSON-able data: parameters, validation metrics, checkpoint."""
    trial, runner_up = choose_winner_and_runner_up(study)
    selected = selected_trial(study, trial)
    ckpt = checkpoint_path(trial, study.study_name, workdir)
    return {
        "study": selected.study,
        "metric": selected.metric,
        "direction": study.direction.name.lower(),
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
        "selection": selection_statement(study, trial),
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


# -- the export -------------------------------------------------------------------------


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
) -> ExportResult:
    """Write the best trial's final model, its predictions, metrics, report and model card.

    ``data`` defaults to the study's data loaded through the workdir's cache;
    ``n_resamples`` is the number of bootstrap resamples of every interval
    (default ``reports.uncertainty.N_RESAMPLES``).
    """
    from trainer.training import resolve_device

    trial, rival = choose_winner_and_runner_up(study)
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
        study, rival, evaluation, workdir, data, torch_device, retrain=retrain, log=log
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx = write_model(out_dir, weights, evaluation, selected, synthetic=bool(data.synthetic))
    selection = selection_statement(study, trial)
    log(selection)
    write_metrics(out_dir, evaluation, weights, selected, onnx, data, selection)
    write_uncertainty(out_dir, runner_up, n_resamples, log)
    # The report and the card read the files just written, nothing else.
    frame, metrics = read_evidence(out_dir)
    png = render(out_dir, study, frame, metrics, pngs=pngs)
    files = tuple(sorted(p for p in out_dir.iterdir() if p.is_file()))
    return ExportResult(out_dir, metrics, png.message(), files)


# -- stage 1: the weights ---------------------------------------------------------------


def checkpoint_weights(
    trial: FrozenTrial, study_name: str, workdir: Workdir, data: Data
) -> Weights:
    """The trial's best checkpoint; a UserError (suggesting --retrain) when it is gone."""
    from trainer.predict import load_model

    ckpt = checkpoint_path(trial, study_name, workdir)
    if ckpt is None:
        raise UserError(
            f"checkpoint of trial {trial.number} not found "
            f"({TrialRecord.read(trial).checkpoint!r}); pass --retrain to train it again"
        )
    model, meta = load_model(ckpt)
    if int(meta.get("image_size", data.image_size)) != data.image_size:
        raise UserError(
            f"model image size {meta.get('image_size')} differs from the data's {data.image_size}"
        )
    return Weights(
        model=model,
        arch=meta["arch"],
        image_size=int(data.image_size),
        mean=float(meta["mean"]),
        std=float(meta["std"]),
        config=meta.get("config"),
        epoch=meta.get("epoch"),
        source="checkpoint",
        source_text=f"best checkpoint of trial {trial.number} (epoch {meta.get('epoch')})",
        checkpoint=str(ckpt),
    )


def retrained_weights(
    trial: FrozenTrial, data: Data, device: torch.device, log: Callable[[str], None]
) -> Weights:
    """The trial's configuration trained again on train + validation for its best epoch count."""
    from trainer.config import TrainConfig
    from trainer.retrain import retrain_on_train_and_val

    record = TrialRecord.read(trial)
    config_dict = record.config
    if not config_dict:
        raise UserError(f"trial {trial.number} records no training config; cannot retrain")
    epochs = int(record.best_epoch or config_dict.get("epochs", 1))
    config = TrainConfig.from_dict({**config_dict, "epochs": epochs, "device": str(device)})
    n_images = data.train_y.numel() + data.val_y.numel()
    log(
        f"retraining trial {trial.number} on train+validation ({n_images} images), "
        f"{epochs} epoch(s)"
    )
    done = retrain_on_train_and_val(config, data, log)
    return Weights(
        model=done.model,
        arch=config.arch,
        image_size=int(data.image_size),
        mean=done.mean,
        std=done.std,
        config=config.to_dict(),
        epoch=epochs,
        source="retrain",
        source_text=(
            f"trained again on train+validation ({done.n_images} images) for {epochs} "
            f"epoch(s), the best epoch count of trial {trial.number}"
        ),
    )


# -- stage 2: the evaluation ------------------------------------------------------------


def evaluate(
    weights: Weights,
    data: Data,
    device: torch.device,
    *,
    retrain: bool,
    log: Callable[[str], None],
) -> Evaluation:
    """Probabilities of the held-out test split (the validation split if there is none)."""
    from reports.final import split_sentence
    from trainer.predict import predict_proba

    if data.test_y.numel() > 0:
        split, images, labels, names = "test", data.test_x, data.test_y, data.names.get("test")
    else:
        split, images, labels, names = "validation", data.val_x, data.val_y, data.names.get("val")
    if labels.numel() == 0:
        raise UserError(f"the {split} split of {data.source} is empty; nothing to evaluate")
    names = list(names or [])
    if len(names) != labels.numel():
        names = [f"{split}_{i}" for i in range(labels.numel())]
    notes = []
    if split == "validation":
        notes.append(split_sentence(split, labels.numel()))
        if retrain:
            notes.append(
                "With --retrain the validation images were also TRAINING images of this "
                "model: these validation numbers are a training-set fit, not an evaluation."
            )
    for note in notes:
        log(f"note: {note}")
    proba = predict_proba(weights.model, images, weights.mean, weights.std, device=device)
    return Evaluation(split, tuple(names), images, labels, proba, tuple(notes))


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
) -> RunnerUp:
    """The runner-up's checkpoint on the winner's images, or a note saying why not."""
    from trainer.predict import predict_proba

    selected = selected_trial(study, rival) if rival is not None else None
    if rival is None:
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
            f"({rival.user_attrs.get('checkpoint')!r}): no comparison"
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


# -- stage 3: model.pt and model.onnx ---------------------------------------------------


def write_model(
    out_dir: Path,
    weights: Weights,
    evaluation: Evaluation,
    selected: SelectedTrial,
    *,
    synthetic: bool,
) -> OnnxCheck:
    """Write ``model.pt`` and ``model.onnx``; check ONNX against PyTorch's probabilities."""
    model = weights.model.cpu().eval()
    meta = {
        **_identity(selected, weights),
        "num_classes": len(CLASS_NAMES),
        "in_chans": 1,
        "class_names": list(CLASS_NAMES),
        "config": weights.config,
        "epoch": weights.epoch,
        "synthetic": synthetic,
    }
    save_model(out_dir / MODEL_FILE, model, meta)
    batch = evaluation.images[:ONNX_CHECK_BATCH].numpy()
    path = out_dir / ONNX_FILE
    exporter = export_onnx(model, weights.mean, weights.std, weights.image_size, path)
    diff = np.abs(onnx_probabilities(path, batch) - evaluation.proba[: len(batch)]).max()
    return OnnxCheck(float(diff), len(batch), exporter)


def _identity(selected: SelectedTrial, weights: Weights) -> dict[str, Any]:
    """What both model.pt and metrics.json say about the model."""
    return {
        "arch": weights.arch,
        "image_size": weights.image_size,
        "mean": weights.mean,
        "std": weights.std,
        "params": selected.params,
        "study": selected.study,
        "trial": selected.number,
        "seed": selected.seed,
        "source": weights.source,
    }


# -- stage 4: predictions.csv and metrics.json ------------------------------------------


def write_metrics(
    out_dir: Path,
    evaluation: Evaluation,
    weights: Weights,
    selected: SelectedTrial,
    onnx: OnnxCheck,
    data: Data,
    selection: str = "",
) -> None:
    """Write ``predictions.csv``, then ``metrics.json`` computed from it as read back;
    ``selection`` says how the trial was chosen (confirmed or not)."""
    from reports.final import (
        compute_metrics,
        predictions_frame,
        read_predictions,
        write_predictions,
    )

    frame = predictions_frame(
        list(evaluation.names), evaluation.split, evaluation.labels.numpy(), evaluation.proba
    )
    write_predictions(frame, out_dir / PREDICTIONS_FILE)
    metrics = compute_metrics(read_predictions(out_dir / PREDICTIONS_FILE))
    metrics["notes"] = list(evaluation.notes)
    metrics["selection"] = selection
    metrics["selection_split"] = "validation"
    metrics["onnx"] = dataclasses.asdict(onnx)
    metrics["model"] = {
        **_identity(selected, weights),
        "metric": selected.metric,
        "value": selected.value,
        "source_text": weights.source_text,
        "checkpoint": weights.checkpoint,
        "best_epoch": selected.best_epoch,
        "epochs_run": selected.epochs_run,
        "selection_metrics": selected.selection_metrics,
    }
    metrics["data"] = _data_section(data, selected.data_settings)
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


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
    from hpsearch.confirm import CONFIRM_SUFFIX

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


def _data_section(data: Data, settings: dict[str, Any]) -> dict[str, Any]:
    """metrics.json's ``data``: the recorded split settings and the split sizes."""
    return {
        **{k: settings.get(k) for k in ("image_size", "val_fraction", "test_fraction")},
        "split_seed": settings.get("split_seed"),
        "root": data.source or settings.get("root"),
        "synthetic": bool(data.synthetic or settings.get("synthetic")),
        "split_sizes": {
            "train": int(data.train_y.numel()),
            "validation": int(data.val_y.numel()),
            "test": int(data.test_y.numel()),
        },
    }


def read_evidence(out_dir: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``predictions.csv`` and ``metrics.json`` of an export folder, as written."""
    from reports.final import read_predictions

    frame = read_predictions(out_dir / PREDICTIONS_FILE)
    metrics = json.loads((out_dir / METRICS_FILE).read_text(encoding="utf-8"))
    return frame, metrics


# -- stage 5: report.html, PNGs, MODEL_CARD.md ------------------------------------------


def render(
    out_dir: Path,
    study: optuna.Study,
    frame: pd.DataFrame,
    metrics: dict[str, Any],
    *,
    pngs: bool,
) -> PngResult:
    """Write ``report.html`` (final model, then the search), its PNGs and ``MODEL_CARD.md``."""
    from reports.model_card import render_model_card
    from reports.report import final_sections, report_title, study_sections, write_report

    synthetic = metrics["data"]["synthetic"]
    # Report and card travel with the folder: they name paths relative to it.
    metrics = with_relative_paths(metrics, out_dir)
    sections, figures = final_sections(frame, metrics)
    more, study_figs = study_sections(study, with_relative_paths(_recorded(study), out_dir))
    png = write_report(
        out_dir,
        report_title(study.study_name, synthetic, "Final model and search"),
        [*sections, *more],
        {**figures, **study_figs},
        synthetic=synthetic,
        pngs=pngs,
    )
    card = render_model_card(_card_info(metrics), metrics)
    (out_dir / MODEL_CARD_FILE).write_text(card, encoding="utf-8")
    return png


def with_relative_paths(record: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """A copy of ``record`` (metrics.json's content, or the study's recorded settings) whose
    data root and model checkpoint are relative to ``out_dir``."""
    out = dict(record)
    if (out.get("data") or {}).get("root"):
        out["data"] = {**out["data"], "root": relative_path(out["data"]["root"], out_dir)}
    if (out.get("model") or {}).get("checkpoint"):
        checkpoint = relative_path(out["model"]["checkpoint"], out_dir)
        out["model"] = {**out["model"], "checkpoint": checkpoint}
    return out


def relative_path(path: str | Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (POSIX separators); its name if there is no such path."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).name


def _card_info(metrics: dict[str, Any]) -> dict[str, Any]:
    model, data = metrics["model"], metrics["data"]
    split_use = {
        "train": "training",
        "validation": "choosing the epoch and the trial"
        + (" (and training, with --retrain)" if model["source"] == "retrain" else ""),
        "test": "final evaluation only" if data["split_sizes"]["test"] else "none held out",
    }
    return {
        **model,
        "data": data,
        "split_sizes": data["split_sizes"],
        "split_use": split_use,
        "onnx": metrics.get("onnx"),
    }


def _load(config: DataConfig) -> Data:
    from trainer.data import load_data

    return load_data(config)


def _plain(value: Any) -> Any:
    """Parameter values as plain JSON/pickle-safe Python values."""
    if isinstance(value, np.generic):
        return value.item()
    return value
