"""The exported model: ``model.pt`` (weights + metadata) and ``model.onnx`` (with its check).

``model.pt`` is a plain dict readable with ``torch.load(..., weights_only=True)``; its
``state_dict`` loads into torchvision's architecture with a one-channel stem and a 4-way
head (``trainer.model.build_model``). ``model.onnx`` takes float32 pixel values 0-255 of
shape (N, 1, S, S) and returns the four class probabilities: normalization and softmax
are inside it.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hpsearch.export.files import MODEL_FILE
from trainer.errors import UserError

FORMAT_VERSION = 1


def save_model(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model.pt``: the CPU state_dict plus ``meta`` (plain Python values only)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        **meta,
    }
    torch.save(payload, path)


def load_model_dir(model_dir: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The model of an export folder (eval mode, CPU) and its metadata."""
    from trainer.inference import load_model

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"model folder {str(model_dir)!r} does not exist")
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise UserError(
            f"{model_dir} has no {MODEL_FILE}; "
            "make one with hpsearch best --study NAME --export DIR"
        )
    model, meta = load_model(path)
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise UserError(
            f"{path}: format_version={version!r} is not a format of model.pt; make one with "
            "hpsearch best --study NAME --export DIR"
        )
    if version > FORMAT_VERSION:
        raise UserError(
            f"{path}: format_version={version} is newer than this hpsearch reads "
            f"({FORMAT_VERSION}); upgrade hpsearch"
        )
    return model, meta


class ProbabilityModel(nn.Module):
    """``model`` behind the input normalization and followed by a softmax."""

    def __init__(self, model: nn.Module, mean: float, std: float) -> None:
        super().__init__()
        self.model = model
        self.scale = 1.0 / (255.0 * std)
        self.shift = mean / std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(pixels * self.scale - self.shift), dim=1)


def export_onnx(model: nn.Module, mean: float, std: float, image_size: int, path: Path) -> str:
    """Write ``path`` (dynamic batch axis); returns the exporter used: 'dynamo' or 'torchscript'.

    The dynamo exporter needs the onnxscript package; without it the TorchScript-based
    exporter, which needs nothing else, is used.
    """
    wrapped = ProbabilityModel(model, mean, std).eval()
    example = (torch.zeros(2, 1, image_size, image_size),)
    names: dict[str, Any] = {"input_names": ["pixels"], "output_names": ["probabilities"]}
    if importlib.util.find_spec("onnxscript") is not None:
        try:
            torch.onnx.export(
                wrapped,
                example,
                str(path),
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                **names,
            )
            return "dynamo"
        except Exception as err:  # fall back to the older exporter below
            warnings.warn(f"dynamo ONNX export failed ({err}); using TorchScript", stacklevel=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapped,
            example,
            str(path),
            dynamo=False,
            dynamic_axes={"pixels": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=17,
            **names,
        )
    return "torchscript"


def onnx_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    """Probabilities from ``model.onnx`` (onnxruntime, CPU) for uint8 images (N, 1, S, S)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out: np.ndarray
    (out,) = session.run(["probabilities"], {"pixels": images.astype(np.float32)})
    return out
