"""Stage 1 of an export: the weights to ship (the trial's best checkpoint, or a retrain)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from optuna.trial import FrozenTrial
from torch import nn

from hpsearch.export.choose import checkpoint_path
from hpsearch.paths import Workdir
from hpsearch.trials.record import TrialRecord
from trainer.data import Data
from trainer.errors import UserError


@dataclass(frozen=True)
class Weights:
    """The model to export and where its weights come from."""

    model: nn.Module
    arch: str
    image_size: int
    mean: float
    std: float
    config: dict[str, Any] | None
    epoch: int | None
    source: str
    """``checkpoint`` (the trial's best epoch) or ``retrain`` (train + validation)."""
    source_text: str
    checkpoint: str | None = None
    """The checkpoint file the weights were read from (None for a retrain)."""


def checkpoint_weights(
    trial: FrozenTrial, study_name: str, workdir: Workdir, data: Data
) -> Weights:
    """The trial's best checkpoint; a UserError (suggesting --retrain) when it is gone."""
    from trainer.inference import load_model

    ckpt = checkpoint_path(trial, study_name, workdir)
    if ckpt is None:
        raise UserError(
            f"checkpoint of trial {trial.number} not found "
            f"({TrialRecord.read(trial).checkpoint!r}); pass --retrain to train it again"
        )
    model, meta = load_model(ckpt)
    if int(meta.get("image_size", data.image_size)) != data.image_size:
        raise UserError(
            f"model image size {meta.get('image_size')} differs from the data's {data.image_size}"
        )
    return Weights(
        model=model,
        arch=meta["arch"],
        image_size=int(data.image_size),
        mean=float(meta["mean"]),
        std=float(meta["std"]),
        config=meta.get("config"),
        epoch=meta.get("epoch"),
        source="checkpoint",
        source_text=f"best checkpoint of trial {trial.number} (epoch {meta.get('epoch')})",
        checkpoint=str(ckpt),
    )


def retrained_weights(
    trial: FrozenTrial, data: Data, device: torch.device, log: Callable[[str], None]
) -> Weights:
    """The trial's configuration trained again on train + validation for its best epoch count."""
    from trainer.config import TrainConfig
    from trainer.retrain import retrain_on_train_and_val

    record = TrialRecord.read(trial)
    config_dict = record.config
    if not config_dict:
        raise UserError(f"trial {trial.number} records no training config; cannot retrain")
    epochs = int(record.best_epoch or config_dict.get("epochs", 1))
    # The precision the trial trained in (its config may say 'auto', which a probe decided).
    precision = record.result.get("precision") or config_dict.get("precision", "auto")
    values = {**config_dict, "epochs": epochs, "device": str(device), "precision": precision}
    config = TrainConfig.from_dict(values)
    n_images = data.train_y.numel() + data.val_y.numel()
    log(
        f"retraining trial {trial.number} on train+validation ({n_images} images), "
        f"{epochs} epoch(s)"
    )
    done = retrain_on_train_and_val(config, data, log)
    return Weights(
        model=done.model,
        arch=config.arch,
        image_size=int(data.image_size),
        mean=done.mean,
        std=done.std,
        config=config.to_dict(),
        epoch=epochs,
        source="retrain",
        source_text=(
            f"trained again on train+validation ({done.n_images} images) for {epochs} "
            f"epoch(s), the best epoch count of trial {trial.number}"
        ),
    )
