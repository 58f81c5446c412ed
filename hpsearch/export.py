"""From the best trial of a study to a finished model folder with its evidence.

The folder gets ``model.pt``, ``model.onnx``, ``predictions.csv`` (the evaluated split,
one row per image), ``metrics.json`` (computed from ``predictions.csv`` read back),
``report.html`` with PNG copies of its figures, and ``MODEL_CARD.md``. The evaluated
split is the held-out test split; a study without one is evaluated on its validation
split, and everything says so.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from hpsearch.model_file import (
    MODEL_FILE,
    ONNX_FILE,
    export_onnx,
    onnx_probabilities,
    save_model,
    strip_prefixes,
)
from hpsearch.paths import Workdir
from hpsearch.record import ATTR
from trainer.classes import CLASS_NAMES
from trainer.data import Data, DataConfig
from trainer.errors import UserError

PREDICTIONS_FILE = "predictions.csv"
METRICS_FILE = "metrics.json"
MODEL_CARD_FILE = "MODEL_CARD.md"
#: Images of the evaluated split run through both PyTorch and ONNX Runtime.
ONNX_CHECK_BATCH = 32


@dataclass
class ExportResult:
    """What ``export_best`` wrote and measured."""

    out_dir: Path
    metrics: dict[str, Any]
    png_message: str | None = None
    files: list[Path] = field(default_factory=list)


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


def checkpoint_path(trial: FrozenTrial, study_name: str, workdir: Workdir) -> Path | None:
    """The trial's ``best.pt``: as recorded, or in ``workdir`` if the workdir has moved."""
    recorded = trial.user_attrs.get("checkpoint")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    slot = trial.user_attrs.get("slot")
    if slot is not None:
        try:
            candidate = workdir.trial_dir(study_name, int(slot)) / "best.pt"
        except UserError:
            return None
        if candidate.is_file():
            return candidate
    return None


def validation_metrics(trial: FrozenTrial) -> dict[str, float | None]:
    """The best epoch's validation metrics recorded on the trial (``val_*`` user attrs)."""
    return {k: v for k, v in sorted(trial.user_attrs.items()) if k.startswith("val_")}


def best_summary(study: optuna.Study, workdir: Workdir) -> dict[str, Any]:
    """The best trial as JSON-able data: parameters, validation metrics, checkpoint."""
    trial = best_complete_trial(study)
    attrs = study.user_attrs.get(ATTR, {}) or {}
    ckpt = checkpoint_path(trial, study.study_name, workdir)
    return {
        "study": study.study_name,
        "metric": attrs.get("metric"),
        "direction": study.direction.name.lower(),
        "synthetic": bool((attrs.get("data") or {}).get("synthetic", False)),
        "trial": trial.number,
        "value": trial.value,
        "params": trial.params,
        "best_epoch": trial.user_attrs.get("best_epoch"),
        "epochs_run": trial.user_attrs.get("epochs_run"),
        "validation_metrics": validation_metrics(trial),
        "checkpoint": str(ckpt) if ckpt else trial.user_attrs.get("checkpoint"),
        "checkpoint_exists": ckpt is not None,
    }


def data_config(study: optuna.Study, workdir: Workdir) -> DataConfig:
    """The study's data settings (as ``hpsearch run`` recorded them), cache in the workdir."""
    attrs = study.user_attrs.get(ATTR) or {}
    data = attrs.get("data")
    if not data or "root" not in data:
        raise UserError(
            f"study {study.study_name!r} records no data settings "
            f"(user attr {ATTR!r}); was it created by hpsearch run?"
        )
    return DataConfig(
        root=Path(data["root"]),
        image_size=int(data["image_size"]),
        val_fraction=float(data["val_fraction"]),
        test_fraction=float(data.get("test_fraction", 0.0)),
        split_seed=int(data.get("split_seed", 0)),
        cache_dir=workdir.cache,
    )


