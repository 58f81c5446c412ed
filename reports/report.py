"""Assembling report.html (and the PNG copies of its figures) from its two parts.

The final-model part renders ``metrics.json`` and ``predictions.csv`` only; the study
part renders what the Optuna storage holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go

from reports.final import final_figures, onnx_sentence, split_sentence
from reports.html import Markup, Section, definition_list, escape, render_page, table
from reports.per_class import PER_CLASS_CAPTION, per_class_frame
from reports.png import PngResult, write_pngs
from reports.study import study_info, trials_table
from reports.study_figures import study_figures

REPORT_FILE = "report.html"
SYNTHETIC_BANNER = (
    "SYNTHETIC demo data — generated images, not radiographs of patients; "
    "no number here says anything about real chest X-rays."
)


def report_title(study_name: str, synthetic: bool, part: str) -> str:
    """Page title; says SYNTHETIC up front when the data are."""
    prefix = "SYNTHETIC demo data — " if synthetic else ""
    return f"{prefix}{part}: study {study_name}"


def final_sections(
    frame: pd.DataFrame, metrics: dict[str, Any]
) -> tuple[list[Section], dict[str, go.Figure]]:
    """The final-model part: summary, confusion matrices, ROC curves, per-class table."""
    split = metrics["split"]
    figures = final_figures(frame, metrics)
    # An export's notes may repeat the split sentence; each is said once.
    said = dict.fromkeys([split_sentence(split, metrics["n"]), *metrics.get("notes", [])])
    notes = [Markup(f'<p class="note">{escape(n)}</p>') for n in said]
    per_class = table(
        per_class_frame(metrics.get("per_class", [])),
        caption=f"{split.capitalize()} split. {PER_CLASS_CAPTION}",
    )
    sections = [
        Section(f"Final model ({split} split)", [*notes, definition_list(_final_summary(metrics))]),
        Section(
            f"Confusion matrix ({split} split)",
            [figures["confusion_counts"], figures["confusion_normalized"]],
        ),
        Section(f"ROC curves ({split} split)", [figures["roc"]]),
        Section(f"Per-class table ({split} split)", [per_class]),
    ]
    return sections, figures


def _final_summary(metrics: dict[str, Any]) -> list[tuple[str, Any]]:
    """The final model's key/value summary: what it is, its data, its headline numbers."""
    split = metrics["split"]
    model = metrics.get("model", {})
    data = metrics.get("data", {})
    auc = metrics["roc_auc"]
    low, high = metrics["accuracy_ci95"]
    summary = [
        ("study", model.get("study")),
        ("trial", model.get("trial")),
        ("weights", model.get("source_text")),
        ("parameters", ", ".join(f"{k}={v}" for k, v in sorted(model.get("params", {}).items()))),
        ("data (relative to this folder)", data.get("root")),
        ("synthetic data", "YES — SYNTHETIC demo data" if data.get("synthetic") else "no"),
        ("split sizes", ", ".join(f"{k} {v}" for k, v in data.get("split_sizes", {}).items())),
        ("evaluated on", f"{split} split, {metrics['n']} images"),
        (
            f"accuracy ({split})",
            f"{metrics['accuracy']:.4f}  (95 % CI {low:.4f}–{high:.4f}, Wilson)",
        ),
        (f"balanced accuracy ({split})", metrics["balanced_accuracy"]),
        (f"macro F1 ({split})", metrics["macro_f1"]),
        (f"ROC AUC macro ({split})", auc["macro"]),
        (f"ROC AUC micro ({split})", auc["micro"]),
    ]
    if model.get("checkpoint"):
        summary.insert(3, ("checkpoint (relative to this folder)", model["checkpoint"]))
    onnx = metrics.get("onnx") or {}
    if onnx.get("max_abs_prob_diff") is not None:
        summary.append(("model.onnx vs model.pt", onnx_sentence(onnx, split)))
    return summary


def study_sections(
    study: optuna.Study, settings: Mapping[str, Any] | None = None
) -> tuple[list[Section], dict[str, go.Figure]]:
    """The study part: ``settings`` (what ``hpsearch run`` recorded) and counts, Optuna's
    figures, the trials table."""
    info = study_info(study, settings)
    data = info["data"]
    figs = study_figures(study, settings)
    summary = [
        ("study", info["study"]),
        ("objective", f"{info['metric']} on the validation split, {info['direction']}"),
        ("sampler", info["sampler"]),
        ("pruner", info["pruner"]),
        ("study file", info["spec_file"]),
        ("data", data.get("root")),
        ("synthetic data", "YES — SYNTHETIC demo data" if info["synthetic"] else "no"),
        ("trials", ", ".join(f"{k.lower()} {v}" for k, v in info["states"].items()) or "none"),
        ("best trial", info["best_trial"]),
        (f"best {info['metric']} (validation)", info["best_value"]),
    ]
    blocks: list[go.Figure | Markup | str] = [definition_list(summary)]
    blocks.extend(figs.figures.values())
    for key, why in figs.skipped.items():
        blocks.append(Markup(f'<p class="skipped">{escape(key)}: skipped, {escape(why)}</p>'))
    trials = trials_table(study)
    sections = [
        Section("Study", blocks),
        Section(
            "Trials",
            [table(trials, caption=f"value = {info['metric']} (validation), at the best epoch")],
        ),
    ]
    return sections, {f"study_{k}": v for k, v in figs.figures.items()}


def write_report(
    out_dir: Path,
    title: str,
    sections: Sequence[Section],
    figures: dict[str, go.Figure],
    *,
    synthetic: bool,
    pngs: bool = True,
) -> PngResult:
    """Write ``report.html`` into ``out_dir`` and each figure as ``<stem>.png`` beside it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render_page(title, sections, banner=SYNTHETIC_BANNER if synthetic else None)
    (out_dir / REPORT_FILE).write_text(page, encoding="utf-8")
    return write_pngs(figures, out_dir) if pngs else PngResult()
