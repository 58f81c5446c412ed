"""Training a chosen configuration again on train + validation."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.synthetic_tensors import synthetic_data
from trainer.config import TrainConfig
from trainer.model import build_model
from trainer.retrain import merge_train_and_val, retrain_on_train_and_val, strip_prefixes


def test_merge_appends_validation_and_renormalizes() -> None:
    data = synthetic_data(n_train=40, n_val=20, size=16)
    merged = merge_train_and_val(data)
    assert torch.equal(merged.train_x, torch.cat([data.train_x, data.val_x]))
    assert torch.equal(merged.train_y, torch.cat([data.train_y, data.val_y]))
    pixels = merged.train_x.double() / 255
    # the model trained on the merged images is fed with their statistics
    assert merged.mean == pytest.approx(float(pixels.mean()), abs=1e-9)
    assert merged.std == pytest.approx(float(pixels.std(unbiased=False)), abs=1e-9)
    assert torch.equal(merged.test_x, data.test_x)


def test_strip_prefixes_of_compiled_and_parallel_models() -> None:
    state = {"_orig_mod.fc.weight": 1, "module.conv1.weight": 2, "bn1.bias": 3}
    assert strip_prefixes(state) == {"fc.weight": 1, "conv1.weight": 2, "bn1.bias": 3}


def test_retrain_trains_the_epoch_count_on_every_image() -> None:
    torch.set_num_threads(1)
    data = synthetic_data(n_train=32, n_val=16, size=16)
    config = TrainConfig(epochs=1, batch_size=16, lr=1e-3, threads=1, device="cpu", seed=0)
    done = retrain_on_train_and_val(config, data, log=lambda _m: None)
    assert done.n_images == 48 and done.config.epochs == 1
    assert not done.model.training
    plain = build_model(config.arch, num_classes=4, in_chans=1)
    plain.load_state_dict(done.model.state_dict())  # loads into a fresh model, keys match
