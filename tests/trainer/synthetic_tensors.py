"""Small synthetic image tensors with a learnable pattern per class, for trainer tests.

Each image is a noisy gray background with one class sign at a random place:
covid = horizontal stripes, lung_opacity = vertical stripes, pneumonia = a bright disc,
normal = nothing. The sign's strength varies, so weak ones are hard to see.
"""

from __future__ import annotations

import numpy as np
import torch

from trainer.data import Data


def synthetic_images(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images ``(n, 1, size, size)`` and int64 labels, balanced over the four classes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 4
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size), dtype=np.float32)
    patch = size // 2
    for i, label in enumerate(labels):
        image = rng.uniform(90, 140) + rng.normal(0, 18, (size, size))
        strength = rng.uniform(25, 60)
        top, left = rng.integers(0, size - patch, 2)
        inside = (yy >= top) & (yy < top + patch) & (xx >= left) & (xx < left + patch)
        if label == 0:
            image += strength * inside * np.sign(np.sin(yy * np.pi / 2))
        elif label == 1:
            image += strength * inside * np.sign(np.sin(xx * np.pi / 2))
        elif label == 2:
            radius = patch / 2
            disc = (yy - top - radius) ** 2 + (xx - left - radius) ** 2 < radius**2
            image += 1.5 * strength * disc
        images[i] = image
    pixels = np.clip(images, 0, 255).astype(np.uint8)[:, None]
    return torch.from_numpy(pixels), torch.from_numpy(labels.astype(np.int64))


def synthetic_data(n_train: int = 400, n_val: int = 200, size: int = 32, seed: int = 0) -> Data:
    """A synthetic ``Data`` bundle with train, val and a small test split."""
    x, y = synthetic_images(n_train + n_val + 8, size, seed)
    train_x, val_x, test_x = x[:n_train], x[n_train : n_train + n_val], x[n_train + n_val :]
    train_y, val_y, test_y = y[:n_train], y[n_train : n_train + n_val], y[n_train + n_val :]
    scaled = train_x.float() / 255
    return Data(
        train_x=train_x,
        train_y=train_y,
        val_x=val_x,
        val_y=val_y,
        test_x=test_x,
        test_y=test_y,
        mean=float(scaled.mean()),
        std=float(scaled.std()),
        image_size=size,
        source="synthetic tensors",
        synthetic=True,
    )
