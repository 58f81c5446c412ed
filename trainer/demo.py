"""Synthetic chest radiographs for the demo, in the public database's folder layout.

The real data cannot ship, so the demo trains on generated images that carry the
radiographic signs of the four classes (ground-glass patches, consolidation,
perihilar streaks, clear lungs) on varied anatomy and acquisition. Every image is
synthetic, and the marker file ``SYNTHETIC.txt`` in the dataset root says so.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from trainer._radiograph import render_case
from trainer.classes import CLASS_NAMES
from trainer.config import DEMO_SIZES, SEED_LIMIT, DemoConfig
from trainer.errors import UserError
from trainer.layout import SYNTHETIC_MARKER

__all__ = [
    "DATABASE_FOLDERS",
    "GENERATOR_VERSION",
    "SYNTHETIC_MARKER",
    "class_counts",
    "contact_sheet",
    "is_demo_dataset",
    "render_case",
    "write_demo_dataset",
]

GENERATOR_VERSION = 2
"""Bumped whenever the same seed would draw different images."""

_MARKER_HEADLINE = "SYNTHETIC DATA: generated chest X-ray images, not real radiographs."

#: Class folders of the public COVID-19 Radiography Database, in its order, with the
#: competition index of each and the database's image count.
DATABASE_FOLDERS: tuple[tuple[str, int, int], ...] = (
    ("COVID", CLASS_NAMES.index("covid"), 3616),
    ("Lung_Opacity", CLASS_NAMES.index("lung_opacity"), 6012),
    ("Normal", CLASS_NAMES.index("normal"), 10192),
    ("Viral Pneumonia", CLASS_NAMES.index("pneumonia"), 1345),
)


# --------------------------------------------------------------------------- counts and files


def class_counts(n: int) -> dict[str, int]:
    """Images per database folder for ``n`` images: the real proportions, at least one each.

    Largest-remainder rounding keeps every count within one of ``n`` times the real share.
    """
    if n < len(DATABASE_FOLDERS):
        raise ValueError(f"n must be at least {len(DATABASE_FOLDERS)}, got {n}")
    total = sum(count for _, _, count in DATABASE_FOLDERS)
    exact = [n * count / total for _, _, count in DATABASE_FOLDERS]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    for i, c in enumerate(counts):
        if c == 0:
            counts[i] = 1
            counts[counts.index(max(counts))] -= 1
    return {folder: c for (folder, _, _), c in zip(DATABASE_FOLDERS, counts, strict=True)}


def _plan(n: int) -> list[tuple[str, int, int]]:
    """(folder, label, number within folder) for image 0..n-1, in database order."""
    plan: list[tuple[str, int, int]] = []
    labels = {folder: label for folder, label, _ in DATABASE_FOLDERS}
    for folder, count in class_counts(n).items():
        plan.extend((folder, labels[folder], k) for k in range(1, count + 1))
    return plan


def _image_path(out: Path, folder: str, number: int) -> Path:
    return out / folder / "images" / f"{folder}-{number}.png"


def is_demo_dataset(root: Path) -> bool:
    """True if ``root`` holds a marker file written by this generator."""
    marker = Path(root) / SYNTHETIC_MARKER
    try:
        with marker.open(encoding="utf-8") as f:
            return f.readline().strip() == _MARKER_HEADLINE
    except (OSError, UnicodeDecodeError):
        return False


def _marker_text(n: int, size: int, seed: int, counts: dict[str, int]) -> str:
    lines = [
        _MARKER_HEADLINE,
        "",
        "Every image below this folder was drawn by a program (trainer.demo) to demo the",
        "training code. None is a radiograph of a person; do not use them for any medical",
        "purpose. The layout mimics the public COVID-19 Radiography Database.",
        "",
        f"generator: trainer.demo version {GENERATOR_VERSION}",
        f"seed: {seed}",
        f"n: {n}",
        f"size: {size}",
    ]
    lines += [f"count {folder}: {count}" for folder, count in counts.items()]
    return "\n".join(lines) + "\n"


def _prepare_folder(out: Path) -> None:
    """Make ``out`` ready: create it, or clear a previous demo dataset; refuse anything else."""
    if out.exists() and not out.is_dir():
        raise UserError(f"demo dataset folder {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not is_demo_dataset(out):
            raise UserError(
                f"refusing to write the demo dataset into {out}: the folder is not empty "
                f"and holds no {SYNTHETIC_MARKER} from an earlier demo dataset"
            )
        for folder, _, _ in DATABASE_FOLDERS:
            shutil.rmtree(out / folder, ignore_errors=True)
        (out / SYNTHETIC_MARKER).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _image_seed(seed: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(entropy=seed, spawn_key=(index,))


def _write_range(out: str, n: int, size: int, seed: int, start: int, stop: int) -> int:
    """Render and save images start..stop-1 of the plan; runs in a worker process."""
    plan = _plan(n)
    for index in range(start, stop):
        folder, label, number = plan[index]
        rng = np.random.default_rng(_image_seed(seed, index))
        pixels = render_case(rng, label, size)
        # Fastest zlib level: a tenth of the render time saved for files ~15 % larger.
        path = _image_path(Path(out), folder, number)
        Image.fromarray(pixels, mode="L").save(path, compress_level=1)
    return stop - start


def write_demo_dataset(
    out: Path,
    n: int = DemoConfig.images,
    size: int = DemoConfig.size,
    seed: int = DemoConfig.seed,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write ``n`` synthetic chest X-ray PNGs in the public database's layout under ``out``.

    Folders ``COVID``, ``Lung_Opacity``, ``Normal`` and ``Viral Pneumonia``, each with
    ``images/<folder>-<k>.png`` (8-bit grayscale, ``size`` pixels square), in the real
    class proportions, plus ``SYNTHETIC.txt`` saying the data are synthetic. The same seed
    gives byte-identical files whatever the number of worker processes (None: all cores).
    A previous demo dataset in ``out`` is replaced (its class folders and marker; files it
    did not write stay); any other non-empty folder is refused with a ``UserError``.
    ``on_progress(done, n)`` is called as images are written.

    Returns ``{"counts": {folder: images}, "seconds": wall time}``.
    """
    check_demo_arguments(out, n, size, seed, workers)
    started = time.perf_counter()
    out = Path(out)
    counts = class_counts(n)
    try:
        _prepare_folder(out)
        # The marker goes first so that an interrupted run is still recognised and replaced.
        marker = _marker_text(n, size, seed, counts)
        (out / SYNTHETIC_MARKER).write_text(marker, encoding="utf-8")
        for folder in counts:
            (out / folder / "images").mkdir(parents=True, exist_ok=True)
        _write_images(out, n, size, seed, min(workers or os.cpu_count() or 1, n), on_progress)
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        raise UserError(f"cannot write the demo dataset{where}: {error.strerror}") from None
    return {"counts": counts, "seconds": time.perf_counter() - started}


