"""The decode-once cache: reuse, invalidation, skipped files, parallel and concurrent builds."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import trainer.cache as cache_module
from tests.trainer._imagefiles import make_folder_per_class, write_awkward, write_image
from trainer.cache import cache_dataset, decode_image
from trainer.errors import UserError
from trainer.layout import discover_layout


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, list[str]]:
    root = make_folder_per_class(tmp_path / "data", per_class=3, size=24)
    return root, [rel for rel, _ in discover_layout(root).items]


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every decode done in this process (workers=1 decodes in-process)."""
    calls: list[str] = []
    real = cache_module.decode_image

    def counting(path: str | Path, size: int) -> np.ndarray:
        calls.append(str(path))
        return real(path, size)

    monkeypatch.setattr(cache_module, "decode_image", counting)
    return calls


def test_second_call_decodes_nothing(
    dataset: tuple[Path, list[str]], tmp_path: Path, decode_calls: list[str]
) -> None:
    root, paths = dataset
    first = cache_dataset(root, paths, 16, tmp_path / "cache", workers=1)
    assert len(decode_calls) == len(paths)
    assert first.from_cache is False
    decode_calls.clear()
    second = cache_dataset(root, paths, 16, tmp_path / "cache", workers=1)
    assert decode_calls == []
    assert second.from_cache is True
    assert second.key == first.key
    assert second.build_seconds == first.build_seconds  # recorded at build time
    assert np.array_equal(np.asarray(second.images), np.asarray(first.images))
    assert isinstance(second.images, np.memmap)
    with pytest.raises(ValueError):
        second.images[0, 0, 0] = 1  # read-only


