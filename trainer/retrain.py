"""Training a chosen configuration again on train + validation, for a fixed epoch count."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainer.classes import CLASS_NAMES
from trainer.config import TrainConfig
from trainer.data import Data, pixel_mean_std
from trainer.model import build_model
from trainer.training import fit


@dataclass(frozen=True)
class Retrained:
    """The retrained model (eval mode, CPU) and what it needs to be used."""

    model: nn.Module
    config: TrainConfig
    """The configuration it was trained with (``epochs`` is the count trained)."""
    mean: float
    """Pixel mean of train + validation, in [0, 1]: the model's input normalization."""
    std: float
    n_images: int
    """Images it was trained on (train + validation)."""


def merge_train_and_val(data: Data) -> Data:
    """``data`` with the validation images appended to the training images.

    Mean and standard deviation are those of the merged training images, as the model
    trained on them must be fed.
    """
    # In tensors: load_data streams from the cache file only a search trial's splits.
    assert isinstance(data.train_x, torch.Tensor) and isinstance(data.val_x, torch.Tensor)
    train_x = torch.cat([data.train_x, data.val_x])
    train_y = torch.cat([data.train_y, data.val_y])
    mean, std = pixel_mean_std(train_x)
    return dataclasses.replace(data, train_x=train_x, train_y=train_y, mean=mean, std=std)


def retrain_on_train_and_val(
    config: TrainConfig, data: Data, log: Callable[[str], None] = print
) -> Retrained:
    """Train ``config`` on train + validation for ``config.epochs`` epochs.

    The weights of the last epoch are kept: the validation images are now training
    images and cannot pick an epoch.
    """
    merged = merge_train_and_val(data)
    with tempfile.TemporaryDirectory(prefix="retrain-") as tmp:
        result = fit(config, merged, None, checkpoint_dir=Path(tmp), resume=False, log=log)
        assert result.last_checkpoint is not None  # fit with a checkpoint_dir writes one
        state = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    model = build_model(config.arch, num_classes=len(CLASS_NAMES), in_chans=1)
    model.load_state_dict(strip_prefixes(state["model"]))
    return Retrained(model.eval(), config, merged.mean, merged.std, int(merged.train_y.numel()))


def strip_prefixes(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``_orig_mod.`` (torch.compile) and ``module.`` (DataParallel) key prefixes."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("_orig_mod.", "module."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out
