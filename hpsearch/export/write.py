"""Stage 4 of an export: ``model.pt`` and ``model.onnx`` (checked against each other),
``predictions.csv``, and ``metrics.json`` computed from the predictions as read back."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpsearch.export.choose import SelectedTrial
from hpsearch.export.evaluate import Evaluation
from hpsearch.export.files import (
    METRICS_FILE,
    MODEL_FILE,
    ONNX_CHECK_BATCH,
    ONNX_FILE,
    PREDICTIONS_FILE,
)
from hpsearch.export.model_file import export_onnx, onnx_probabilities, save_model
from hpsearch.export.weights import Weights
from trainer.classes import CLASS_NAMES
from trainer.data import Data

if TYPE_CHECKING:
    import optuna
    import pandas as pd


@dataclass(frozen=True)
class OnnxCheck:
    """``model.onnx`` against PyTorch on the first ``batch`` images of the evaluated split:
    the largest difference in a predicted probability, and the torch.onnx exporter used."""

    max_abs_prob_diff: float
    batch: int
    exporter: str


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


def write_metrics(
    out_dir: Path,
    evaluation: Evaluation,
    weights: Weights,
    selected: SelectedTrial,
    onnx: OnnxCheck,
    data: Data,
    selection: str = "",
    confirmation: dict[str, Any] | None = None,
    constraints: list[dict[str, Any]] | None = None,
) -> None:
    """Write ``predictions.csv``, then ``metrics.json`` computed from it as read back;
    ``selection`` says how the trial was chosen (confirmed or not), ``confirmation``
    holds the race and the expected-best read-out (:func:`confirmation`), ``constraints``
    the study's constraints checked on the evaluated split."""
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
    metrics["confirmation"] = confirmation or {}
    metrics["constraints"] = constraints or []
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


def confirmation(study: optuna.Study) -> dict[str, Any]:
    """What the export records of the search's confirmation and of the search itself:
    the race (its rounds and who left on what evidence; None for a fixed confirmation or
    none) and the expected-best read-out (how many trials reach within one standard
    error of the best, and that standard error)."""
    from hpsearch.study.race import stored_race
    from hpsearch.study.ranking import confirmed_ranking
    from hpsearch.study.summary import expected_best_summary

    curve = expected_best_summary(study, confirmed_ranking(study))
    readout = None
    if curve is not None:
        keys = ("within_one_se_at", "se", "se_source")
        readout = {"trials": curve["n"][-1], **{k: curve[k] for k in keys}}
    return {"race": stored_race(study), "expected_best": readout}
