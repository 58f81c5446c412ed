"""Load a saved best model and compute class probabilities for uint8 images."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.batches import eval_batches
from trainer.errors import UserError, first_line
from trainer.model import build_model

_REQUIRED = ("state_dict", "arch", "num_classes", "in_chans", "mean", "std")


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a ``best.pt`` file, in eval mode on the CPU, and the file's other entries.

    The file is read with ``weights_only=True``; the meta dict holds ``arch``,
    ``num_classes``, ``in_chans``, ``image_size``, ``mean``, ``std``, ``class_names``,
    ``config``, ``epoch`` and ``metrics``.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {str(path)!r} not found")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"cannot read model file {path}: {type(error).__name__}") from error
    missing = [k for k in _REQUIRED if not isinstance(saved, dict) or k not in saved]
    if missing:
        raise UserError(f"{path} is not a saved model (missing {', '.join(missing)})")
    try:
        model = build_model(
            saved["arch"], num_classes=saved["num_classes"], in_chans=saved["in_chans"]
        )
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, TypeError, ValueError) as error:
        reason = first_line(error).rstrip(":")
        raise UserError(
            f"{path}: its weights do not make a {saved['arch']} model with "
            f"{saved['num_classes']} classes and {saved['in_chans']} channel(s) ({reason})"
        ) from error
    model.eval()
    meta = {k: v for k, v in saved.items() if k != "state_dict"}
    return model, meta


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    mean: float,
    std: float,
    *,
    batch_size: int = 256,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """float32 logits ``(N, classes)`` of uint8 ``images`` (N >= 1, C, H, W) on their device."""
    model.eval()
    autocast = (
        torch.autocast(device_type=images.device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    outputs = []
    with autocast:
        for batch in eval_batches(
            images, batch_size, mean=mean, std=std, channels_last=channels_last
        ):
            outputs.append(model(batch).float())
    return torch.cat(outputs)


def predict_proba(
    model: nn.Module,
    images: torch.Tensor | np.ndarray,
    mean: float,
    std: float,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Softmax probabilities ``(N, classes)`` for uint8 images ``(N, 1, S, S)`` or ``(N, S, S)``.

    The model is moved to ``device`` and put in eval mode.
    """
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8:
        raise ValueError(f"images have dtype {images.dtype}; expected uint8 pixels")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise ValueError(f"images have shape {tuple(images.shape)}; expected (N, 1, S, S)")
    if images.shape[0] == 0:
        return np.zeros((0, _out_features(model)), dtype=np.float32)
    device = torch.device(device)
    model.to(device)
    logits = predict_logits(model, images.to(device), mean, std, batch_size=batch_size)
    return torch.softmax(logits, dim=1).cpu().numpy()


def _out_features(model: nn.Module) -> int:
    head = getattr(model, "fc", None) or getattr(model, "classifier", None)
    return int(head.out_features) if isinstance(head, nn.Linear) else 0
