"""The fast stand-in trainer on a disk that fills up (``$STAND_IN_TRAINER``).

While the file ``$FULL_DISK_FLAG`` exists, a trial of any slot from ``$FULL_DISK_FROM_SLOT``
on trains its first epoch and then fails to write the next checkpoint with ENOSPC, as
``open``/``write`` do on a full disk. Deleting the flag file frees the disk.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from tests.hpsearch import fake_trainer
from tests.hpsearch.fake_trainer import load_data

__all__ = ["fit", "load_data"]


def _disk_full(checkpoint_dir: Path) -> bool:
    flag = os.environ.get("FULL_DISK_FLAG")
    slot = int(checkpoint_dir.name.rsplit("-", 1)[1])
    return bool(flag) and Path(flag).exists() and slot >= int(os.environ["FULL_DISK_FROM_SLOT"])


def fit(config: Any, data: Any, on_epoch=None, *, checkpoint_dir=None, resume=True, log=None):
    full = checkpoint_dir is not None and _disk_full(Path(checkpoint_dir))

    def on_epoch_then_fill(epoch: int, row: dict[str, float]) -> bool:
        stop = on_epoch(epoch, row) if on_epoch is not None else False
        if full:
            target = Path(checkpoint_dir) / "last.json"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return stop

    return fake_trainer.fit(
        config, data, on_epoch_then_fill, checkpoint_dir=checkpoint_dir, resume=resume, log=log
    )
