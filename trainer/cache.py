"""Decode every image once into one memory-mappable uint8 file, and reuse it.

The cache of a dataset is two files in the cache folder, named by a key: ``<key>.u8``
holds the raw ``(N, S, S)`` uint8 rows (one channel), ``<key>.json`` the shape, which
inputs were kept and which were skipped and why. The key is a sha256 over the cache
format, the image size and every input's relative path, byte size and mtime, so editing,
adding or removing a file gives a new cache, while an untouched dataset is never decoded
twice.

Both files are written under a temporary name and renamed into place (json last), and one
process at a time builds a given key (``flock`` on ``<key>.lock``); others wait and then
reuse what it wrote. Lock files are left behind on purpose: deleting one that another
process is waiting on would let two builders in.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainer.errors import UserError, first_line
from trainer.layout import natural_key

CACHE_FORMAT = 1
"""Bump when decoding changes, so old caches are not reused."""

OnProgress = Callable[[int, int], None]
"""Called as ``on_progress(done, total)`` while images are decoded."""


class UnreadableImageWarning(UserWarning):
    """An image file that could not be decoded and was left out (``load_images`` warns)."""


@dataclass(frozen=True)
class CachedImages:
    """Decoded images of a dataset, as rows of a read-only memory map."""

    images: np.ndarray
    """``(N, S, S)`` uint8, read-only ``np.memmap`` (a plain empty array when N == 0)."""
    paths: list[str]
    """Relative paths of the kept images, one per row, in natural order."""
    skipped: list[tuple[str, str]]
    """(relative path, reason) of the inputs that could not be read."""
    from_cache: bool
    """True when an existing cache was reused and nothing was decoded."""
    build_seconds: float
    """Seconds the cache took to build (when it was built, possibly earlier)."""
    key: str
    file: Path
    """The ``.u8`` file behind ``images``."""
    messages: list[str]
    """One line per thing the user should hear of: each file left out when the cache is
    built, a count of them when it is reused; each missing file every time."""


def decode_image(path: str | Path, size: int) -> np.ndarray:
    """Read one image as a ``(size, size)`` uint8 grayscale array.

    Colour and palette images are converted to luminance ('L'; alpha is dropped). 16- and
    32-bit integer images are scaled to 8 bits by the smallest bit depth that holds their
    largest value (8, 10, 12, ... 16 bits), so a 12-bit radiograph stored in 16 bits keeps
    its contrast; float images in [0, 1] are scaled by 255. The image is then resized
    straight to ``size`` x ``size`` with Pillow's antialiased bilinear filter, without
    cropping: a non-square image is stretched. Raises on anything unreadable.
    """
    with Image.open(path) as img:
        img.load()
        gray = _to_gray8(img)
    if gray.size != (size, size):
        gray = gray.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def _to_gray8(img: Image.Image) -> Image.Image:
    if img.mode == "L":
        return img
    if img.mode.startswith("I") or img.mode == "F":
        values = np.asarray(img).astype(np.float64)
        top = float(values.max()) if values.size else 0.0
        if img.mode == "F" and top <= 1.0:
            scale = 255.0
        else:
            bits = max(8, int(np.ceil(top)).bit_length())
            scale = 255.0 / (2**bits - 1)
        return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
    return img.convert("L")


def unreadable_reason(path: Path, error: Exception) -> str:
    """Why a file could not be decoded, in a few words ("empty file", the decoder error)."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
    except OSError:
        pass
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    return f"corrupt image ({first_line(error)})"


def _decode_rows(
    task: tuple[str, int, int, str, int, list[str]],
) -> list[tuple[int, str]]:
    """Decode a chunk of inputs straight into their rows of the shared file."""
    file, count, size, root, start, rel_paths = task
    rows = np.memmap(file, dtype=np.uint8, mode="r+", shape=(count, size, size))
    failures = []
    for offset, rel in enumerate(rel_paths):
        path = Path(root) / rel
        try:
            rows[start + offset] = decode_image(path, size)
        except Exception as error:  # Pillow raises many types on malformed files
            failures.append((start + offset, unreadable_reason(path, error)))
    rows.flush()
    del rows
    return failures


def _pool_context() -> multiprocessing.context.BaseContext:
    # Forked workers start at once and share the parent's imports; a fresh interpreter
    # (spawn, forkserver) would import torch through the trainer package in every worker.
    # The workers only run Pillow and NumPy, never torch, so fork is safe here.
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


