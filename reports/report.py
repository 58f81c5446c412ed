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

from hpsearch.trials.constraints import format_checks
from reports.final import (
    comparison_rows,
    final_figures,
    interval_rows,
    onnx_sentence,
    per_class_interval_table,
    selection_rows,
    selection_sentence,
    split_sentence,
)
from reports.html import (
    Markup,
    Section,
    definition_list,
    escape,
    format_value,
    render_page,
    table,
)
from reports.per_class import PER_CLASS_CAPTION, per_class_frame
from reports.png import PngResult, write_pngs
from reports.study import study_info, trials_table, unused_note
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
    selection = [metrics["selection"]] if metrics.get("selection") else []
    said = dict.fromkeys(
        [split_sentence(split, metrics["n"]), *selection, *metrics.get("notes", [])]
    )
    notes = [Markup(f'<p class="note">{escape(n)}</p>') for n in said]
    per_class = table(
        per_class_frame(metrics.get("per_class", [])),
        caption=f"{split.capitalize()} split. {PER_CLASS_CAPTION}",
    )
    sections = [
        Section(f"Final model ({split} split)", [*notes, definition_list(_final_summary(metrics))]),
        *uncertainty_sections(metrics),
        Section(
            f"Confusion matrix ({split} split)",
            [figures["confusion_counts"], figures["confusion_normalized"]],
        ),
        Section(f"ROC curves ({split} split)", [figures["roc"]]),
        Section(f"Per-class table ({split} split)", [per_class, *_per_class_intervals(metrics)]),
    ]
    return sections, figures


def uncertainty_sections(metrics: dict[str, Any]) -> list[Section]:
    """Intervals of the final numbers, validation against test, winner against runner-up."""
    split = metrics["split"]
    sections = []
    rows = interval_rows(metrics)
    if rows:
        ci = metrics["ci95"]
        caption = (
            f"95 % intervals, {split} split: accuracy by the Wilson score interval, the rest "
            f"by a percentile bootstrap over the {metrics['n']} images ({ci['n_resamples']} "
            f"resamples, seed {ci['seed']}); a resample without an image of a class leaves "
            "that class's AUC undefined and is not used for it (usable resamples)"
        )
        sections.append(
            Section(f"Uncertainty ({split} split)", [table(pd.DataFrame(rows), caption=caption)])
        )
    selection = selection_rows(metrics)
    if selection:
        blocks: list[go.Figure | Markup | str] = []
        sentence = selection_sentence(metrics)
        if sentence:
            blocks.append(Markup(f'<p class="note">{escape(sentence)}</p>'))
        caption = "The winner's best-epoch validation numbers (recorded by the search) and test"
        blocks.append(table(pd.DataFrame(selection), caption=caption))
        sections.append(Section("Validation against test (what selection added)", blocks))
    if "comparison" in metrics:
        sections.append(Section("Winner against runner-up", _comparison_blocks(metrics)))
    checks = metrics.get("constraints") or []
    if checks:
        lines: list[go.Figure | Markup | str] = [
            Markup(f"<p>{escape(line)}</p>") for line in format_checks(checks)
        ]
        sections.append(Section(f"Constraints ({split} split)", lines))
    return sections


def _per_class_intervals(metrics: dict[str, Any]) -> list[Markup]:
    """The per-class ratios with their bootstrap intervals, as a second table."""
    intervals = per_class_interval_table(metrics)
    if intervals.empty:
        return []
    caption = (
        f"The ratios above with their 95 % intervals, {metrics['split']} split: "
        "value [low, high], percentile bootstrap over the images"
    )
    return [table(intervals, caption=caption)]


def _trial_name(identity: dict[str, Any]) -> str:
    """``trial N of STUDY`` (``trial N`` when the study is not recorded)."""
    study = identity.get("study")
    return f"trial {identity.get('trial')}" + (f" of {study}" if study else "")


def _comparison_blocks(metrics: dict[str, Any]) -> list[go.Figure | Markup | str]:
    """The paired comparison's table, or the sentence that says why there is none."""
    comparison = metrics["comparison"]
    model, rival = metrics.get("model", {}), comparison.get("runner_up") or {}
    if comparison.get("note"):
        return [Markup(f'<p class="note">No comparison: {escape(comparison["note"])}.</p>')]
    params = ", ".join(f"{k}={v}" for k, v in sorted(rival.get("params", {}).items()))
    chosen_as = rival.get("chosen_as", "the best trial of another configuration")
    intro = (
        f"Winner: {_trial_name(model)} ({model.get('metric')} "
        f"{format_value(model.get('value'))} on validation). Runner-up: "
        f"{_trial_name(rival)} ({rival.get('metric')} {format_value(rival.get('value'))}; "
        f"{params}), {chosen_as}, from its {rival.get('weights')}. Both on the same "
        f"{comparison['n']} {comparison['split']} images; difference = winner − runner-up."
    )
    caption = (
        f"Paired comparison, {comparison['split']} split ({comparison['n_resamples']} "
        f"bootstrap resamples, seed {comparison['seed']})"
    )
    return [intro, table(pd.DataFrame(comparison_rows(metrics)), caption=caption)]


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
    study: optuna.Study, settings: Mapping[str, Any] | None = None, seed_sd: float | None = None
) -> tuple[list[Section], dict[str, go.Figure]]:
    """The study part: ``settings`` (what ``hpsearch run`` recorded) and counts, Optuna's
    figures and ours, the trials table. ``seed_sd``: the run-to-run spread measured by a
    confirmation, for the expected-best read-out."""
    info = study_info(study, settings)
    data = info["data"]
    figs = study_figures(study, settings, seed_sd)
    objective = f"{info['metric']} on the validation split, {info['direction']}"
    objectives = list((settings or {}).get("objectives") or [])
    if len(objectives) > 1:
        pairs = zip(objectives, info["direction"].split(", "), strict=False)
        objective = ", ".join(f"{n} ({d})" for n, d in pairs) + ": a Pareto front, unpruned"
    summary = [
        ("study", info["study"]),
        ("objective", objective),
        ("sampler", info["sampler"]),
        ("pruner", info["pruner"]),
        ("study file", info["spec_file"]),
        ("data", data.get("root")),
        ("synthetic data", "YES — SYNTHETIC demo data" if info["synthetic"] else "no"),
        ("trials", ", ".join(f"{k.lower()} {v}" for k, v in info["states"].items()) or "none"),
        ("best trial", info["best_trial"]),
        (f"best {info['metric']} (validation)", info["best_value"]),
    ]
    if info.get("copied"):
        copied = (
            f"{info['copied']} copied from another study (--from-study): prior knowledge for "
            "the sampler, left out of the counts, the best trial and the figures"
        )
        summary.insert(-2, ("copied trials", copied))
    blocks: list[go.Figure | Markup | str] = [definition_list(summary)]
    blocks.extend(figs.figures.values())
    for key, why in figs.skipped.items():
        blocks.append(Markup(f'<p class="skipped">{escape(key)}: skipped, {escape(why)}</p>'))
    trials = trials_table(study)
    caption = f"value = {info['metric']} (validation), at the best epoch"
    note = unused_note(study)
    sections = [
        Section("Study", blocks),
        Section("Trials", [table(trials, caption=f"{caption}. {note}" if note else caption)]),
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
