"""``export_best``: model.pt, ONNX, predictions, metrics and report from the best trial."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
import torchvision
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, roc_auc_score

from hpsearch.export import best_summary
from hpsearch.export.choose import choose_winner_and_runner_up
from hpsearch.export.pipeline import export_best
from hpsearch.export.render import relative_path
from hpsearch.paths import Workdir
from hpsearch.trials.record import TrialRecord
from tests.reports.factory import Search, build_search
from trainer.classes import CLASS_NAMES
from trainer.errors import UserError

P_COLUMNS = [f"p_{c}" for c in CLASS_NAMES]
#: Bootstrap resamples in these tests (an export's default is 1000): the code path is the same.
RESAMPLES = 30


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> Search:
    torch.set_num_threads(1)
    return build_search(tmp_path_factory.mktemp("search"))


@pytest.fixture(scope="module")
def exported(search: Search, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    result = export_best(
        search.study,
        out,
        Workdir(search.workdir),
        device="cpu",
        pngs=False,
        log=lambda _m: None,
        n_resamples=RESAMPLES,
    )
    return out, result


def plain_resnet18(path) -> tuple[torch.nn.Module, dict]:
    """model.pt into torchvision's ResNet-18 with a 1-channel conv1 and a 4-way fc."""
    saved = torch.load(path, weights_only=True)
    model = torchvision.models.resnet18(num_classes=4)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.load_state_dict(saved["state_dict"])  # strict: every key must match
    return model.eval(), saved


def test_summary_names_the_best_trial(search: Search) -> None:
    summary = best_summary(search.study, Workdir(search.workdir))
    assert summary["trial"] == search.study.best_trial.number
    assert summary["checkpoint"] == str(search.checkpoint) and summary["checkpoint_exists"]
    assert summary["validation_metrics"]["val_accuracy"] == search.study.best_value
    assert summary["synthetic"] is True


def test_folder_contents(exported) -> None:
    out, result = exported
    names = {p.name for p in out.iterdir()}
    expected = {"model.pt", "model.onnx", "metrics.json", "predictions.csv", "report.html"}
    assert expected | {"MODEL_CARD.md"} <= names
    assert result.metrics["split"] == "test"


def test_metrics_json_is_recomputable_from_predictions_csv(exported) -> None:
    out, _ = exported
    metrics = json.loads((out / "metrics.json").read_text())
    frame = pd.read_csv(out / "predictions.csv")
    y = frame["true_index"].to_numpy()
    proba = frame[P_COLUMNS].to_numpy()
    pred = frame["pred_index"].to_numpy()
    assert (pred == proba.argmax(axis=1)).all()
    assert metrics["confusion"]["counts"] == confusion_matrix(y, pred, labels=range(4)).tolist()
    assert metrics["accuracy"] == pytest.approx((y == pred).mean())
    for k, name in enumerate(CLASS_NAMES):
        assert metrics["roc_auc"]["per_class"][name] == pytest.approx(
            roc_auc_score(y == k, proba[:, k])
        )
    assert metrics["roc_auc"]["macro"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    assert metrics["roc_auc"]["micro"] == pytest.approx(
        roc_auc_score(np.eye(4)[y], proba, average="micro")
    )
    assert set(frame["split"]) == {"test"}
    assert list(frame["true_label"]) == [CLASS_NAMES[i] for i in y]


def test_model_pt_in_plain_torchvision_gives_reported_accuracy(exported, search) -> None:
    out, _ = exported
    model, saved = plain_resnet18(out / "model.pt")
    assert saved["class_names"] == list(CLASS_NAMES)
    assert saved["image_size"] == search.data.image_size
    assert saved["params"] == search.study.best_trial.params
    x = search.data.test_x.float() / 255.0
    with torch.no_grad():
        logits = model((x - saved["mean"]) / saved["std"])
    pred = logits.argmax(dim=1).numpy()
    accuracy = float((pred == search.data.test_y.numpy()).mean())
    metrics = json.loads((out / "metrics.json").read_text())
    assert accuracy == pytest.approx(metrics["accuracy"])
    frame = pd.read_csv(out / "predictions.csv")
    assert list(frame["name"]) == search.data.names["test"]
    assert (frame["pred_index"].to_numpy() == pred).all()


def test_onnx_agrees_with_pytorch(exported, search) -> None:
    out, _ = exported
    model, saved = plain_resnet18(out / "model.pt")
    pixels = search.data.test_x[:16]
    with torch.no_grad():
        expected = torch.softmax(model((pixels / 255.0 - saved["mean"]) / saved["std"]), 1)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"pixels": pixels.numpy().astype(np.float32)})
    assert got.shape == (16, 4)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-4)
    recorded = json.loads((out / "metrics.json").read_text())["onnx"]["max_abs_prob_diff"]
    assert 0 <= recorded < 1e-4


