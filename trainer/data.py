"""Dataset bundle handed to ``fit``: decoded uint8 images and labels per split.

``load_data`` (layout discovery -> decode-once cache -> seeded split) fills it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from trainer.classes import CLASS_NAMES


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
    progress: bool = True
    """Show progress while the cache is built."""


@dataclass
class Data:
    """Images as uint8 ``(N, 1, H, W)`` tensors and labels as int64 ``(N,)`` per split.

    On the CPU the image tensors are views of the memory-mapped cache (no copy);
    ``to(device)`` copies them once to an accelerator.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float
    """Mean pixel of the training split, in [0, 1]."""
    std: float
    """Standard deviation of the training split's pixels, in [0, 1]."""
    image_size: int
    class_names: tuple[str, ...] = CLASS_NAMES
    names: dict[str, list[str]] = field(default_factory=dict)
    """File names (relative to the dataset root) per split: 'train', 'val', 'test'."""
    source: str = ""
    """The dataset folder."""
    synthetic: bool = False
    """True for the generated demo data (a marker file in its root says so)."""

    def to(self, device: torch.device | str) -> Data:
        """A copy whose tensors live on ``device`` (uint8 stays uint8)."""
        move = {
            k: getattr(self, k).to(device, non_blocking=True)
            for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
        }
        return Data(
            **move,
            mean=self.mean,
            std=self.std,
            image_size=self.image_size,
            class_names=self.class_names,
            names=self.names,
            source=self.source,
            synthetic=self.synthetic,
        )


def load_data(config: DataConfig) -> Data:
    """Discover the layout, decode once into the cache (or reuse it), split."""
    raise NotImplementedError
