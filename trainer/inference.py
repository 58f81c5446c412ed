"""Load a saved best model and compute class probabilities for uint8 images."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trainer.batches import eval_batches
from trainer.cached_split import Images
from trainer.classes import CLASS_NAMES
from trainer.config import ARCHS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from trainer.errors import UserError, first_line
from trainer.model import build_model

_REQUIRED = ("state_dict", "arch", "num_classes", "in_chans", "image_size", "mean", "std")
#: Bounds that only keep the model buildable: the project's own models have 4 classes
#: and one channel, which :func:`load_model` checks once the weights have loaded.
_MAX_CLASSES = 1000
_MAX_CHANNELS = 4


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a ``best.pt`` file, in eval mode on the CPU, and the file's other entries.

    The file is read with ``weights_only=True``; the meta dict holds ``arch``,
    ``num_classes``, ``in_chans``, ``image_size``, ``mean``, ``std``, ``class_names``,
    ``config``, ``epoch`` and ``metrics``. Every entry is checked before use
    (:func:`check_model_entries`): a bad one is a one-line :class:`UserError`.
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
    check_model_entries(saved, path)
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
    _check_competition_model(saved, path)
    model.eval()
    meta = {k: v for k, v in saved.items() if k != "state_dict"}
    return model, meta


def check_model_entries(saved: Mapping[str, Any], path: str | Path) -> None:
    """One line for the first entry of a model file that is not a value the project
    writes: ``arch``, ``num_classes``, ``in_chans``, ``image_size`` (within the sizes the
    project supports, so a hostile size never allocates), ``mean`` and ``std`` (finite, of
    pixels scaled to [0, 1], ``std`` > 0), ``class_names``, ``epoch``, ``config``, and the
    state dict (names to tensors, every floating value finite).
    """

    def bad(key: str, why: str) -> UserError:
        shown = repr(saved[key])
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return UserError(f"{path}: {key}={shown} {why}; not a model file this project wrote")

    if not isinstance(saved["arch"], str) or saved["arch"] not in ARCHS:
        raise bad("arch", f"is not one of {', '.join(ARCHS)}")
    for key, low, high in (
        ("num_classes", 2, _MAX_CLASSES),
        ("in_chans", 1, _MAX_CHANNELS),
        ("image_size", MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
    ):
        if not _is_int(saved[key]) or not low <= saved[key] <= high:
            raise bad(key, f"is not a whole number from {low} to {high}")
    if not _is_real(saved["mean"]) or not 0 <= saved["mean"] <= 1:
        raise bad("mean", "is not a number from 0 to 1 (pixels are scaled to [0, 1])")
    if not _is_real(saved["std"]) or not 0 < saved["std"] <= 1:
        raise bad("std", "is not a number above 0 and at most 1")
    names = saved.get("class_names")
    if names is not None and (
        not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names)
    ):
        raise bad("class_names", "is not a list of class names")
    epoch = saved.get("epoch")
    if epoch is not None and (not _is_int(epoch) or epoch < 0):
        raise bad("epoch", "is not a whole number >= 0")
    if saved.get("config") is not None and not isinstance(saved["config"], dict):
        raise bad("config", "is not a table of settings")
    _check_state_dict(saved["state_dict"], path)


def _check_state_dict(state: Any, path: str | Path) -> None:
    if not isinstance(state, dict) or not state:
        raise UserError(f"{path}: its state_dict is not a table of weights")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise UserError(f"{path}: state_dict entry {str(name)[:60]!r} is not a tensor")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise UserError(
                f"{path}: weight {name[:60]!r} holds NaN or infinite values; "
                "the model would predict nothing"
            )


def _check_competition_model(saved: Mapping[str, Any], path: str | Path) -> None:
    """The project's models: one channel in, the competition's four classes out, in order."""
    if saved["in_chans"] != 1:
        raise UserError(f"{path}: in_chans={saved['in_chans']}; the images here have one channel")
    if saved["num_classes"] != len(CLASS_NAMES):
        raise UserError(
            f"{path}: num_classes={saved['num_classes']}; the competition has "
            f"{len(CLASS_NAMES)} classes ({', '.join(CLASS_NAMES)})"
        )
    names = saved.get("class_names")
    if names is not None and list(names) != list(CLASS_NAMES):
        shown = ", ".join(str(n)[:20] for n in list(names)[:8])
        raise UserError(
            f"{path}: class_names ({shown}) are not the competition's classes in its order "
            f"({', '.join(CLASS_NAMES)}): its class indices would mean other classes"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: Images,
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