def test_report_and_card_say_synthetic_and_split(exported, search: Search) -> None:
    out, result = exported
    page = (out / "report.html").read_text()
    assert "SYNTHETIC demo data" in page.split("<h2>")[0]
    assert "held-out test split" in page
    assert "Optimization history" in page and "Trials" in page
    card = (out / "MODEL_CARD.md").read_text()
    assert "SYNTHETIC demo data" in card.splitlines()[2]
    assert f"{result.metrics['accuracy']:.4g}" in card
    # the card and the report travel with the folder: paths relative to it, none absolute
    for absolute in (str(search.checkpoint), str(search.data_root)):
        assert absolute not in card and absolute not in page
    checkpoint = os.path.relpath(search.checkpoint, out)
    assert f"`{checkpoint}`" in card and f"<td>{checkpoint}</td>" in page


def test_relative_path() -> None:
    assert relative_path("/a/b/ckpt/best.pt", Path("/a/b/export")) == "../ckpt/best.pt"
    assert relative_path("/a/b/export/x.pt", Path("/a/b/export")) == "x.pt"


@pytest.mark.slow
def test_study_without_test_split_is_labelled_validation(tmp_path) -> None:
    search = build_search(tmp_path, name="no-test", test_fraction=0.0)
    out = tmp_path / "export"
    result = export_best(
        search.study,
        out,
        Workdir(search.workdir),
        device="cpu",
        pngs=False,
        log=lambda _m: None,
        n_resamples=RESAMPLES,
    )
    assert result.metrics["split"] == "validation"
    assert "no held-out test split" in result.metrics["comparison"]["note"]
    assert result.metrics["n"] == search.data.val_y.numel()
    frame = pd.read_csv(out / "predictions.csv")
    assert set(frame["split"]) == {"validation"}
    assert "VALIDATION split" in (out / "report.html").read_text()
    assert "VALIDATION split" in (out / "MODEL_CARD.md").read_text()
    assert any("selected on" in note for note in result.metrics["notes"])


def test_missing_checkpoint_suggests_retrain(search: Search, tmp_path) -> None:
    moved = search.checkpoint.with_name("elsewhere.pt")
    search.checkpoint.rename(moved)
    try:
        with pytest.raises(UserError, match="--retrain"):
            export_best(search.study, tmp_path, Workdir(search.workdir), pngs=False)
    finally:
        moved.rename(search.checkpoint)


@pytest.mark.slow
def test_retrain_trains_on_train_and_validation(search: Search, tmp_path) -> None:
    lines: list[str] = []
    result = export_best(
        search.study,
        tmp_path,
        Workdir(search.workdir),
        retrain=True,
        device="cpu",
        pngs=False,
        log=lines.append,
        n_resamples=RESAMPLES,
    )
    n_fit = search.data.train_y.numel() + search.data.val_y.numel()
    assert any(f"({n_fit} images)" in line for line in lines)
    assert result.metrics["model"]["source"] == "retrain"
    assert result.metrics["split"] == "test"
    _, saved = plain_resnet18(tmp_path / "model.pt")
    assert saved["source"] == "retrain"
    assert saved["epoch"] == TrialRecord.read(search.study.best_trial).best_epoch


def test_winner_and_runner_up_are_the_two_best_configurations(search: Search) -> None:
    winner, runner_up = choose_winner_and_runner_up(search.study)
    assert winner.number == search.study.best_trial.number
    complete = [t for t in search.study.trials if t.value is not None and t.number != winner.number]
    assert runner_up is not None and runner_up.value == max(t.value for t in complete)
    assert runner_up.params != winner.params
    assert best_summary(search.study, Workdir(search.workdir))["runner_up"] == runner_up.number


