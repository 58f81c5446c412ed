"""fit(): learning, checkpoints, resume, callbacks, divergence, saved model."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.trainer.synthetic_tensors import synthetic_data
from trainer.config import TrainConfig
from trainer.errors import UserError
from trainer.inference import load_model, predict_proba
from trainer.metrics import classification_metrics
from trainer.training import fit

TIMING = {"images_per_sec", "epoch_seconds"}


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def small():
    """Synthetic 16-pixel images: enough to exercise the loop, too few to learn much."""
    return synthetic_data(n_train=64, n_val=32, size=16, seed=1)


def _config(**changes) -> TrainConfig:
    # fp32 whatever the CPU, so results do not depend on the machine (bf16: test_precision)
    base = TrainConfig(epochs=3, batch_size=16, lr=0.01, device="cpu", threads=1, precision="fp32")
    return replace(base, **changes)


def _metrics(history):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


def _assert_same_history(a, b):
    assert len(a) == len(b)
    for row_a, row_b in zip(_metrics(a), _metrics(b), strict=True):
        assert row_a.keys() == row_b.keys()
        for key in row_a:
            assert row_a[key] == pytest.approx(row_b[key], abs=1e-6, nan_ok=True), key


@pytest.mark.slow
def test_learns_the_synthetic_task_and_a_tiny_lr_learns_less():
    data = synthetic_data(n_train=240, n_val=120, size=32, seed=0)
    good = fit(_config(lr=0.01), data)
    tiny = fit(_config(lr=1e-5), data)
    assert good.best_metrics["val_accuracy"] > 0.7
    assert good.best_metrics["val_auc_macro"] > 0.85
    assert tiny.best_metrics["val_accuracy"] < good.best_metrics["val_accuracy"] - 0.25


@pytest.mark.slow
def test_history_rows_have_the_promised_keys(small):
    result = fit(_config(epochs=1, threads=2), small)
    row = result.history[0]
    expected = {
        "epoch",
        "train_loss",
        "val_loss",
        "val_accuracy",
        "val_balanced_accuracy",
        "val_macro_f1",
        "val_auc_macro",
        "val_auc_covid",
        "val_auc_lung_opacity",
        "val_auc_pneumonia",
        "val_auc_normal",
        "lr",
        "images_per_sec",
        "epoch_seconds",
        "diverged",
    }
    assert expected <= row.keys()
    assert row["epoch"] == 1 and row["diverged"] == 0.0
    assert row["images_per_sec"] > 0 and result.images_per_sec > 0
    assert result.device == "cpu (2 threads)"
    assert torch.get_num_threads() == 1  # the caller's setting is back
    assert result.peak_memory_mb > 0
    assert result.best_checkpoint is None and result.last_checkpoint is None


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_other_metrics(small):
    config = _config(epochs=2, crop_padding=2, balanced_sampling=True)
    a, b = fit(config, small), fit(config, small)
    _assert_same_history(a.history, b.history)
    other = fit(replace(config, seed=1), small)
    assert other.history[-1]["train_loss"] != a.history[-1]["train_loss"]


def test_on_epoch_can_stop_training(small):
    seen = []

    def on_epoch(epoch, row):
        seen.append((epoch, row["val_accuracy"]))
        return epoch == 2

    result = fit(_config(epochs=5), small, on_epoch)
    assert [e for e, _ in seen] == [1, 2]
    assert result.epochs_run == 2 and result.stopped_early
    assert seen[-1][1] == result.history[-1]["val_accuracy"]


@pytest.mark.parametrize(
    "changes",
    [
        {
            "nesterov": True,
            "schedule": "cosine",
            "warmup_epochs": 0.5,
            "accumulate": 3,
            "crop_padding": 2,
        },
        {
            "optimizer": "adamw",
            "weight_decay": 0.05,
            "schedule": "step",
            "step_size": 1,
            "balanced_sampling": True,
            "label_smoothing": 0.1,
        },
    ],
)
@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_run(small, tmp_path, changes):
    config = _config(**changes)
    straight = fit(config, small, checkpoint_dir=tmp_path / "straight")

    cut = fit(config, small, lambda epoch, row: epoch == 2, checkpoint_dir=tmp_path / "cut")
    assert cut.epochs_run == 2
    resumed = fit(config, small, checkpoint_dir=tmp_path / "cut")

    assert resumed.epochs_run == 3 and not resumed.stopped_early
    _assert_same_history(straight.history, resumed.history)
    assert resumed.best_epoch == straight.best_epoch
    a = torch.load(tmp_path / "straight" / "best.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "cut" / "best.pt", weights_only=True)["state_dict"]
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key


@pytest.mark.slow
def test_finished_run_resumes_to_the_same_result_without_training(small, tmp_path):
    config = _config(epochs=2)
    first = fit(config, small, checkpoint_dir=tmp_path)
    calls = []
    again = fit(config, small, lambda e, r: calls.append(e), checkpoint_dir=tmp_path)
    assert calls == []
    _assert_same_history(first.history, again.history)
    assert again.best_epoch == first.best_epoch


@pytest.mark.slow
def test_other_settings_refuse_to_resume(small, tmp_path):
    fit(_config(epochs=1), small, checkpoint_dir=tmp_path)
    with pytest.raises(UserError, match="other settings"):
        fit(_config(epochs=1, lr=0.02), small, checkpoint_dir=tmp_path)
    # the same settings on a different number of threads may resume
    fit(_config(epochs=1, threads=2), small, checkpoint_dir=tmp_path)
    # and resume=False starts over
    fresh = fit(_config(epochs=1, lr=0.02), small, checkpoint_dir=tmp_path, resume=False)
    assert fresh.epochs_run == 1


@pytest.mark.slow
def test_failed_checkpoint_write_leaves_the_previous_one(small, tmp_path, monkeypatch):
    config = _config(epochs=2)
    fit(config, small, lambda epoch, row: True, checkpoint_dir=tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    real_save = torch.save

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fit(config, small, checkpoint_dir=tmp_path)
    monkeypatch.setattr(torch, "save", real_save)

    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    assert fit(config, small, checkpoint_dir=tmp_path).epochs_run == 2


@pytest.mark.slow
def test_best_checkpoint_is_a_self_contained_model(small, tmp_path):
    config = _config(epochs=2, monitor="val_loss")
    result = fit(config, small, checkpoint_dir=tmp_path)
    losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1  # val_loss is minimised
    assert result.best_checkpoint == tmp_path / "best.pt"

    saved = torch.load(result.best_checkpoint, weights_only=True)
    assert saved["arch"] == "resnet18" and saved["num_classes"] == 4 and saved["in_chans"] == 1
    assert saved["image_size"] == 16 and saved["epoch"] == result.best_epoch
    assert saved["class_names"] == ["covid", "lung_opacity", "pneumonia", "normal"]
    assert TrainConfig.from_dict(saved["config"]) == config
    assert saved["metrics"] == result.best_metrics

    model, meta = load_model(result.best_checkpoint)
    proba = predict_proba(model, small.val_x.numpy()[:, 0], meta["mean"], meta["std"], 8)
    assert proba.shape == (32, 4)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    # the saved model reproduces the validation metrics of its epoch
    again = classification_metrics(small.val_y.numpy(), proba)
    assert again["accuracy"] == pytest.approx(result.best_metrics["val_accuracy"])
    assert again["auc_macro"] == pytest.approx(result.best_metrics["val_auc_macro"], abs=1e-5)


@pytest.mark.slow
def test_diverging_lr_finishes_the_epoch_and_stops(small):
    result = fit(_config(epochs=3, lr=1e8, momentum=0.9), small)
    last = result.history[-1]
    assert last["diverged"] == 1.0 and not math.isfinite(last["train_loss"])
    assert result.stopped_early and result.epochs_run < 3
    # metrics still come out, from whatever the model now predicts
    assert math.isfinite(last["val_accuracy"]) and math.isfinite(last["val_auc_macro"])


def test_crop_padding_larger_than_the_image_is_a_user_error(small):
    with pytest.raises(UserError, match="crop_padding=16"):
        fit(_config(crop_padding=16), small)


def test_missing_cuda_is_a_user_error(small, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        fit(_config(device="cuda"), small)
