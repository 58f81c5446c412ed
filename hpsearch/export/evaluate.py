"""Stage 2 of an export: the model's probabilities on the evaluated split (the held-out
test split; the validation split, said so, for a study without one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hpsearch.export.weights import Weights
from trainer.data import Data
from trainer.errors import UserError


@dataclass(frozen=True)
class Evaluation:
    """The model's probabilities on the evaluated split."""

    split: str
    """``test``, or ``validation`` for a study that holds out no test split."""
    names: tuple[str, ...]
    images: torch.Tensor
    labels: torch.Tensor
    proba: np.ndarray
    notes: tuple[str, ...]
    """Caveats about these numbers, said in the log, metrics.json and the report."""


def evaluate(
    weights: Weights,
    data: Data,
    device: torch.device,
    *,
    retrain: bool,
    log: Callable[[str], None],
) -> Evaluation:
    """Probabilities of the held-out test split (the validation split if there is none)."""
    from reports.final import split_sentence
    from trainer.inference import predict_proba

    if data.test_y.numel() > 0:
        split, images, labels, names = "test", data.test_x, data.test_y, data.names.get("test")
    else:
        split, images, labels, names = "validation", data.val_x, data.val_y, data.names.get("val")
    if labels.numel() == 0:
        raise UserError(f"the {split} split of {data.source} is empty; nothing to evaluate")
    # In a tensor: load_data streams from the cache file only a search trial's splits.
    assert isinstance(images, torch.Tensor)
    names = list(names or [])
    if len(names) != labels.numel():
        names = [f"{split}_{i}" for i in range(labels.numel())]
    notes = []
    if split == "validation":
        notes.append(split_sentence(split, labels.numel()))
        if retrain:
            notes.append(
                "With --retrain the validation images were also TRAINING images of this "
                "model: these validation numbers are a training-set fit, not an evaluation."
            )
    for note in notes:
        log(f"note: {note}")
    proba = predict_proba(weights.model, images, weights.mean, weights.std, device=device)
    return Evaluation(split, tuple(names), images, labels, proba, tuple(notes))
