"""The original team's input pipeline, as the CPU and GPU benchmarks both reproduce it."""

from __future__ import annotations

from torchvision import transforms

# The original team's normalisation constants (grayscale pixel statistics of their data).
ORIGINAL_MEAN, ORIGINAL_STD = 0.5501, 0.1796


def original_transform(size: int) -> transforms.Compose:
    """Per-image PIL transforms to a 3-channel float tensor, applied on every access."""
    return transforms.Compose(
        [
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([ORIGINAL_MEAN] * 3, [ORIGINAL_STD] * 3),
        ]
    )