def cache_key(entries: Sequence[tuple[str, int, int]], image_size: int) -> str:
    """sha256 over the cache format, the image size and (relative path, bytes, mtime_ns)."""
    material = json.dumps([CACHE_FORMAT, int(image_size), [list(e) for e in entries]])
    return hashlib.sha256(material.encode()).hexdigest()


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cache_dataset(
    root: str | Path,
    rel_paths: Sequence[str],
    image_size: int,
    cache_dir: str | Path,
    workers: int | None = None,
    on_progress: OnProgress | None = None,
) -> CachedImages:
    """Decode ``root/<rel_path>`` images once into ``cache_dir``, or reuse that cache.

    Rows follow the natural order of the paths, whatever order they are given in.
    Unreadable files are left out, listed in ``skipped`` and told of in ``messages``
    (each by name when the cache is built now, as a count when it is reused), which the
    caller shows as it likes. ``workers`` processes decode
    (None: all cores); while they do, ``on_progress(done, total)`` is called after each
    chunk of images (never when an existing cache is reused).
    """
    if image_size < 1:
        raise UserError(f"image_size={image_size}: must be >= 1")
    if len(set(rel_paths)) != len(rel_paths):
        raise ValueError("rel_paths holds duplicates")
    root = Path(root)
    cache_dir = Path(cache_dir).expanduser()
    entries, missing = _stat_inputs(root, rel_paths)
    key = cache_key(entries, image_size)
    u8_path, json_path = cache_dir / f"{key}.u8", cache_dir / f"{key}.json"
    paths = [e[0] for e in entries]

    meta = _read_meta(u8_path, json_path, image_size)
    from_cache = meta is not None
    if meta is None:
        build = _Build(root, paths, image_size, u8_path, json_path, workers, on_progress)
        meta, from_cache = _build_once(build)
    messages = [f"skipped {rel}: {reason}" for rel, reason in missing]
    if not from_cache:
        messages += [f"skipped {rel}: {reason}" for rel, reason in meta["skipped"]]
    elif meta["skipped"]:
        messages.append(
            f"{len(meta['skipped'])} unreadable image(s) left out of the cached dataset "
            f"(listed in {json_path})"
        )
    skipped = sorted(missing + [tuple(s) for s in meta["skipped"]], key=lambda s: natural_key(s[0]))
    return CachedImages(
        images=_open_rows(u8_path, meta["shape"][0], image_size),
        paths=[paths[i] for i in meta["kept"]],
        skipped=skipped,
        from_cache=from_cache,
        build_seconds=float(meta["build_seconds"]),
        key=key,
        file=u8_path,
        messages=messages,
    )


def _stat_inputs(
    root: Path, rel_paths: Sequence[str]
) -> tuple[list[tuple[str, int, int]], list[tuple[str, str]]]:
    """(relative path, bytes, mtime_ns) of each readable input in natural order, and the rest."""
    entries, missing = [], []
    for rel in sorted(rel_paths, key=natural_key):
        try:
            st = os.stat(root / rel)
        except OSError as error:
            missing.append((rel, f"cannot read file ({error.strerror})"))
            continue
        entries.append((rel, st.st_size, st.st_mtime_ns))
    return entries, missing


def _open_rows(u8_path: Path, count: int, size: int) -> np.ndarray:
    """The cache file as a read-only ``(count, size, size)`` array."""
    if count:
        return np.memmap(u8_path, dtype=np.uint8, mode="r", shape=(count, size, size))
    images = np.zeros((0, size, size), dtype=np.uint8)
    images.flags.writeable = False
    return images


def _read_meta(u8_path: Path, json_path: Path, image_size: int) -> dict[str, Any] | None:
    """The cache's metadata if both files are complete and agree; None otherwise."""
    try:
        meta: dict[str, Any] = json.loads(json_path.read_text())
        shape = meta["shape"]
        if meta["format"] != CACHE_FORMAT or shape[1:] != [image_size, image_size]:
            return None
        if u8_path.stat().st_size != shape[0] * image_size * image_size:
            return None
        if len(meta["kept"]) != shape[0]:
            return None
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return meta


@dataclass(frozen=True)
class _Build:
    """One cache to build: its inputs, its files, and how."""

    root: Path
    paths: list[str]
    """Relative paths of the inputs, in natural order: row i decodes ``paths[i]``."""
    size: int
    u8_path: Path
    json_path: Path
    workers: int | None
    on_progress: OnProgress | None