def _pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and standard deviation of uint8 pixels in [0, 1], from a histogram."""
    counts = torch.zeros(256, dtype=torch.float64)
    flat = images.reshape(-1)
    for start in range(0, flat.numel(), 1 << 24):
        counts += torch.bincount(flat[start : start + (1 << 24)].long(), minlength=256)
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    mean = float((counts * levels).sum() / counts.sum())
    var = float((counts * (levels - mean) ** 2).sum() / counts.sum())
    return mean, math.sqrt(max(var, 0.0))


def retrain_on_train_and_val(
    trial: FrozenTrial, data: Data, device: str, log: Callable[[str], None]
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train the trial's configuration again on train + validation for its best epoch count.

    The weights of the last epoch are kept: the validation images are now training
    images and cannot pick an epoch.
    """
    from trainer.config import TrainConfig
    from trainer.fit import fit
    from trainer.model import build_model

    config_dict = trial.user_attrs.get("config")
    if not config_dict:
        raise UserError(f"trial {trial.number} records no training config; cannot retrain")
    epochs = int(trial.user_attrs.get("best_epoch") or config_dict.get("epochs", 1))
    config = TrainConfig.from_dict({**config_dict, "epochs": epochs, "device": device})
    train_x = torch.cat([data.train_x, data.val_x])
    train_y = torch.cat([data.train_y, data.val_y])
    mean, std = _pixel_stats(train_x)
    merged = dataclasses.replace(data, train_x=train_x, train_y=train_y, mean=mean, std=std)
    log(
        f"retraining trial {trial.number} on train+validation ({len(train_y)} images), "
        f"{epochs} epoch(s)"
    )
    with tempfile.TemporaryDirectory(prefix="hpsearch-retrain-") as tmp:
        result = fit(config, merged, None, checkpoint_dir=Path(tmp), resume=False, log=log)
        state = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    model = build_model(config.arch, num_classes=len(CLASS_NAMES), in_chans=1)
    model.load_state_dict(strip_prefixes(state["model"]))
    meta = {
        "arch": config.arch,
        "image_size": int(data.image_size),
        "mean": mean,
        "std": std,
        "config": config.to_dict(),
        "epoch": epochs,
    }
    return model.eval(), meta


