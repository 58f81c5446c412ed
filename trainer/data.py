"""Dataset bundle handed to ``fit``: decoded uint8 images and labels per split.

``load_data`` (layout discovery -> decode-once cache -> seeded split) fills it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from trainer.cache import (
    CachedImages,
    UnreadableImageWarning,
    cache_dataset,
    decode_image,
    unreadable_reason,
)
from trainer.cached_split import CachedSplit, Images
from trainer.classes import CLASS_NAMES
from trainer.config import DEFAULT_CACHE_DIR, DataConfig
from trainer.errors import UserError
from trainer.layout import discover_layout
from trainer.split import split_indices


@dataclass
class Data:
    """Images as uint8 ``(N, 1, H, W)`` and labels as int64 ``(N,)`` tensors per split.

    ``load_data`` copies each split once out of the cache into its own tensor (together
    one dataset's worth of uint8), or, streaming, leaves them in the cache file as
    :class:`~trainer.cached_split.CachedSplit` (indexing one reads those rows into a
    tensor); ``to(device)`` copies them once to an accelerator.
    """

    train_x: Images
    train_y: torch.Tensor
    val_x: Images
    val_y: torch.Tensor
    test_x: Images
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
        return replace(self, **move)


def load_data(
    config: DataConfig,
    device: torch.device | str | None = None,
    *,
    with_test: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    stream: bool | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> Data:
    """Discover the layout, decode once into the cache (or reuse it), split.

    Each split is copied out of the cache file with plain reads, a block of rows at a
    time (a memory map's touched pages would count a second time in the process's
    memory); with ``device`` (e.g. 'cuda') the splits are filled there and the host
    holds one block at a time. Labels stay on the CPU; mean and standard deviation are
    exact, over every training pixel. ``with_test=False`` (a search trial) leaves the
    held-out test images on disk: ``test_x``/``test_y`` are empty, ``names['test']``
    lists them.

    ``stream`` (CPU only) leaves every split in the cache file: batches read their rows
    as they are drawn (:class:`CachedSplit`), and no image memory is held. None streams
    a trial's data on the CPU (``with_test=False``, no ``device``), read only by ``fit``.
    ``on_progress(done, total)`` is called while the cache is built; ``on_warning(line)``
    once for each line about the data (each unreadable image left out when the cache is
    built, their count when it is reused), before any error about them.
    """
    layout = discover_layout(config.root)
    cache_dir = DEFAULT_CACHE_DIR if config.cache_dir is None else Path(config.cache_dir)
    label_of = dict(layout.items)
    cached = cache_dataset(
        layout.root, list(label_of), config.image_size, cache_dir, config.workers, on_progress
    )
    if on_warning is not None:
        for line in cached.messages:
            on_warning(line)
    labels = _labels(cached.paths, label_of, layout.root)
    split = split_indices(labels, config.val_fraction, config.test_fraction, config.split_seed)
    order = {"train": split.train, "val": split.val, "test": split.test}
    target = torch.device("cpu" if device is None else device)
    loaded = order if with_test else {**order, "test": order["test"][:0]}
    if stream is None:
        stream = target.type == "cpu" and not with_test
    images = _split_images(cached, config.image_size, loaded, target, stream)
    mean, std = pixel_mean_std(images["train"])
    return Data(
        train_x=images["train"],
        train_y=torch.from_numpy(labels[split.train]),
        val_x=images["val"],
        val_y=torch.from_numpy(labels[split.val]),
        test_x=images["test"],
        test_y=torch.from_numpy(labels[loaded["test"]]),
        mean=mean,
        std=std,
        image_size=config.image_size,
        names={name: [cached.paths[i] for i in rows] for name, rows in order.items()},
        source=str(layout.root),
        synthetic=layout.synthetic,
    )


def _labels(paths: list[str], label_of: dict[str, int], root: Path) -> np.ndarray:
    """Labels of the readable images; every class must keep at least one."""
    if not paths:
        raise UserError(f"no readable images in {root}")
    labels = np.array([label_of[p] for p in paths], dtype=np.int64)
    lost = [name for i, name in enumerate(CLASS_NAMES) if not (labels == i).any()]
    if lost:
        raise UserError(f"no readable images for class(es) {', '.join(lost)} in {root}")
    return labels


def _split_images(
    cached: CachedImages,
    size: int,
    order: dict[str, np.ndarray],
    device: torch.device,
    stream: bool,
) -> Mapping[str, Images]:
    """Each split's images: left in the cache file (``stream``) or read into tensors."""
    if not stream:
        return _read_rows(cached.file, len(cached.paths), size, order, device)
    if device.type != "cpu":
        raise ValueError(f"stream=True reads batches on the CPU, not on {device}")
    return {name: CachedSplit(cached.file, rows, size) for name, rows in order.items()}


def _read_rows(
    file: Path,
    count: int,
    size: int,
    order: dict[str, np.ndarray],
    device: torch.device,
    block: int = 1024,
) -> dict[str, torch.Tensor]:
    """Copy the rows of each split (sorted indices) from the cache file into new tensors."""
    out = {
        name: torch.empty((len(rows), 1, size, size), dtype=torch.uint8, device=device)
        for name, rows in order.items()
    }
    on_cpu = device.type == "cpu"
    buffer = np.empty((min(block, count), size, size), dtype=np.uint8)
    with open(file, "rb", buffering=0) as f:
        for start in range(0, count, block):
            stop = min(start + block, count)
            view = buffer[: stop - start]
            if f.readinto(view.data.cast("B")) != view.nbytes:
                raise UserError(f"image cache {file} is shorter than its index says; delete it")
            for name, rows in order.items():
                lo, hi = np.searchsorted(rows, [start, stop])
                if hi == lo:
                    continue
                if on_cpu:
                    out[name].numpy()[lo:hi, 0] = view[rows[lo:hi] - start]
                else:
                    out[name][lo:hi, 0].copy_(torch.from_numpy(view[rows[lo:hi] - start]))
    return out


def pixel_mean_std(images: Images) -> tuple[float, float]:
    """Mean and standard deviation of uint8 pixels, scaled to [0, 1], with exact sums.

    Sums of values and of squares are taken in 64-bit integers over blocks, so the result
    does not depend on the block size, the device or whether the images are held or
    read from the cache. An empty split gives (0.5, 0.25).
    """
    n = images.numel()
    if n == 0:
        return 0.5, 0.25
    total = squares = 0
    for chunk in _pixel_blocks(images):
        if chunk.device.type == "cpu":
            values = chunk.numpy().astype(np.uint32)
            total += int(values.sum(dtype=np.uint64))
            values *= values
            squares += int(values.sum(dtype=np.uint64))
        else:
            wide = chunk.to(torch.int64)
            total += int(wide.sum())
            squares += int((wide * wide).sum())
    mean = total / n
    var = max(squares / n - mean * mean, 0.0)
    return mean / 255.0, var**0.5 / 255.0


def _pixel_blocks(images: Images, step: int = 1 << 22) -> Iterator[torch.Tensor]:
    """The pixels of ``images`` as flat blocks of about ``step`` values."""
    if isinstance(images, CachedSplit):
        rows = max(1, step // (images.size * images.size))
        for start in range(0, len(images), rows):
            yield images[start : start + rows].reshape(-1)
        return
    flat = images.reshape(-1)
    for start in range(0, flat.numel(), step):
        yield flat[start : start + step]


def load_images(
    paths: Sequence[str | Path], image_size: int
) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Decode unlabelled images (no cache) the same way as the training images.

    Returns the ``(N, S, S)`` uint8 array of the readable ones, their paths (as given,
    as strings) and (path, reason) for each file left out, which is also warned about.
    """
    if image_size < 1:
        raise UserError(f"image_size={image_size!r}: must be >= 1")
    rows = np.empty((len(paths), image_size, image_size), dtype=np.uint8)
    kept: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path in paths:
        try:
            rows[len(kept)] = decode_image(path, image_size)
        except Exception as error:  # Pillow raises many types on malformed files
            reason = unreadable_reason(Path(path), error)
            skipped.append((str(path), reason))
            warnings.warn(f"skipped {path}: {reason}", UnreadableImageWarning, stacklevel=2)
            continue
        kept.append(str(path))
    return rows[: len(kept)].copy() if skipped else rows, kept, skipped