def test_every_number_has_an_interval_and_a_missing_rival_is_said(exported) -> None:
    out, result = exported
    ci = json.loads((out / "metrics.json").read_text())["ci95"]
    assert ci["n_resamples"] == RESAMPLES and ci["accuracy"]["method"].startswith("Wilson")
    assert set(ci["roc_auc"]["per_class"]) == set(CLASS_NAMES)
    assert {"balanced_accuracy", "macro_f1", "per_class"} <= set(ci)
    # the factory's runner-up (trial 3) has no checkpoint on disk
    comparison = result.metrics["comparison"]
    assert comparison["runner_up"]["trial"] == 3 and "not found" in comparison["note"]
    assert not (out / "predictions_runner_up.csv").exists()
    page = (out / "report.html").read_text()
    assert "Uncertainty (test split)" in page and "No comparison: the checkpoint" in page
    assert "Validation against test" in page and "with their 95 % intervals" in page
    assert "## Uncertainty (test split)" in (out / "MODEL_CARD.md").read_text()


def test_winner_against_runner_up_on_the_same_test_images(search: Search, tmp_path) -> None:
    _, runner_up = choose_winner_and_runner_up(search.study)
    rival = Path(TrialRecord.read(runner_up).checkpoint)
    saved = torch.load(search.checkpoint, weights_only=True)
    generator = torch.Generator().manual_seed(0)
    fc = saved["state_dict"]["fc.weight"]
    saved["state_dict"]["fc.weight"] = fc + torch.randn(fc.shape, generator=generator)
    rival.parent.mkdir(parents=True, exist_ok=True)
    torch.save(saved, rival)
    try:
        result = export_best(
            search.study,
            tmp_path,
            Workdir(search.workdir),
            device="cpu",
            pngs=False,
            log=lambda _m: None,
            n_resamples=RESAMPLES,
        )
    finally:
        rival.unlink()
    comparison = result.metrics["comparison"]
    assert comparison["runner_up"]["trial"] == runner_up.number and "note" not in comparison
    # Named with its study, and how it was chosen (no confirmation here: one seed each).
    assert comparison["runner_up"]["study"] == search.study.study_name
    assert comparison["runner_up"]["chosen_as"] == "the best trial of another configuration"
    ours = pd.read_csv(tmp_path / "predictions.csv")
    theirs = pd.read_csv(tmp_path / "predictions_runner_up.csv")
    assert list(ours["name"]) == list(theirs["name"])  # the same test images, in one order
    y = ours["true_index"].to_numpy()
    right_w, right_r = ours["pred_index"].to_numpy() == y, theirs["pred_index"].to_numpy() == y
    acc = comparison["accuracy"]
    assert acc["difference"] == pytest.approx(right_w.mean() - right_r.mean())
    discordant = acc["n10"] + acc["n01"]
    assert acc["n10"] == (right_w & ~right_r).sum() and discordant == (right_w != right_r).sum()
    expected = binomtest(acc["n10"], discordant, 0.5).pvalue if discordant else 1.0
    assert acc["p_value"] == pytest.approx(expected)
    auc = comparison["roc_auc_macro"]
    assert auc["winner"] == pytest.approx(result.metrics["roc_auc"]["macro"])
    page = (tmp_path / "report.html").read_text()
    assert "Winner against runner-up" in page and "exact McNemar" in page
    assert f"Runner-up: trial {runner_up.number} of {search.study.study_name} (" in page


def test_a_chosen_trial_is_exported_and_said_so(search: Search, tmp_path) -> None:
    """``best --export DIR --trial N``: trial N, with no runner-up, and the selection says
    how it was chosen."""
    number = search.study.best_trial.number
    result = export_best(
        search.study, tmp_path / "chosen", Workdir(search.workdir), device="cpu", pngs=False,
        log=lambda _m: None, n_resamples=RESAMPLES, chosen=number,
    )  # fmt: skip
    assert result.metrics["model"]["trial"] == number
    assert result.metrics["selection"].startswith(f"chosen with --trial: trial {number}")
    assert "the search's best" in result.metrics["selection"]
    assert result.metrics["comparison"]["runner_up"] is None
    assert "chosen with --trial" in result.metrics["comparison"]["note"]
    others = [t.number for t in search.study.trials if t.number != number]
    with pytest.raises(UserError, match="--trial"):
        export_best(search.study, tmp_path / "x", Workdir(search.workdir), chosen=others[-1])
