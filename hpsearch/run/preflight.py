"""Checks of everything a trial needs that does not depend on its hyperparameters.

They run once, before the study is created or changed: a missing weights file or an
unwritable workdir is one line and exit status 2, not a failed trial per grid point.
"""

from __future__ import annotations

from dataclasses import fields
from itertools import product

from hpsearch.paths import Workdir, check_creatable
from hpsearch.study.spec import StudySpec
from trainer.config import TrainConfig
from trainer.errors import UserError


def check_setup(spec: StudySpec, scale: str, workdir: Workdir) -> None:
    """Weights for every architecture the study may build, and a workdir (and artifact
    location) that exists and takes files or can be made; nothing is created."""
    check_creatable(workdir.root)
    if workdir.shared is not None:
        check_creatable(workdir.shared)
    for arch, pretrained, weights_path in model_sources(spec, scale):
        if pretrained:
            check_weights(arch, weights_path)


def model_sources(spec: StudySpec, scale: str) -> set[tuple[str, bool, str | None]]:
    """Each (arch, pretrained, weights_path) a trial of ``scale`` may use."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    fixed = {**defaults, **spec.train_values(scale)}
    axes = {p.name: p.values for p in spec.space_at(scale) if not p.is_range}
    options = [axes.get(key, (fixed[key],)) for key in ("arch", "pretrained", "weights_path")]
    return {(str(a), bool(p), w) for a, p, w in product(*options)}


def check_weights(arch: str, weights_path: str | None) -> None:
    """The ImageNet weights of ``arch`` load (from ``weights_path`` or torchvision's cache)."""
    from trainer.model import build_model

    try:
        build_model(arch, pretrained=True, weights_path=weights_path)
    except UserError as err:
        raise UserError(f"{err} (or train from scratch: --set pretrained=false)") from None
