"""Checkpoint files: atomic writes and the fingerprint that decides whether a run may resume."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from trainer.config import TrainConfig
from trainer.data import Data

#: Settings that change how fast a run goes, not what it computes (precision changes
#: rounding only, and "auto" may resolve otherwise on the machine that resumes); a run
#: may resume with other values of these.
EXECUTION_FIELDS = (
    "device",
    "threads",
    "compile",
    "channels_last",
    "eval_batch_size",
    "precision",
)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``.

    A crash or an error while writing leaves the previous file untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporaries that ``atomic_save`` left behind in a process that died mid-write.

    Only files of processes that no longer exist are removed; returns their paths.
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        pid = tmp.suffixes[-2].lstrip(".") if len(tmp.suffixes) >= 2 else ""
        if pid.isdigit() and not _process_exists(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def run_fingerprint(config: TrainConfig, data: Data) -> str:
    """A hash of the settings and the data shape that a resumed run must share."""
    settings = {k: v for k, v in config.to_dict().items() if k not in EXECUTION_FIELDS}
    counts = torch.bincount(data.train_y.cpu(), minlength=len(data.class_names)).tolist()
    described = {
        "config": settings,
        "train": list(data.train_x.shape),
        "val": list(data.val_x.shape),
        "train_counts": counts,
        "mean": round(float(data.mean), 6),
        "std": round(float(data.std), 6),
        "classes": list(data.class_names),
    }
    text = json.dumps(described, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors, copied to the CPU."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not possible on every platform.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
