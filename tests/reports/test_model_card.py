"""MODEL_CARD.md says what the data were and which split every number is from."""

from __future__ import annotations

import re

import pytest

from reports.final import compute_metrics
from reports.model_card import render_model_card
from tests.reports.test_final import random_frame


def _export(synthetic: bool, test_size: int) -> dict:
    return {
        "study": "demo",
        "trial": 3,
        "arch": "resnet18",
        "image_size": 64,
        "mean": 0.5,
        "std": 0.2,
        "source_text": "best checkpoint of trial 3",
        "params": {"lr": 0.01, "optimizer": "sgd"},
        "best_epoch": 2,
        "epochs_run": 3,
        "data": {
            "root": "/d",
            "synthetic": synthetic,
            "split_seed": 0,
            "val_fraction": 0.1,
            "test_fraction": 0.1 if test_size else 0.0,
        },
        "split_sizes": {"train": 80, "validation": 10, "test": test_size},
        "split_use": {"train": "training"},
        "selection_metrics": {"val_accuracy": 0.7},
        "onnx": {"max_abs_prob_diff": 1e-7, "batch": 8, "exporter": "torchscript"},
    }


@pytest.mark.parametrize("synthetic", [True, False])
@pytest.mark.parametrize("split", ["test", "validation"])
def test_card_names_data_and_split(synthetic: bool, split: str) -> None:
    frame = random_frame(40, 0).assign(split=split)
    metrics = compute_metrics(frame)
    card = render_model_card(_export(synthetic, 40 if split == "test" else 0), metrics)
    head = "\n".join(card.splitlines()[:4])
    assert ("SYNTHETIC demo data" in head) is synthetic
    assert f"## Metrics ({split} split)" in card
    assert f"| accuracy | {metrics['accuracy']:.4g} |" in card
    assert "Not for diagnosis" in card
    assert ("VALIDATION split" in card) is (split == "validation")
    assert "| lr | 0.01 |" in card


def test_card_says_the_onnx_check_in_words() -> None:
    metrics = compute_metrics(random_frame(40, 0))
    card = render_model_card(_export(True, 40), metrics)
    assert (
        "the largest difference in predicted probability between ONNX Runtime and PyTorch: "
        "1.0e-07, over the four class probabilities of 8 test images" in card
    )
    assert "|p_onnx" not in card and "Δp" not in card


def test_card_names_paths_as_given_relative_to_the_export() -> None:
    export = _export(True, 40)
    export["checkpoint"] = "../work/grid/slot-3/best.pt"
    export["data"] = {**export["data"], "root": "../demo-data"}
    card = render_model_card(export, compute_metrics(random_frame(40, 0)))
    assert "from `../work/grid/slot-3/best.pt`" in card
    assert "Source: `../demo-data` (relative to this folder)" in card
    # no absolute path anywhere: nothing of the machine that wrote it
    assert not re.search(r"(^|[\s`(])/\w", card, re.M)


def test_card_shows_the_race_round_by_round_and_the_expected_best() -> None:
    metrics = compute_metrics(random_frame(40, 0))
    assert "How the winner was confirmed" not in render_model_card(_export(True, 40), metrics)
    left = {"trial": 0, "leader": 5, "mean_difference": 0.35, "ci95": [0.3, 0.4], "pairs": 2}
    metrics["confirmation"] = {
        "race": {
            "summary": "race decided after 3 seed(s): search trial 5 wins",
            "rounds": [
                {"seeds": 2, "contenders": [5, 1, 0], "left": [left]},
                {"seeds": 3, "contenders": [5, 1], "left": []},
            ],
        },
        "expected_best": {"trials": 6, "within_one_se_at": 4, "se": 0.02, "se_source": "sd"},
    }
    card = render_model_card(_export(True, 40), metrics)
    assert "## How the winner was confirmed (validation split)" in card
    assert "race decided after 3 seed(s): search trial 5 wins." in card
    assert "| 2 | 5, 1, 0 | trial 0 (leader 5 better by +0.3500, 95 % CI +0.3000..+0.4000" in card
    assert "| 3 | 5, 1 | none |" in card
    assert "4 of the search's 6 trials reach within one standard error (0.0200, sd)" in card