def _build_once(build: _Build) -> tuple[dict[str, Any], bool]:
    """Build the cache holding its key's lock, or take the one another process built meanwhile.

    Returns the metadata and whether it came from a cache that was already there.
    """
    folder = build.u8_path.parent
    lock_path = folder / f"{build.u8_path.stem}.lock"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = open(lock_path, "a+")  # noqa: SIM115 - held across the build
    except OSError as error:
        raise UserError(f"cache folder {folder} is not writable: {error.strerror}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process builds this key
        meta = _read_meta(build.u8_path, build.json_path, build.size)
        if meta is not None:
            return meta, True
        meta = _build(build)
    return meta, False


def _build(build: _Build) -> dict[str, Any]:
    """Decode every input into the cache files and return their metadata; needs the lock."""
    started = time.perf_counter()
    u8_path, size, n = build.u8_path, build.size, len(build.paths)
    for stale in u8_path.parent.glob(f"{u8_path.name}.tmp-*"):
        stale.unlink(missing_ok=True)  # left by a builder that died; we hold the lock
    tmp = u8_path.with_name(f"{u8_path.name}.tmp-{os.getpid()}")
    workers = default_workers() if build.workers is None else max(1, int(build.workers))
    try:
        _reserve(tmp, n * size * size)
        failures = _decode_all(build, tmp, workers)
        kept = [i for i in range(n) if i not in failures]
        if failures:
            _drop_rows(tmp, n, size, kept)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, u8_path)
    meta = {
        "format": CACHE_FORMAT,
        "image_size": size,
        "shape": [len(kept), size, size],
        "built_from": str(build.root),
        "kept": kept,
        "skipped": [[build.paths[i], failures[i]] for i in sorted(failures)],
        "build_seconds": round(time.perf_counter() - started, 3),
        "workers": workers,
    }
    tmp_json = build.json_path.with_name(f"{build.json_path.name}.tmp-{os.getpid()}")
    tmp_json.write_text(json.dumps(meta))
    os.replace(tmp_json, build.json_path)
    return meta


def _reserve(tmp: Path, nbytes: int) -> None:
    """Create ``tmp`` with ``nbytes`` of disk space reserved, or fail with one line."""
    with open(tmp, "wb") as f:
        try:
            # Reserve the space now: running out of disk inside a memory map is a crash.
            os.posix_fallocate(f.fileno(), 0, max(nbytes, 1))
        except OSError as error:
            if error.errno in (28, 122):  # ENOSPC, EDQUOT
                raise UserError(
                    f"not enough disk space in {tmp.parent} for the image cache "
                    f"({nbytes / 1e9:.2f} GB)"
                ) from None
        f.truncate(nbytes)


def _decode_all(build: _Build, tmp: Path, workers: int) -> dict[int, str]:
    """Decode every input into its row of ``tmp``; row -> reason for the unreadable ones."""
    n = len(build.paths)
    chunk = int(min(512, max(16, n // (workers * 4) + 1)))
    tasks = [
        (str(tmp), n, build.size, str(build.root), start, build.paths[start : start + chunk])
        for start in range(0, n, chunk)
    ]
    failures: dict[int, str] = {}
    done = 0

    def finished(task_failures: list[tuple[int, str]], images: int) -> None:
        nonlocal done
        failures.update(task_failures)
        done += images
        if build.on_progress is not None:
            build.on_progress(done, n)

    if build.on_progress is not None and n:
        build.on_progress(0, n)
    _run_tasks(tasks, workers, finished)
    return failures


def _run_tasks(
    tasks: list[tuple[str, int, int, str, int, list[str]]],
    workers: int,
    finished: Callable[[list[tuple[int, str]], int], None],
) -> None:
    """Run the decoding tasks here or in a pool; ``finished(failures, images)`` after each."""
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            finished(_decode_rows(task), len(task[-1]))
        return
    with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=_pool_context()) as pool:
        futures = {pool.submit(_decode_rows, task): len(task[-1]) for task in tasks}
        for future in as_completed(futures):
            finished(future.result(), futures[future])


def _drop_rows(tmp: Path, n: int, size: int, kept: list[int]) -> None:
    """Move the ``kept`` rows of ``tmp`` to its front and cut the file after them."""
    rows = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(n, size, size))
    for new, old in enumerate(kept):  # kept is ascending, so moving rows down is safe
        if new != old:
            rows[new] = rows[old]
    rows.flush()
    del rows
    os.truncate(tmp, len(kept) * size * size)
