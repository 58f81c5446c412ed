"""Stage 5 of an export: ``report.html`` (the final model, then the search), its PNG
figures and ``MODEL_CARD.md``, all read from the files the earlier stages wrote."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpsearch.export.choose import recorded_settings
from hpsearch.export.files import MODEL_CARD_FILE
from hpsearch.study.ranking import confirmed_seed_sd

if TYPE_CHECKING:
    import pandas as pd

    from reports.png import PngResult


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
    settings = with_relative_paths(recorded_settings(study), out_dir)
    more, study_figs = study_sections(study, settings, confirmed_seed_sd(study))
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
