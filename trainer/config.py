"""Training configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from trainer.errors import UserError

DEFAULT_CACHE_DIR = Path("~/.cache/hpsearch")

ARCHS = ("resnet18", "resnet34", "resnet50", "densenet121")
OPTIMIZERS = ("sgd", "adam", "adamw")
PRECISIONS = ("auto", "fp32", "bf16")
SCHEDULES = ("none", "cosine", "step")
MONITORS = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_auc_macro", "val_loss")
UNIT_INTERVAL_MONITORS = ("val_accuracy", "val_balanced_accuracy", "val_macro_f1", "val_auc_macro")
"""The monitors that lie in [0, 1] by definition (proportions, F1, AUC); the loss does not."""


def monitor_direction(monitor: str) -> str:
    """Whether ``monitor`` is better higher ("maximize") or lower ("minimize": the loss)."""
    return "minimize" if monitor == "val_loss" else "maximize"


SEED_LIMIT = 2**32
"""Seeds are in [0, 2**32): NumPy's legacy RandomState (the split) takes no larger one."""
MIN_IMAGE_SIZE = 16
"""Smallest cached image side: ResNet's five halvings leave a 1x1 map below this."""
MAX_IMAGE_SIZE = 1024
"""Largest cached image side: the largest demo image, over three times the real data's 299
px; the 21,165 images of the public database take 22 GB of cache at this size."""
DEMO_MIN_IMAGES = 40
"""Fewest demo images for which the smallest class (Viral Pneumonia, 6.4 % of the real
database) gets three: one each for training, validation and test. Whether a given split
really gets every class also depends on its fractions; study files check that."""
DEMO_SIZES = (32, 1024)
"""Smallest and largest side in pixels of a generated demo image."""


class SettingError(UserError):
    """A setting outside its rule; ``name`` is the setting and ``why`` the rule it breaks.

    The message reads ``name=value: why``; a study file reports ``why`` under its own key.
    """

    def __init__(self, name: str, value: Any, why: str) -> None:
        super().__init__(name, value, why)  # all three in args: the error pickles
        self.name, self.value, self.why = name, value, why

    def __str__(self) -> str:
        return f"{self.name}={self.value!r}: {self.why}"


def check_seed(name: str, value: int) -> int:
    """``value`` if it is a seed in [0, 2**32), else a :class:`SettingError` naming ``name``."""
    if not 0 <= value < SEED_LIMIT:
        raise SettingError(name, value, "must be in [0, 2**32)")
    return value


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise :class:`SettingError` unless both fractions are in [0, 1) and sum below 1."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise SettingError(name, value, "must be in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise SettingError(
            "test_fraction",
            test_fraction,
            f"with val_fraction={val_fraction!r} it leaves no training images; "
            "their sum must be below 1",
        )


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
    precision: str = "auto"
    """'auto' (bf16 autocast on CUDA and on CPUs with native bf16, else fp32), 'fp32' or
    'bf16'. The precision a run used is in ``FitResult.precision``. A search first turns
    'auto' into the precision a short measurement chose on this CPU
    (``trainer.precision_probe.resolve_trial_precision``)."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> SettingError:
            return SettingError(name, getattr(self, name), why)

        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(f.name, "must be a finite number")
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
        for name in ("warmup_epochs", "crop_padding"):
            if getattr(self, name) < 0:
                raise bad(name, "must be >= 0")
        if self.precision not in PRECISIONS:
            raise bad("precision", f"expected one of {', '.join(PRECISIONS)}")
        if self.threads is not None and self.threads < 1:
            raise bad("threads", "must be >= 1")
        check_seed("seed", self.seed)

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
        if self.image_size < MIN_IMAGE_SIZE:
            raise SettingError("image_size", self.image_size, f"must be >= {MIN_IMAGE_SIZE}")
        if self.image_size > MAX_IMAGE_SIZE:
            raise SettingError("image_size", self.image_size, f"must be <= {MAX_IMAGE_SIZE}")
        check_fractions(self.val_fraction, self.test_fraction)
        check_seed("split_seed", self.split_seed)


@dataclass(frozen=True)
class DemoConfig:
    """The synthetic demo dataset: how many images, their side and the generator's seed."""

    images: int = 2000
    """Number of images, split over the four classes in the real database's proportions."""
    size: int = 128
    """Side in pixels of the generated PNGs (the cache resizes them to ``image_size``)."""
    seed: int = 0
    """Seed of the generator: the same seed draws byte-identical images."""

    def __post_init__(self) -> None:
        if self.images < DEMO_MIN_IMAGES:
            raise SettingError("images", self.images, f"must be >= {DEMO_MIN_IMAGES}")
        low, high = DEMO_SIZES
        if not low <= self.size <= high:
            raise SettingError("size", self.size, f"must be between {low} and {high}")
        check_seed("seed", self.seed)
