"""Atomic checkpoint writes, leftovers of killed writers, and the resume fingerprint."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from tests.trainer.synthetic_tensors import synthetic_data
from trainer.checkpoint import atomic_save, remove_stale_temporaries, run_fingerprint
from trainer.config import TrainConfig


def test_atomic_save_replaces_the_file(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)
    atomic_save({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="No space"):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f".last.pt.{int(dead.stdout)}.tmp"
    live = tmp_path / f".best.pt.{os.getpid()}.tmp"
    for path in (stale, live):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists()


def test_fingerprint_follows_settings_and_data_not_execution():
    data = synthetic_data(n_train=16, n_val=8, size=8)
    config = TrainConfig(device="cpu")
    same = run_fingerprint(config, data)
    assert run_fingerprint(replace(config, threads=2, eval_batch_size=64), data) == same
    assert run_fingerprint(replace(config, channels_last=False), data) == same
    assert run_fingerprint(replace(config, lr=0.02), data) != same
    assert run_fingerprint(replace(config, seed=1), data) != same
    other_data = synthetic_data(n_train=24, n_val=8, size=8)
    assert run_fingerprint(config, other_data) != same
