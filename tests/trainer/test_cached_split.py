"""Streamed splits: batches read from the cache file equal those of the splits held in memory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainer._imagefiles import make_database
from trainer.batches import eval_batches, train_batches
from trainer.cached_split import CachedSplit
from trainer.config import DataConfig, TrainConfig
from trainer.data import Data, load_data, pixel_mean_std
from trainer.errors import UserError
from trainer.training import fit


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple[Data, Data]:
    """The same dataset loaded twice: splits held in memory, and streamed from the cache."""
    tmp = tmp_path_factory.mktemp("streamed")
    root = make_database(tmp / "db", per_class=12)
    config = DataConfig(root=root, image_size=16, val_fraction=0.25, cache_dir=tmp / "cache")
    held = load_data(config, with_test=False, stream=False)
    streamed = load_data(config, with_test=False, stream=True)
    return held, streamed


def test_a_trial_on_the_cpu_streams_and_anything_else_holds(both, tmp_path: Path) -> None:
    held, streamed = both
    assert isinstance(streamed.train_x, CachedSplit) and isinstance(streamed.val_x, CachedSplit)
    assert isinstance(held.train_x, torch.Tensor)
    root = Path(held.source)
    config = DataConfig(root=root, image_size=16, val_fraction=0.25, cache_dir=tmp_path)
    # the default: a trial's data (no test split, on the CPU) streams; the full set does not
    assert isinstance(load_data(config, with_test=False).train_x, CachedSplit)
    assert isinstance(load_data(config).train_x, torch.Tensor)


def test_a_streamed_split_reads_the_same_images(both) -> None:
    held, streamed = both
    for part in ("train", "val"):
        x, lazy = getattr(held, f"{part}_x"), getattr(streamed, f"{part}_x")
        assert lazy.shape == x.shape and lazy.dtype == x.dtype and lazy.dim() == 4
        assert lazy.numel() == x.numel() and len(lazy) == x.shape[0]
        assert torch.equal(lazy[0 : len(lazy)], x)
        index = torch.tensor([5, 0, 5, len(lazy) - 1])  # any order, repeats allowed
        assert torch.equal(lazy[index], x[index])
    assert (streamed.mean, streamed.std) == (held.mean, held.std)
    assert pixel_mean_std(streamed.train_x) == pixel_mean_std(held.train_x)
    assert streamed.to("cpu").train_x is streamed.train_x  # stays in the file on the CPU


@pytest.mark.parametrize(
    "changes",
    [{}, {"crop_padding": 3, "balanced_sampling": True}, {"flip": False}],
)
def test_streamed_batches_equal_held_batches_for_the_same_seed(both, changes) -> None:
    held, streamed = both
    config = replace(TrainConfig(batch_size=8, seed=7), **changes)
    for epoch in (1, 2):
        kwargs = {"mean": held.mean, "std": held.std, "channels_last": True}
        a = list(train_batches(held.train_x, held.train_y, config, epoch, **kwargs))
        b = list(train_batches(streamed.train_x, streamed.train_y, config, epoch, **kwargs))
        assert len(a) == len(b) > 1
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    a = list(eval_batches(held.val_x, 5, mean=held.mean, std=held.std))
    b = list(eval_batches(streamed.val_x, 5, mean=held.mean, std=held.std))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True)) and len(a) == len(b)


def test_fit_on_streamed_data_equals_fit_on_held_data(both) -> None:
    held, streamed = both
    config = TrainConfig(epochs=1, batch_size=8, device="cpu", threads=1, precision="fp32")
    a, b = fit(config, held), fit(config, streamed)
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert a.history[0][key] == b.history[0][key], key


def test_a_cache_file_cut_short_is_a_user_error(tmp_path: Path) -> None:
    file = tmp_path / "short.u8"
    file.write_bytes(np.zeros(2 * 4 * 4, np.uint8).tobytes())
    split = CachedSplit(file, np.array([0, 1, 2]), 4)
    assert split[0:2].shape == (2, 1, 4, 4)
    with pytest.raises(UserError, match="shorter than its index"):
        split[torch.tensor([2])]


def test_stream_is_for_the_cpu_only(both, tmp_path: Path) -> None:
    held, _ = both
    root = Path(held.source)
    config = DataConfig(root=root, image_size=16, val_fraction=0.25, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="CPU"):
        load_data(config, device="meta", stream=True)
