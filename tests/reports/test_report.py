"""The final-model part of report.html: what its summary and per-class table say."""

from __future__ import annotations

from reports.final import compute_metrics
from reports.html import render_page
from reports.per_class import PER_CLASS_COLUMNS
from reports.report import final_sections
from tests.reports.test_final import random_frame


def _page(metrics: dict) -> str:
    frame = random_frame(40, 0)
    sections, _ = final_sections(frame, metrics)
    return render_page("t", sections)


def test_summary_says_the_onnx_check_in_words_and_names_the_checkpoint() -> None:
    metrics = compute_metrics(random_frame(40, 0))
    metrics["onnx"] = {"max_abs_prob_diff": 4.17e-07, "batch": 32, "exporter": "dynamo"}
    metrics["model"] = {"source_text": "best checkpoint of trial 3", "checkpoint": "../c/best.pt"}
    page = _page(metrics)
    assert (
        "largest difference in predicted probability between ONNX Runtime and PyTorch: "
        "4.2e-07, over the four class probabilities of 32 test images" in page
    )
    assert "|Δp|" not in page
    assert "<th>checkpoint (relative to this folder)</th><td>../c/best.pt</td>" in page


def test_per_class_table_has_recall_specificity_and_f1() -> None:
    page = _page(compute_metrics(random_frame(40, 0)))
    table = page.split("Per-class table")[1]
    heads = "".join(f"<th>{c.header}</th>" for c in PER_CLASS_COLUMNS)
    assert heads in table
    assert "<th>recall (sensitivity)</th><th>F1</th><th>specificity</th>" in table
