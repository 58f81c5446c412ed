"""MODEL_CARD.md: what the model is, what it was trained and measured on, and its limits."""

from __future__ import annotations

from typing import Any

from hpsearch.trials.constraints import format_checks
from reports import final
from reports.html import format_value
from reports.per_class import PER_CLASS_CAPTION, per_class_frame

SYNTHETIC_WARNING = (
    "**SYNTHETIC demo data.** This model was trained and evaluated on generated images, "
    "not on chest radiographs of patients. Its numbers say nothing about real X-rays."
)


def _cell(value: Any) -> str:
    return format_value(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_model_card(export: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The model card as Markdown.

    ``export`` describes the model (study, trial, params, source, checkpoint, data, split
    sizes, ONNX check); ``metrics`` is the content of ``metrics.json``. Paths are written
    as given: pass them relative to the export folder, so the card names no folder of
    the machine that wrote it.
    """
    lines: list[str] = [f"# Model card: {export['study']} / trial {export['trial']}", ""]
    if export["data"].get("synthetic"):
        lines += [f"> {SYNTHETIC_WARNING}", ""]
    lines += _model_lines(export, metrics)
    lines += _data_lines(export)
    lines += _metric_lines(export, metrics)
    lines += _uncertainty_lines(metrics)
    lines += _confirmation_lines(metrics)
    lines += _constraint_lines(metrics)
    lines += _use_and_limit_lines(export, metrics)
    return "\n".join(lines)


def _model_lines(export: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    size = f"{export['image_size']}×{export['image_size']}"
    return [
        "## Model",
        "",
        f"- Architecture: torchvision `{export['arch']}`, one input channel "
        f"({size} grayscale), 4-way output.",
        "- Classes (index: name, competition order): "
        + ", ".join(f"{i}: {n}" for i, n in enumerate(metrics["class_names"]))
        + ".",
        f"- Input normalization: pixel/255, then (x − {export['mean']:.4f}) / {export['std']:.4f}.",
        *([f"- Selection: {metrics['selection']}."] if metrics.get("selection") else []),
        f"- Weights: {export['source_text']}"
        + (f", from `{export['checkpoint']}`." if export.get("checkpoint") else "."),
        f"- Files: `model.pt` (state_dict and metadata; `torch.load(..., weights_only=True)`), "
        f"`model.onnx` (input `pixels`: float32 pixel values 0–255, shape N×1×"
        f"{size}; output `probabilities`: the four "
        "class probabilities; normalization and softmax are inside).",
        "",
    ]


def _data_lines(export: dict[str, Any]) -> list[str]:
    data = export["data"]
    return [
        "## Data",
        "",
        f"- Source: `{data.get('root')}` (relative to this folder)"
        + (" — **SYNTHETIC demo data** (generated images)." if data.get("synthetic") else "."),
        f"- Split: stratified, seed {data.get('split_seed')}, validation fraction "
        f"{data.get('val_fraction')}, test fraction {data.get('test_fraction')}.",
        "",
        _table(
            ["split", "images", "used for"],
            [[k, v, export["split_use"].get(k, "")] for k, v in export["split_sizes"].items()],
        ),
        "",
        "## Parameters",
        "",
        _table(["parameter", "value"], [[k, v] for k, v in sorted(export["params"].items())]),
        "",
        f"Best epoch: {export.get('best_epoch')} of {export.get('epochs_run')} run.",
        "",
    ]


def _metric_lines(export: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    split = metrics["split"]
    lines = [f"## Metrics ({split} split)", "", final.split_sentence(split, metrics["n"]), ""]
    low, high = metrics["accuracy_ci95"]
    auc = metrics["roc_auc"]
    rows = [
        ["accuracy", metrics["accuracy"], f"95 % CI {low:.4f}–{high:.4f} (Wilson)"],
        ["balanced accuracy", metrics["balanced_accuracy"], ""],
        ["macro F1", metrics["macro_f1"], ""],
        ["ROC AUC, macro (mean of classes)", auc["macro"], ""],
        ["ROC AUC, micro", auc["micro"], ""],
    ]
    rows += [[f"ROC AUC, {name}", v, "one vs rest"] for name, v in auc["per_class"].items()]
    lines += [_table([f"metric ({split})", "value", "note"], rows), ""]
    if metrics.get("per_class"):
        frame = per_class_frame(metrics["per_class"])
        lines += [
            f"Per class ({split} split). {PER_CLASS_CAPTION}",
            "",
            _table(list(frame.columns), frame.values.tolist()),
            "",
        ]
    selection = export.get("selection_metrics") or {}
    if selection:
        lines += [
            "Recorded by the search for the best epoch of this trial (validation split, "
            "the split it was selected on):",
            "",
            _table(["metric (validation)", "value"], [[k, v] for k, v in selection.items()]),
            "",
        ]
    onnx = export.get("onnx") or {}
    if onnx.get("max_abs_prob_diff") is not None:
        lines += [
            f"ONNX check ({onnx['exporter']} exporter): the {final.onnx_sentence(onnx, split)}.",
            "",
        ]
    return lines


def _frame_table(rows: list[dict[str, Any]]) -> str:
    header = list(rows[0].keys())
    return _table(header, [[row.get(k) for k in header] for row in rows])


def _uncertainty_lines(metrics: dict[str, Any]) -> list[str]:
    """Intervals, validation against test, and winner against runner-up."""
    split = metrics["split"]
    rows = final.interval_rows(metrics)
    if not rows:
        return []
    ci = metrics["ci95"]
    lines = [
        f"## Uncertainty ({split} split)",
        "",
        f"95 % intervals: accuracy by the Wilson score interval, the rest by a percentile "
        f"bootstrap over the {metrics['n']} {split} images ({ci['n_resamples']} resamples, "
        f"seed {ci['seed']}; a resample lacking a class cannot give that class's AUC, hence "
        "the usable count).",
        "",
        _frame_table(rows),
        "",
    ]
    per_class = final.per_class_interval_table(metrics)
    if not per_class.empty:
        lines += [f"Per-class ratios, value [95 % interval] ({split} split):", ""]
        lines += [_frame_table(per_class.to_dict("records")), ""]
    selection = final.selection_rows(metrics)
    if selection:
        sentence = final.selection_sentence(metrics)
        lines += ["### Validation against test (what selection added)", ""]
        lines += [sentence, ""] if sentence else []
        lines += [_frame_table(selection), ""]
    return lines + _comparison_lines(metrics)


def _comparison_lines(metrics: dict[str, Any]) -> list[str]:
    comparison = metrics.get("comparison")
    if comparison is None:
        return []
    lines = ["### Winner against runner-up", ""]
    if comparison.get("note"):
        return [*lines, f"No comparison: {comparison['note']}.", ""]
    rival = comparison.get("runner_up") or {}
    name = f"trial {rival.get('trial')}" + (f" of {rival['study']}" if rival.get("study") else "")
    chosen_as = rival.get("chosen_as", "the best trial of another configuration")
    lines += [
        f"Runner-up: {name} ({rival.get('metric')} {_cell(rival.get('value'))} on "
        f"validation), {chosen_as}. Both models on the same {comparison['n']} "
        f"{comparison['split']} images; difference = winner − runner-up.",
        "",
        _frame_table(final.comparison_rows(metrics)),
        "",
    ]
    return lines


def _constraint_lines(metrics: dict[str, Any]) -> list[str]:
    """The study's constraints (chosen on validation) checked again on the evaluated split."""
    checks = metrics.get("constraints") or []
    if not checks:
        return []
    head = (
        "The search took the best trial that kept every constraint on the validation "
        f"split; here each is measured again on the {metrics['split']} split."
    )
    return ["## Constraints", "", head, "", *(f"- {line}" for line in format_checks(checks)), ""]


def _confirmation_lines(metrics: dict[str, Any]) -> list[str]:
    """The confirmation race round by round, and how far the search itself got."""
    confirmation = metrics.get("confirmation") or {}
    race, curve = confirmation.get("race"), confirmation.get("expected_best")
    if not race and not (curve and curve.get("within_one_se_at")):
        return []
    lines = ["## How the winner was confirmed (validation split)", ""]
    if race:
        lines += [f"{race['summary']}.", ""]
        rows = [
            [
                r["seeds"],
                ", ".join(map(str, r["contenders"])),
                "; ".join(
                    f"trial {d['trial']} (leader {d['leader']} better by "
                    f"{d['mean_difference']:+.4f}, 95 % CI {d['ci95'][0]:+.4f}.."
                    f"{d['ci95'][1]:+.4f}, {d['pairs']} pairs)"
                    for d in r["left"]
                )
                or "none",
            ]
            for r in race["rounds"]
        ]
        lines += [_table(["seeds", "in the race (search trials)", "left"], rows), ""]
    if curve and curve.get("within_one_se_at"):
        lines += [
            f"Expected best of n trials: {curve['within_one_se_at']} of the search's "
            f"{curve['trials']} trials reach within one standard error ({curve['se']:.4f}, "
            f"{curve['se_source']}) of its best.",
            "",
        ]
    return lines


def _use_and_limit_lines(export: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    lines = [
        "## Intended use",
        "",
        "Research and education: comparing training settings and search strategies for "
        "chest X-ray classifiers. **Not for diagnosis** or any clinical decision.",
        "",
        "## Limitations",
        "",
    ]
    if export["data"].get("synthetic"):
        lines.append(
            "- Trained on SYNTHETIC images: it has never seen a real radiograph and must "
            "not be applied to one."
        )
    if metrics["split"] != "test":
        lines.append(
            "- No held-out test split: the reported numbers are on the validation split "
            "that chose the trial, so they overestimate performance on new images."
        )
    lines += [
        "- One dataset, one random split: no external validation across hospitals, "
        "scanners or populations; dataset biases (source, age, labelling) carry over.",
        "- Four classes only; an image of anything else still gets one of the four labels.",
        f"- Images are reduced to {export['image_size']}×{export['image_size']} grayscale; "
        "fine detail is lost.",
        "- Probabilities are not calibrated beyond what the training gave.",
        "",
    ]
    return lines
