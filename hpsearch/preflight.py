"""Checks of everything a trial needs that does not depend on its hyperparameters.

They run once, before the study is created or changed: a missing weights file or an
unwritable workdir is one line and exit status 2, not a failed trial per grid point.
"""

from __future__ import annotations

import os
import tempfile
from itertools import product
from typing import TYPE_CHECKING

from trainer.errors import UserError

if TYPE_CHECKING:
    from hpsearch.paths import Workdir
    from hpsearch.spec import StudySpec


def check_setup(spec: StudySpec, scale: str, workdir: Workdir) -> None:
    """Weights for every architecture the study may build, and a writable workdir."""
    check_writable(workdir.root)
    for arch, pretrained, weights_path in model_sources(spec, scale):
        if pretrained:
            check_weights(arch, weights_path)


def model_sources(spec: StudySpec, scale: str) -> set[tuple[str, bool, str | None]]:
    """Each (arch, pretrained, weights_path) a trial of ``scale`` may use."""
    fixed = spec.train_values(scale)
    axes = {p.name: p.values for p in spec.space_at(scale) if not p.is_range}
    options = [
        axes.get(key, (fixed.get(key, default),))
        for key, default in (("arch", "resnet18"), ("pretrained", False), ("weights_path", None))
    ]
    return {(str(a), bool(p), w) for a, p, w in product(*options)}


def check_weights(arch: str, weights_path: str | None) -> None:
    """The ImageNet weights of ``arch`` load (from ``weights_path`` or torchvision's cache)."""
    from trainer.model import build_model

    try:
        build_model(arch, pretrained=True, weights_path=weights_path)
    except UserError as err:
        raise UserError(f"{err} (or train from scratch: --set pretrained=false)") from None


def check_writable(folder: os.PathLike[str] | str) -> None:
    """``folder`` takes a file (checkpoints, caches and exports are written there)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".hpsearch-write-check-"):
            pass
    except OSError as err:
        raise UserError(f"cannot write to {folder}: {err.strerror or err}") from None