def _evaluated_split(
    data: Data, retrain: bool
) -> tuple[str, torch.Tensor, torch.Tensor, list[str], list[str]]:
    """(split name, images, labels, file names, notes) of the split the export is judged on."""
    if data.test_y.numel() > 0:
        return "test", data.test_x, data.test_y, list(data.names.get("test", [])), []
    notes = [
        "The study holds out no test split (test_fraction 0): the numbers come from the "
        "VALIDATION split, the split the best trial was selected on, and are optimistic."
    ]
    if retrain:
        notes.append(
            "With --retrain the validation images were also TRAINING images of this model: "
            "these validation numbers are a training-set fit, not an evaluation."
        )
    return "validation", data.val_x, data.val_y, list(data.names.get("val", [])), notes


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
    from reports.final import (
        compute_metrics,
        predictions_frame,
        read_predictions,
        write_predictions,
    )
    from reports.model_card import render_model_card
    from reports.report import final_sections, report_title, study_sections, write_report
    from trainer.fit import resolve_device
    from trainer.predict import load_model, predict_proba

    trial = best_complete_trial(study)
    attrs = study.user_attrs.get(ATTR) or {}
    data_attrs = dict(attrs.get("data") or {})
    if data is None:
        data = _load(data_config(study, workdir))
    torch_device = resolve_device(device)

    if retrain:
        model, meta = retrain_on_train_and_val(trial, data, str(torch_device), log)
        source = "retrain"
        source_text = (
            f"trained again on train+validation ({data.train_y.numel() + data.val_y.numel()} "
            f"images) for {meta['epoch']} epoch(s), the best epoch count of trial {trial.number}"
        )
    else:
        ckpt = checkpoint_path(trial, study.study_name, workdir)
        if ckpt is None:
            raise UserError(
                f"checkpoint of trial {trial.number} not found "
                f"({trial.user_attrs.get('checkpoint')!r}); pass --retrain to train it again"
            )
        model, meta = load_model(ckpt)
        source = "checkpoint"
        source_text = f"best checkpoint of trial {trial.number} (epoch {meta.get('epoch')}), {ckpt}"
    if int(meta.get("image_size", data.image_size)) != data.image_size:
        raise UserError(
            f"model image size {meta.get('image_size')} differs from the data's {data.image_size}"
        )
    mean, std = float(meta["mean"]), float(meta["std"])

    split, images, labels, names, notes = _evaluated_split(data, retrain)
    if labels.numel() == 0:
        raise UserError(f"the {split} split of {data.source} is empty; nothing to evaluate")
    if len(names) != labels.numel():
        names = [f"{split}_{i}" for i in range(labels.numel())]
    for note in notes:
        log(f"note: {note}")
    proba = predict_proba(model, images, mean, std, batch_size=256, device=torch_device)
    model = model.cpu().eval()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame = predictions_frame(names, split, labels.numpy(), proba)
    write_predictions(frame, out_dir / PREDICTIONS_FILE)
    frame = read_predictions(out_dir / PREDICTIONS_FILE)

    params = {k: _plain(v) for k, v in trial.params.items()}
    image_size = int(data.image_size)
    model_meta = {
        "arch": meta["arch"],
        "num_classes": len(CLASS_NAMES),
        "in_chans": 1,
        "class_names": list(CLASS_NAMES),
        "image_size": image_size,
        "mean": mean,
        "std": std,
        "params": params,
        "config": meta.get("config"),
        "epoch": meta.get("epoch"),
        "study": study.study_name,
        "trial": trial.number,
        "source": source,
        "synthetic": bool(data.synthetic),
    }
    save_model(out_dir / MODEL_FILE, model, model_meta)

    batch = images[:ONNX_CHECK_BATCH].numpy()
    exporter = export_onnx(model, mean, std, image_size, out_dir / ONNX_FILE)
    onnx_p = onnx_probabilities(out_dir / ONNX_FILE, batch)
    diff = float(np.abs(onnx_p - proba[: len(batch)]).max())

    metrics = compute_metrics(frame)
    metrics["notes"] = notes
    metrics["selection_split"] = "validation"
    metrics["onnx"] = {"max_abs_prob_diff": diff, "batch": len(batch), "exporter": exporter}
    metrics["model"] = {
        "study": study.study_name,
        "trial": trial.number,
        "metric": attrs.get("metric"),
        "value": trial.value,
        "params": params,
        "arch": meta["arch"],
        "image_size": image_size,
        "mean": mean,
        "std": std,
        "source": source,
        "source_text": source_text,
        "best_epoch": trial.user_attrs.get("best_epoch"),
        "epochs_run": trial.user_attrs.get("epochs_run"),
        "selection_metrics": validation_metrics(trial),
    }
    metrics["data"] = {
        **{k: data_attrs.get(k) for k in ("image_size", "val_fraction", "test_fraction")},
        "split_seed": data_attrs.get("split_seed"),
        "root": data.source or data_attrs.get("root"),
        "synthetic": bool(data.synthetic or data_attrs.get("synthetic")),
        "split_sizes": {
            "train": int(data.train_y.numel()),
            "validation": int(data.val_y.numel()),
            "test": int(data.test_y.numel()),
        },
    }
    (out_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")

    # The report and the card read the files just written, nothing else.
    metrics = json.loads((out_dir / METRICS_FILE).read_text(encoding="utf-8"))
    synthetic = metrics["data"]["synthetic"]
    sections, figures = final_sections(frame, metrics)
    more, study_figs = study_sections(study)
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
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    return ExportResult(out_dir, metrics, png.message(), files)


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
