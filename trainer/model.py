"""torchvision classifiers with a one-channel stem and a 4-way head, optionally from ImageNet.

Pretrained weights are never downloaded: they come from a file the user names or from
torchvision's own cache, and their absence is one line that says which file goes where.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import (
    DenseNet121_Weights,
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
)

from trainer.config import ARCHS
from trainer.errors import UserError, first_line

_WEIGHTS = {
    "resnet18": ResNet18_Weights,
    "resnet34": ResNet34_Weights,
    "resnet50": ResNet50_Weights,
    "densenet121": DenseNet121_Weights,
}
# Old DenseNet checkpoints (torchvision's own among them) spell 'norm1' as 'norm.1'.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
    r"((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def build_model(
    arch: str,
    num_classes: int = 4,
    in_chans: int = 1,
    pretrained: bool = False,
    weights_path: str | Path | None = None,
) -> nn.Module:
    """A torchvision ``arch`` with an ``in_chans`` stem and a ``num_classes`` head.

    With ``pretrained``, ImageNet weights are read from ``weights_path`` if given, else from
    torchvision's cache (``torch.hub.get_dir()/checkpoints``); the stem's RGB kernels are
    summed over the colour axis, so a gray image gives the response the RGB model gave to
    the same gray image in three channels. ``weights_path`` is ignored without ``pretrained``.
    Missing or unreadable weights raise ``UserError``; nothing is downloaded.
    """
    if arch not in ARCHS:
        raise UserError(f"arch={arch!r}: expected one of {', '.join(ARCHS)}")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: must be >= 2")
    if in_chans < 1:
        raise ValueError(f"in_chans={in_chans}: must be >= 1")

    model: nn.Module = getattr(torchvision.models, arch)(weights=None)
    if pretrained:
        path = Path(weights_path) if weights_path is not None else cached_weights_path(arch)
        _load_imagenet(model, arch, path)
    _replace_stem(model, arch, in_chans, keep_weights=pretrained)
    _replace_head(model, arch, num_classes)
    return model


def cached_weights_path(arch: str) -> Path:
    """The file in torchvision's cache that holds ``arch``'s ImageNet weights.

    Any of torchvision's weight versions found there is accepted (the default first);
    if none is, ``UserError`` names the default file and where to put it.
    """
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    enum = _WEIGHTS[arch]
    versions = [enum.DEFAULT, *(w for w in enum if w is not enum.DEFAULT)]
    for weights in versions:
        candidate = checkpoints / _file_name(weights.url)
        if candidate.is_file():
            return candidate
    url = enum.DEFAULT.url
    name = _file_name(url)
    raise UserError(
        f"ImageNet weights for {arch} not found: put {name} (from {url}) at "
        f"{checkpoints / name}, or set weights_path to a local copy"
    )


def _file_name(url: str) -> str:
    return Path(urlparse(url).path).name


def _load_imagenet(model: nn.Module, arch: str, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"weights_path={str(path)!r}: no such file") from None
    except Exception as error:
        raise UserError(f"cannot read weights file {path}: {first_line(error)}") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state_dict, found {type(state).__name__}")
    state = {_DENSENET_OLD_KEY.sub(r"\1\2", k): v for k, v in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise UserError(f"{path}: tensor shapes do not match {arch}'s ImageNet model") from error
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise UserError(
            f"{path}: not {arch} ImageNet weights ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys, e.g. {example!r})"
        )


def _stem_owner(model: nn.Module, arch: str) -> tuple[nn.Module, str]:
    if arch.startswith("densenet"):
        return model.get_submodule("features"), "conv0"
    return model, "conv1"


def _replace_stem(model: nn.Module, arch: str, in_chans: int, *, keep_weights: bool) -> None:
    owner, name = _stem_owner(model, arch)
    old: nn.Conv2d = getattr(owner, name)
    if in_chans == old.in_channels:
        return
    # torch types a convolution's sizes for any number of dimensions; a Conv2d's are pairs.
    new = nn.Conv2d(
        in_chans,
        old.out_channels,
        kernel_size=cast("tuple[int, int]", old.kernel_size),
        stride=cast("tuple[int, int]", old.stride),
        padding=cast("str | tuple[int, int]", old.padding),
        bias=old.bias is not None,
    )
    with torch.no_grad():
        if keep_weights:
            # Spread the summed kernel over the new channels so a constant input keeps its response.
            summed = old.weight.sum(dim=1, keepdim=True)
            new.weight.copy_(summed.repeat(1, in_chans, 1, 1) / in_chans)
            if old.bias is not None:
                assert new.bias is not None  # made with bias=True when old has one
                new.bias.copy_(old.bias)
        elif arch.startswith("densenet"):
            nn.init.kaiming_normal_(new.weight)  # torchvision's DenseNet init
        else:
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    setattr(owner, name, new)


def _replace_head(model: nn.Module, arch: str, num_classes: int) -> None:
    name = "classifier" if arch.startswith("densenet") else "fc"
    head = model.get_submodule(name)
    assert isinstance(head, nn.Linear)  # every arch in ARCHS ends in one Linear layer
    setattr(model, name, nn.Linear(head.in_features, num_classes))
