"""Training and evaluation batches from uint8 image tensors that already live on the device.

Every step is a batched tensor operation (index, flip, shift, normalise); there is no
per-image Python and no worker process. All randomness of an epoch comes from one
generator seeded by (seed, epoch), so a run resumed at an epoch boundary sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from trainer.cached_split import Images
from trainer.config import TrainConfig


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator on ``device`` whose stream depends only on ``seed`` and ``epoch``."""
    words = np.random.SeedSequence([seed % 2**64, epoch % 2**64]).generate_state(2, np.uint32)
    generator = torch.Generator(device=torch.device(device))
    generator.manual_seed((int(words[0]) << 31) | (int(words[1]) >> 1))
    return generator


def batches_per_epoch(n: int, batch_size: int) -> int:
    """Training batches per epoch: full batches only, or one batch if ``n < batch_size``.

    Dropping the short last batch keeps steps per epoch constant (for the schedule) and
    never hands batch norm a batch of one.
    """
    return max(1, n // batch_size)


def epoch_order(
    labels: torch.Tensor, generator: torch.Generator, *, balanced: bool = False
) -> torch.Tensor:
    """Indices of one epoch: a permutation, or a class-balanced draw of the same length.

    The balanced draw samples with replacement, each image with probability proportional
    to the inverse frequency of its class, so every class is drawn about equally often.
    """
    n = labels.numel()
    if not balanced:
        return torch.randperm(n, generator=generator, device=labels.device)
    counts = torch.bincount(labels)
    weights = counts.clamp(min=1).double().reciprocal()[labels]
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of a batch left-right with probability 1/2."""
    mask = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(mask.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def translate(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Shift each image of ``x`` (B, C, H, W) by ``shifts`` (2, B) = (rows, columns).

    Equal to reflect-padding by the largest shift and cropping each image at its own
    offset, but done as two gathers on the unpadded batch; works for any dtype.
    """
    b, c, h, w = x.shape
    rows = _reflect(torch.arange(h, device=x.device) + shifts[0, :, None], h)
    cols = _reflect(torch.arange(w, device=x.device) + shifts[1, :, None], w)
    x = x.gather(2, rows[:, None, :, None].expand(b, c, h, w))
    return x.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_translate(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to ``padding`` pixels per axis (reflect padding, then crop)."""
    if padding == 0:
        return x
    if padding >= min(x.shape[-2:]):
        raise ValueError(f"padding={padding}: must be smaller than the image side {x.shape[-1]}")
    shifts = torch.randint(
        -padding, padding + 1, (2, x.shape[0]), generator=generator, device=x.device
    )
    return translate(x, shifts)


def normalize(
    x: torch.Tensor, mean: float, std: float, *, channels_last: bool = False
) -> torch.Tensor:
    """uint8 pixels to float32 ``(x / 255 - mean) / std``, optionally in NHWC layout."""
    out = x.float().mul_(1.0 / (255.0 * std)).sub_(mean / std)
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def train_batches(
    x: Images,
    y: torch.Tensor,
    config: TrainConfig,
    epoch: int,
    *,
    mean: float,
    std: float,
    channels_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Augmented, normalised training batches of epoch ``epoch`` (1-based) on ``x``'s device."""
    generator = epoch_generator(config.seed, epoch, x.device)
    order = epoch_order(y, generator, balanced=config.balanced_sampling)
    size = min(config.batch_size, order.numel())
    for step in range(batches_per_epoch(order.numel(), config.batch_size)):
        index = order[step * size : (step + 1) * size]
        images = x[index]
        if config.flip:
            images = random_flip(images, generator)
        images = random_translate(images, config.crop_padding, generator)
        yield normalize(images, mean, std, channels_last=channels_last), y[index]


def eval_batches(
    x: Images,
    batch_size: int,
    *,
    mean: float,
    std: float,
    channels_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Normalised batches of ``x`` in order, without augmentation; the last may be short."""
    for start in range(0, x.shape[0], batch_size):
        yield normalize(x[start : start + batch_size], mean, std, channels_last=channels_last)


def _reflect(index: torch.Tensor, n: int) -> torch.Tensor:
    # Mirror without repeating the edge pixel, as torch's 'reflect' padding does.
    index = index.abs()
    return torch.where(index > n - 1, 2 * (n - 1) - index, index)
