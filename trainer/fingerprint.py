"""A dataset's identity by content: the same images wherever a machine mounts them.

A search that spans machines sees one dataset under several absolute paths; what must
match is what is read: each labelled image's path relative to the dataset root, its size
in bytes and its class, and the unlabelled test images. Reading sizes (not bytes) keeps
this a directory listing, seconds even for tens of thousands of images on a network disk.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from trainer.classes import CLASS_NAMES
from trainer.layout import discover_layout


@dataclass(frozen=True)
class DatasetFingerprint:
    """What identifies a dataset, whatever folder it is mounted at."""

    digest: str
    """SHA-256 (hex, 16 characters) of every image's relative path, size and class."""
    class_counts: dict[str, int]
    """Labelled images per class name, in the competition's class order."""
    test_images: int = 0
    """Unlabelled images of the competition's ``test/`` folder."""


def dataset_fingerprint(path: str | os.PathLike[str]) -> DatasetFingerprint:
    """The fingerprint of the dataset at ``path`` (any layout :func:`discover_layout` reads).

    Raises :class:`~trainer.errors.UserError` when ``path`` holds no dataset layout.
    """
    layout = discover_layout(Path(path))
    digest = hashlib.sha256()
    counts = dict.fromkeys(CLASS_NAMES, 0)
    for rel, label in layout.items:
        size = (layout.root / rel).stat().st_size
        digest.update(f"{rel}\t{size}\t{label}\n".encode())
        counts[CLASS_NAMES[label]] += 1
    for rel in layout.test_items:
        size = (layout.root / rel).stat().st_size
        digest.update(f"test\t{rel}\t{size}\n".encode())
    return DatasetFingerprint(
        digest=digest.hexdigest()[:16],
        class_counts=counts,
        test_images=len(layout.test_items),
    )
