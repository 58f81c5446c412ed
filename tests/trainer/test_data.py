"""load_data end to end on tiny folders: shapes, labels, names, statistics, errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainer._imagefiles import make_database, make_folder_per_class, write_awkward
from trainer.cache import decode_image
from trainer.classes import class_index
from trainer.data import DataConfig, load_data, pixel_mean_std
from trainer.errors import UserError
from trainer.layout import SYNTHETIC_MARKER


def _config(root: Path, tmp_path: Path, **changes: object) -> DataConfig:
    values = {"image_size": 16, "val_fraction": 0.25, "test_fraction": 0.25}
    values |= changes
    return DataConfig(root=root, cache_dir=tmp_path / "cache", workers=1, **values)


def test_splits_hold_the_right_images_and_labels(tmp_path: Path) -> None:
    root = make_database(tmp_path / "db", per_class=8)
    (root / SYNTHETIC_MARKER).write_text("synthetic")
    data = load_data(_config(root, tmp_path))
    assert data.synthetic is True
    assert data.source == str(root)
    sizes = {part: len(getattr(data, f"{part}_y")) for part in ("train", "val", "test")}
    assert sizes == {"train": 16, "val": 8, "test": 8}
    for part in ("train", "val", "test"):
        x, y = getattr(data, f"{part}_x"), getattr(data, f"{part}_y")
        assert x.dtype == torch.uint8 and x.shape == (sizes[part], 1, 16, 16)
        assert y.dtype == torch.int64
        names = data.names[part]
        assert len(names) == sizes[part]
        for row, rel in enumerate(names):
            # Label from the folder's meaning; pixels are that very file's.
            assert y[row].item() == class_index(rel.split("/")[0])
            assert np.array_equal(x[row, 0].numpy(), decode_image(root / rel, 16))
    everything = [n for names in data.names.values() for n in names]
    assert len(set(everything)) == 32


def test_without_test_split_the_test_images_are_not_loaded(tmp_path: Path) -> None:
    root = make_database(tmp_path / "db", per_class=8)
    full = load_data(_config(root, tmp_path))
    trial = load_data(_config(root, tmp_path), with_test=False, stream=False)
    assert trial.test_x.shape == (0, 1, 16, 16) and trial.test_y.numel() == 0
    assert trial.names["test"] == full.names["test"]  # still known, only not held
    for part in ("train", "val"):
        assert torch.equal(getattr(trial, f"{part}_x"), getattr(full, f"{part}_x"))
        assert torch.equal(getattr(trial, f"{part}_y"), getattr(full, f"{part}_y"))
    assert (trial.mean, trial.std) == (full.mean, full.std)


def test_progress_of_the_cache_build_reaches_the_callback(tmp_path: Path) -> None:
    root = make_database(tmp_path / "db", per_class=8)
    calls: list[tuple[int, int]] = []
    load_data(_config(root, tmp_path), on_progress=lambda *c: calls.append(c))
    assert calls[-1] == (32, 32)  # every image decoded into the new cache
    calls.clear()
    load_data(_config(root, tmp_path), on_progress=lambda *c: calls.append(c))
    assert calls == []  # the cache is reused


def test_mean_and_std_are_over_the_training_pixels(tmp_path: Path) -> None:
    data = load_data(_config(make_folder_per_class(tmp_path / "d", per_class=6), tmp_path))
    pixels = data.train_x.numpy().astype(np.float64) / 255
    assert data.mean == pytest.approx(pixels.mean(), abs=1e-12)
    assert data.std == pytest.approx(pixels.std(), abs=1e-12)


def test_pixel_mean_std_over_many_blocks() -> None:
    values = torch.from_numpy(np.random.default_rng(0).integers(0, 256, 9_000_001, np.uint8))
    mean, std = pixel_mean_std(values)
    reference = values.numpy().astype(np.float64) / 255
    assert mean == pytest.approx(reference.mean(), rel=1e-12)
    assert std == pytest.approx(reference.std(), rel=1e-9)


def test_same_seed_same_split_other_seed_other_split(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path / "d", per_class=8)
    a = load_data(_config(root, tmp_path, split_seed=1))
    b = load_data(_config(root, tmp_path, split_seed=1))
    c = load_data(_config(root, tmp_path, split_seed=2))
    assert a.names == b.names
    assert torch.equal(a.train_x, b.train_x)
    assert a.names["val"] != c.names["val"]


def test_unreadable_files_are_left_out_and_told_once(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path / "d", per_class=4)
    write_awkward(root / "covid")
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Python warning: the lines go to on_warning
        data = load_data(_config(root, tmp_path, test_fraction=0.0), on_warning=lines.append)
    # one clean line per file left out, each once
    assert sorted(lines) == [
        "skipped covid/empty.png: empty file",
        "skipped covid/text.png: not an image Pillow can read",
        "skipped covid/truncated.png: corrupt image (image file is truncated)",
    ]
    lines.clear()
    load_data(_config(root, tmp_path, test_fraction=0.0), on_warning=lines.append)
    assert len(lines) == 1 and lines[0].startswith("3 unreadable image(s) left out")
    assert len(data.train_y) + len(data.val_y) == 16
    assert data.test_x.shape == (0, 1, 16, 16)
    assert not any("empty" in n or "text" in n for names in data.names.values() for n in names)


def test_a_class_with_no_readable_image_is_a_user_error(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path / "d", per_class=2)
    for f in (root / "pneumonia").iterdir():
        f.write_bytes(b"")
    lines: list[str] = []
    with pytest.raises(UserError, match="pneumonia"):
        load_data(_config(root, tmp_path), on_warning=lines.append)
    # the files are named before the error
    assert lines == [
        "skipped pneumonia/pneumonia-1.png: empty file",
        "skipped pneumonia/pneumonia-2.png: empty file",
    ]


def test_default_cache_folder_is_in_the_home_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = make_folder_per_class(tmp_path / "d", per_class=2)
    load_data(DataConfig(root=root, image_size=16, workers=1))
    assert len(list((tmp_path / "home" / ".cache" / "hpsearch").glob("*.u8"))) == 1


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"image_size": 0}, "image_size"),
        ({"val_fraction": 1.2}, "val_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "sum"),
    ],
)
def test_bad_data_config_is_a_user_error(changes: dict, named: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=named):
        DataConfig(root=tmp_path, **changes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_splits_can_be_filled_on_the_gpu(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path / "d", per_class=6)
    on_cpu = load_data(_config(root, tmp_path))
    on_gpu = load_data(_config(root, tmp_path), device="cuda")
    assert on_gpu.train_x.is_cuda and on_gpu.train_y.device.type == "cpu"
    assert torch.equal(on_gpu.train_x.cpu(), on_cpu.train_x)
    assert on_gpu.mean == pytest.approx(on_cpu.mean, abs=1e-12)
    assert on_gpu.std == pytest.approx(on_cpu.std, abs=1e-12)
