"""The real trainer, with every trained epoch logged (``$STAND_IN_TRAINER``).

``load_data`` and ``fit`` are the trainer's own, so checkpoints are real ``last.pt`` and
``best.pt`` files and a resumed trial really resumes. ``fit``'s per-epoch callback, which
runs only for epochs trained in this call (after the epoch's checkpoint is written),
appends ``<pid> <slot folder> <epoch>`` to ``$FAKE_TRAINER_LOG`` and then pauses
``$EPOCH_PAUSE_S`` seconds, a window in which a test can kill the process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from trainer.data import load_data
from trainer.training import fit as real_fit

__all__ = ["fit", "load_data"]


def fit(config: Any, data: Any, on_epoch: Any = None, **kwargs: Any) -> Any:
    checkpoint_dir = kwargs.get("checkpoint_dir")
    slot = Path(checkpoint_dir).name if checkpoint_dir else "-"

    def logged(epoch: int, row: dict[str, float]) -> bool:
        with open(os.environ["FAKE_TRAINER_LOG"], "a") as fh:
            fh.write(f"{os.getpid()} {slot} {epoch}\n")
        time.sleep(float(os.environ.get("EPOCH_PAUSE_S", "0")))
        return bool(on_epoch(epoch, row)) if on_epoch is not None else False

    return real_fit(config, data, logged, **kwargs)