def test_rows_are_the_decoded_images_in_natural_order(
    dataset: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, paths = dataset
    cached = cache_dataset(root, paths[::-1], 16, tmp_path / "cache", workers=1)
    assert cached.paths == paths  # order of the input does not matter
    assert cached.images.shape == (len(paths), 16, 16)
    for row, rel in enumerate(cached.paths):
        assert np.array_equal(cached.images[row], decode_image(root / rel, 16))


@pytest.mark.parametrize("change", ["touch", "rewrite", "add", "remove", "size"])
def test_content_change_gives_a_new_key(
    dataset: tuple[Path, list[str]], tmp_path: Path, decode_calls: list[str], change: str
) -> None:
    root, paths = dataset
    first = cache_dataset(root, paths, 16, tmp_path / "cache", workers=1)
    size = 16
    target = root / paths[0]
    if change == "touch":
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    elif change == "rewrite":
        write_image(target, (24, 24), seed=999)
    elif change == "add":
        write_image(root / "covid" / "covid-99.png", seed=99)
        paths = [*paths, "covid/covid-99.png"]
    elif change == "remove":
        paths = paths[1:]
    else:
        size = 12
    decode_calls.clear()
    again = cache_dataset(root, paths, size, tmp_path / "cache", workers=1)
    assert again.key != first.key
    assert again.from_cache is False
    assert len(decode_calls) == len(paths)
    assert again.images.shape == (len(paths), size, size)
    if change == "rewrite":
        assert np.array_equal(again.images[0], decode_image(target, 16))
        assert not np.array_equal(again.images[0], first.images[0])


def test_unreadable_files_are_skipped_named_and_counted(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path / "data", per_class=2, size=24)
    broken = write_awkward(root / "normal")
    paths = [rel for rel, _ in discover_layout(root).items]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # told in messages, not as Python warnings
        cached = cache_dataset(root, paths, 16, tmp_path / "cache", workers=1)
    assert len(cached.messages) == 3  # one line per unreadable file
    for name in broken.values():
        assert sum(f"normal/{name}" in message for message in cached.messages) == 1
    skipped = dict(cached.skipped)
    assert set(skipped) == {f"normal/{name}" for name in broken.values()}
    assert skipped["normal/empty.png"] == "empty file"
    assert len(cached.paths) == len(paths) - 3 == cached.images.shape[0]
    # After the broken rows are dropped, every row still holds its own image.
    for row, rel in enumerate(cached.paths):
        assert np.array_equal(cached.images[row], decode_image(root / rel, 16))
    meta = json.loads((tmp_path / "cache" / f"{cached.key}.json").read_text())
    assert meta["shape"] == [len(cached.paths), 16, 16]
    assert [p for p, _ in meta["skipped"]] == sorted(skipped)
    assert [paths[i] for i in meta["kept"]] == cached.paths

    again = cache_dataset(root, paths, 16, tmp_path / "cache", workers=1)
    assert again.from_cache is True
    assert again.skipped == cached.skipped
    assert len(again.messages) == 1 and "3 unreadable image(s)" in again.messages[0]  # a count


def test_parallel_build_equals_serial_build(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path / "data", per_class=10, size=24)
    write_awkward(root / "covid")  # broken rows in the middle of the first chunks
    paths = [rel for rel, _ in discover_layout(root).items]
    serial = cache_dataset(root, paths, 16, tmp_path / "one", workers=1)
    parallel = cache_dataset(root, paths, 16, tmp_path / "two", workers=2)
    assert parallel.key == serial.key
    assert parallel.paths == serial.paths
    assert parallel.skipped == serial.skipped
    assert np.array_equal(np.asarray(parallel.images), np.asarray(serial.images))


def _build_in_child(root: Path, paths: list[str], cache_dir: Path, barrier, queue) -> None:
    real = cache_module.decode_image

    def slow(path: str | Path, size: int) -> np.ndarray:
        time.sleep(0.02)  # keeps the build open long enough for the other process to arrive
        return real(path, size)

    cache_module.decode_image = slow
    barrier.wait()
    cached = cache_dataset(root, paths, 16, cache_dir, workers=1)
    digest = hashlib.sha256(np.asarray(cached.images).tobytes()).hexdigest()
    queue.put((cached.from_cache, cached.key, digest, cached.paths))


def test_two_processes_build_one_consistent_cache(
    dataset: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, paths = dataset
    cache_dir = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    workers = [
        ctx.Process(target=_build_in_child, args=(root, paths, cache_dir, barrier, queue))
        for _ in range(2)
    ]
    for process in workers:
        process.start()
    results = [queue.get(timeout=60) for _ in workers]
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert sorted(r[0] for r in results) == [False, True]  # one built, the other reused
    assert results[0][1:] == results[1][1:]  # same key, same bytes, same rows
    key = results[0][1]
    assert sorted(p.name for p in cache_dir.iterdir()) == [
        f"{key}.json",
        f"{key}.lock",
        f"{key}.u8",
    ]


def test_stale_temporary_file_is_removed(dataset: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, paths = dataset
    key = cache_dataset(root, paths, 16, tmp_path / "first", workers=1).key
    cache_dir = tmp_path / "second"
    cache_dir.mkdir()
    stale = cache_dir / f"{key}.u8.tmp-999999"
    stale.write_bytes(b"half written")
    cached = cache_dataset(root, paths, 16, cache_dir, workers=1)
    assert not stale.exists()
    assert cached.from_cache is False


def test_damaged_cache_is_rebuilt(dataset: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, paths = dataset
    first = cache_dataset(root, paths, 16, tmp_path / "cache", workers=1)
    expected = np.asarray(first.images).copy()
    os.truncate(first.file, 10)  # as if the disk had lost the end of the file
    again = cache_dataset(root, paths, 16, tmp_path / "cache", workers=1)
    assert again.from_cache is False
    assert np.array_equal(np.asarray(again.images), expected)


def test_unusable_cache_folder_is_a_user_error(
    dataset: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, paths = dataset
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not-a-folder"):
        cache_dataset(root, paths, 16, blocker, workers=1)


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_is_reported_to_the_callback_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: int
) -> None:
    root = make_folder_per_class(tmp_path / "data", per_class=10, size=24)
    paths = [rel for rel, _ in discover_layout(root).items]
    calls: list[tuple[int, int]] = []
    cache_dataset(root, paths, 16, tmp_path / "cache", workers=workers, on_progress=_record(calls))
    assert calls[0] == (0, len(paths))  # the total is known before the first image
    assert calls[-1] == (len(paths), len(paths))
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert capsys.readouterr() == ("", "")  # the trainer itself shows nothing
    calls.clear()
    cache_dataset(root, paths, 16, tmp_path / "cache", workers=workers, on_progress=_record(calls))
    assert calls == []  # a reused cache decodes nothing


def _record(calls: list[tuple[int, int]]) -> Callable[[int, int], None]:
    return lambda done, total: calls.append((done, total))


def test_empty_input_gives_an_empty_cache(tmp_path: Path) -> None:
    cached = cache_dataset(tmp_path, [], 16, tmp_path / "cache", workers=1)
    assert cached.images.shape == (0, 16, 16)
    assert cached.paths == []
    again = cache_dataset(tmp_path, [], 16, tmp_path / "cache", workers=1)
    assert again.from_cache is True
