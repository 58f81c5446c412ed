"""Tiny image files and dataset folders for the data-pipeline tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

CANONICAL = {0: "covid", 1: "lung_opacity", 2: "pneumonia", 3: "normal"}
DATABASE = {0: "COVID", 1: "Lung_Opacity", 2: "Viral Pneumonia", 3: "Normal"}


def write_image(
    path: Path, size: tuple[int, int] = (20, 20), seed: int = 0, mode: str = "L"
) -> Path:
    """A small random image; mode 'L', 'RGB', 'RGBA', 'P' or 'I;16' (16-bit)."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        img = Image.fromarray(rng.integers(0, 4096, (h, w), dtype=np.uint16))
    elif mode in ("RGB", "RGBA"):
        img = Image.fromarray(rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8), mode)
    else:
        img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def png_bytes(size: tuple[int, int] = (20, 20), seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_awkward(folder: Path) -> dict[str, str]:
    """The broken files real downloads carry, named by what they are."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.png").write_bytes(png_bytes((40, 40), seed=9)[:120])
    (folder / "text.png").write_text("this is not an image\n")
    return {"empty": "empty.png", "truncated": "truncated.png", "text": "text.png"}


def write_debris(folder: Path) -> list[str]:
    """OS debris that must be skipped, never read."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [".DS_Store", "Thumbs.db", "desktop.ini", "._COVID-1.png", ".hidden.png"]
    for name in names:
        (folder / name).write_bytes(b"\x00\x01junk")
    return names


def make_folder_per_class(
    root: Path, per_class: int = 3, names: dict[int, str] | None = None, size: int = 20
) -> Path:
    """``root/<class>/<class>-<i>.png`` for all four classes."""
    names = CANONICAL if names is None else names
    for index, name in names.items():
        for i in range(per_class):
            write_image(root / name / f"{name}-{i + 1}.png", (size, size), seed=100 * index + i)
    return root


def make_competition(root: Path, per_class: int = 3, tests: int = 12) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/test_<i>.png``."""
    make_folder_per_class(root / "train", per_class)
    for i in range(tests):
        write_image(root / "test" / f"test_{i}.png", seed=1000 + i)
    return root


def make_database(root: Path, per_class: int = 3) -> Path:
    """``root/<Class>/images/*.png`` with ``masks/`` beside and metadata sheets at the root."""
    for index, name in DATABASE.items():
        for i in range(per_class):
            stem = f"{name.replace(' ', '_')}-{i + 1}.png"
            write_image(root / name / "images" / stem, seed=100 * index + i)
            write_image(root / name / "masks" / stem, seed=7)
        (root / f"{name}.metadata.xlsx").write_bytes(b"PK\x03\x04 not really a sheet")
    (root / "README.md.txt").write_text("readme")
    return root
