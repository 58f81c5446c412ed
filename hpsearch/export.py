"""From the best trial of a study to a finished model folder with its evidence.

The folder gets ``model.pt``, ``model.onnx``, ``predictions.csv`` (the evaluated split,
one row per image), ``metrics.json`` (computed from ``predictions.csv`` read back),
``report.html`` with PNG copies of its figures, and ``MODEL_CARD.md``. The evaluated
split is the held-out test split; a study without one is evaluated on its validation
split, and everything says so.

:func:`export_best` runs the stages in order: choose the weights (the trial's checkpoint
or a retrain) -> evaluate them -> write the model files -> write the metrics -> render
the report and the model card. What one stage hands the next is a frozen dataclass.
"""

from __future__ import annotations

import dataclasses
import json
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
from hpsearch.record import ATTR, StudyRecord
from reports.trial_record import TrialRecord
from trainer.classes import CLASS_NAMES
from trainer.data import Data, DataConfig
from trainer.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from reports.png import PngResult

PREDICTIONS_FILE = "predictions.csv"
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
    """``model.onnx`` against PyTorch on the first images of the evaluated split."""

    max_abs_prob_diff: float
    batch: int
    exporter: str


# -- the study record -------------------------------------------------------------------


def _recorded(study: optuna.Study) -> dict[str, Any]:
    """The settings ``hpsearch run`` recorded on the study, as a mapping ({} for none)."""
    record = StudyRecord.read(study)
    return record.to_dict() if record else {}


def best_complete_trial(study: optuna.Study) -> FrozenTrial:
    """The study's best complete trial; a UserError when there is none yet."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        states = sorted({t.state.name.lower() for t in study.get_trials(deepcopy=False)})
        raise UserError(
            f"study {study.study_name!r} has no complete trial yet "
            f"(trial states: {', '.join(states) or 'no trials'})"
        )
    return study.best_trial


def selected_trial(study: optuna.Study, trial: FrozenTrial) -> SelectedTrial:
    """``trial`` of ``study`` with what the study and the trial recorded about it."""
    attrs = _recorded(study)
    record = TrialRecord.read(trial)
    return SelectedTrial(
        study=study.study_name,
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
    trial = best_complete_trial(study)
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
    }


def data_config(study: optuna.Study, workdir: Workdir) -> DataConfig:
    """The study's data settings (as ``hpsearch run`` recorded them), cache in the workdir."""
    record = StudyRecord.read(study)
    if record is None or not record.data.root:
        raise UserError(
            f"study {study.study_name!r} records no data settings "
            f"(user attr {ATTR!r}); was it created by hpsearch run?"
        )
    data = record.data
    return DataConfig(
        root=Path(data.root),
        image_size=data.image_size,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        split_seed=data.split_seed,
        cache_dir=workdir.cache,
    )


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
) -> ExportResult:
    """Write the best trial's final model, its predictions, metrics, report and model card.

    ``data`` defaults to the study's data loaded through the workdir's cache.
    """
    from trainer.training import resolve_device

    trial = best_complete_trial(study)
    selected = selected_trial(study, trial)
    if data is None:
        data = _load(data_config(study, workdir))
    torch_device = resolve_device(device)

    if retrain:
        weights = retrained_weights(trial, data, torch_device, log)
    else:
        weights = checkpoint_weights(trial, study.study_name, workdir, data)
    evaluation = evaluate(weights, data, torch_device, retrain=retrain, log=log)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx = write_model(out_dir, weights, evaluation, selected, synthetic=bool(data.synthetic))
    write_metrics(out_dir, evaluation, weights, selected, onnx, data)
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
        source_text=f"best checkpoint of trial {trial.number} (epoch {meta.get('epoch')}), {ckpt}",
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
) -> None:
    """Write ``predictions.csv``, then ``metrics.json`` computed from it as read back."""
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
    metrics["selection_split"] = "validation"
    metrics["onnx"] = dataclasses.asdict(onnx)
    metrics["model"] = {
        **_identity(selected, weights),
        "metric": selected.metric,
        "value": selected.value,
        "source_text": weights.source_text,
        "best_epoch": selected.best_epoch,
        "epochs_run": selected.epochs_run,
        "selection_metrics": selected.selection_metrics,
    }
    metrics["data"] = _data_section(data, selected.data_settings)
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")


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
    sections, figures = final_sections(frame, metrics)
    more, study_figs = study_sections(study, _recorded(study))
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