def check_demo_arguments(
    out: str | os.PathLike[str],
    n: int,
    size: int,
    seed: int,
    workers: int | None,
    *,
    as_flags: bool = False,
) -> None:
    """One line (:class:`UserError`) for the first argument of :func:`write_demo_dataset`
    that cannot work, checked before anything is written: ``n``, ``size``, ``seed``,
    ``workers``, and ``out`` (a file, a path under a file, a folder that cannot be made or
    written, a non-empty folder that is not an earlier demo dataset). ``as_flags`` names
    them as the command line does (``--n 0``) rather than as arguments (``n=0``)."""

    def bad(name: str, value: object, why: str) -> UserError:
        return UserError(f"--{name} {value}: {why}" if as_flags else f"{name}={value!r}: {why}")

    if n < len(DATABASE_FOLDERS):
        raise bad("n", n, f"the demo needs at least {len(DATABASE_FOLDERS)} images")
    low, high = DEMO_SIZES
    if not low <= size <= high:
        raise bad("size", size, f"must be between {low} and {high} pixels")
    if not 0 <= seed < SEED_LIMIT:
        raise bad("seed", seed, "must be in [0, 2**32)")
    if workers is not None and workers < 1:
        raise bad("workers", workers, "must be at least 1")
    why = _out_problem(Path(out))
    if why is not None:
        raise bad("out", out, why) if as_flags else UserError(f"demo dataset folder {out} {why}")


def _out_problem(out: Path) -> str | None:
    if os.path.lexists(out) and not out.is_dir():
        return "exists and is not a folder"
    if out.is_dir():
        if any(out.iterdir()) and not is_demo_dataset(out):
            return (
                f"is not empty and holds no {SYNTHETIC_MARKER} from an earlier demo "
                "dataset: refusing to write into it"
            )
        if not os.access(out, os.W_OK | os.X_OK):
            return "cannot be written to"
        return None
    parent = out.parent
    while not os.path.lexists(parent) and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be made: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be made: {parent} cannot be written to"
    return None


def _write_images(
    out: Path,
    n: int,
    size: int,
    seed: int,
    workers: int,
    on_progress: Callable[[int, int], None] | None,
) -> None:
    """Render all ``n`` images in chunks, here or in ``workers`` processes."""
    chunk = max(1, min(200, math.ceil(n / (4 * workers))))
    ranges = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    report = on_progress or (lambda _done, _total: None)
    done = 0
    report(done, n)
    if workers == 1:
        for a, b in ranges:
            done += _write_range(str(out), n, size, seed, a, b)
            report(done, n)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_write_range, str(out), n, size, seed, a, b) for a, b in ranges]
        for future in futures:
            done += future.result()
            report(done, n)


def contact_sheet(out_png: Path, seed: int = 0, per_class: int = 6, size: int = 128) -> Path:
    """Save a labelled grid of synthetic examples as a PNG: one row per class, in index order."""
    margin, header = 96, 18
    pad = 2
    tile = size + 2 * pad
    sheet = Image.new("L", (margin + per_class * tile, header + len(CLASS_NAMES) * tile), 255)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((4, 3), "SYNTHETIC demo images (not real radiographs)", fill=0, font=font)
    for label, name in enumerate(CLASS_NAMES):
        top = header + label * tile
        draw.text((4, top + tile // 2 - 6), f"{label} {name}", fill=0, font=font)
        for k in range(per_class):
            rng = np.random.default_rng(_image_seed(seed, 1000 * label + k))
            image = Image.fromarray(render_case(rng, label, size), mode="L")
            sheet.paste(image, (margin + k * tile + pad, top + pad))
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out_png)
    return out_png
