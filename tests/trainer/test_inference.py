"""load_model and predict_proba on a saved (untrained) model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.errors import UserError
from trainer.inference import load_model, predict_proba
from trainer.model import build_model


@pytest.fixture
def saved_model(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18")
    path = tmp_path / "best.pt"
    torch.save(
        {
            "state_dict": model.state_dict(),
            "arch": "resnet18",
            "num_classes": 4,
            "in_chans": 1,
            "image_size": 16,
            "mean": 0.5,
            "std": 0.25,
        },
        path,
    )
    return path, model.eval()


def test_load_model_restores_the_weights(saved_model):
    path, original = saved_model
    model, meta = load_model(path)
    assert meta["arch"] == "resnet18" and "state_dict" not in meta
    assert not model.training
    for key, value in original.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_predict_proba_accepts_arrays_with_or_without_a_channel_axis(saved_model):
    path, _ = saved_model
    model, meta = load_model(path)
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16), dtype=np.uint8)
    flat = predict_proba(model, images, meta["mean"], meta["std"], batch_size=2)
    with_channel = predict_proba(model, torch.from_numpy(images[:, None]), 0.5, 0.25)
    assert flat.shape == (5, 4)
    assert np.allclose(flat.sum(axis=1), 1, atol=1e-5)
    assert np.allclose(flat, with_channel, atol=1e-6)  # batch size does not matter in eval
    assert predict_proba(model, images[:0], 0.5, 0.25).shape == (0, 4)


def test_predict_proba_wants_uint8(saved_model):
    model, _ = load_model(saved_model[0])
    with pytest.raises(ValueError, match="uint8"):
        predict_proba(model, np.zeros((2, 16, 16), np.float32), 0.5, 0.25)


def test_load_model_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "absent.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(UserError, match="missing state_dict"):
        load_model(other)
