"""Training configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from trainer.errors import UserError
from trainer.split import check_fractions

DEFAULT_CACHE_DIR = Path("~/.cache/hpsearch")

ARCHS = ("resnet18", "resnet34", "resnet50", "densenet121")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("none", "cosine", "step")
MONITORS = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_auc_macro", "val_loss")


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``fit`` needs besides the data."""

    arch: str = "resnet18"
    """torchvision architecture, with a one-channel stem and a 4-way head."""
    pretrained: bool = False
    """Start from ImageNet weights (torchvision's cache or ``weights_path``)."""
    weights_path: str | None = None
    """A local file of ImageNet weights; nothing is downloaded at run time."""
    epochs: int = 3
    """Epoch budget; the best epoch by ``monitor`` is recorded."""
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 1e-2
    momentum: float = 0.9
    """SGD momentum (ignored by Adam/AdamW)."""
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "none"
    """Learning-rate schedule over the epoch budget: none, cosine or step."""
    step_size: int = 10
    """Epochs between decays with the step schedule."""
    gamma: float = 0.1
    """Decay factor of the step schedule."""
    warmup_epochs: float = 0.0
    """Linear warm-up, in epochs (fractions allowed), before the schedule."""
    label_smoothing: float = 0.0
    accumulate: int = 1
    """Gradient accumulation steps: an optimizer step every ``accumulate`` batches."""
    balanced_sampling: bool = False
    """Draw training batches with class-balanced probabilities (WeightedRandomSampler's job)."""
    flip: bool = True
    """Random horizontal flip, as the original team did."""
    crop_padding: int = 0
    """Random translation by up to this many pixels (reflect padding then crop); 0 = off."""
    monitor: str = "val_accuracy"
    """Validation metric that picks the best epoch."""
    seed: int = 0
    """Seed of weight init, batch order and augmentation."""
    device: str = "auto"
    """'auto' (CUDA if present), 'cpu', 'cuda' or 'cuda:N'."""
    threads: int | None = None
    """CPU threads this trial may use; None leaves torch's default."""
    channels_last: bool = True
    """NHWC memory format on CUDA."""
    compile: bool = False
    """torch.compile the model (CUDA only)."""
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> UserError:
            return UserError(f"{name}={getattr(self, name)!r}: {why}")

        if self.arch not in ARCHS:
            raise bad("arch", f"expected one of {', '.join(ARCHS)}")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"expected one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise bad("schedule", f"expected one of {', '.join(SCHEDULES)}")
        if self.monitor not in MONITORS:
            raise bad("monitor", f"expected one of {', '.join(MONITORS)}")
        if not self.lr > 0:
            raise bad("lr", "must be > 0")
        for name in ("epochs", "batch_size", "accumulate", "step_size", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be >= 1")
        if not 0 <= self.momentum < 1:
            raise bad("momentum", "must be in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise bad("label_smoothing", "must be in [0, 1)")
        if not 0 < self.gamma <= 1:
            raise bad("gamma", "must be in (0, 1]")
        if self.warmup_epochs < 0 or self.crop_padding < 0:
            raise UserError("warmup_epochs and crop_padding must be >= 0")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "must be >= 1")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown training setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are cut into splits."""

    root: Path
    """Dataset folder: competition, public-database or folder-per-class layout."""
    image_size: int = 64
    """Side in pixels of the square, one-channel images in the cache."""
    val_fraction: float = 0.1
    """Share of the labelled images used for validation (the original team used 10 %)."""
    test_fraction: float = 0.0
    """Share held out for the final evaluation; never used to select a trial."""
    split_seed: int = 0
    """Seed of the stratified split; the same seed gives the same split on any machine."""
    cache_dir: Path | None = None
    """Where decoded caches live; None means ``~/.cache/hpsearch``."""
    workers: int | None = None
    """Processes used to build the cache; None means all cores."""

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise UserError(f"image_size={self.image_size!r}: must be >= 1")
        check_fractions(self.val_fraction, self.test_fraction)
