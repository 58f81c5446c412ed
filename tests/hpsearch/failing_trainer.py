"""A stand-in trainer whose ``fit`` fails (``$STAND_IN_TRAINER``), the way a real one can.

``$FAILING_TRAINER_ERROR`` picks the error: ``user`` (a setup problem the pre-check did
not catch, e.g. a weights file that became unreadable), ``permission`` (a folder that
cannot be written), ``runtime`` (a bug or a crash in training); ``none`` trains like the
fake trainer.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from tests.hpsearch import fake_trainer
from tests.hpsearch.fake_trainer import load_data
from trainer.errors import UserError

__all__ = ["fit", "load_data"]


def fit(config: Any, data: Any, on_epoch: Any = None, **kwargs: Any) -> Any:
    kind = os.environ.get("FAILING_TRAINER_ERROR", "none")
    if kind == "user":
        raise UserError("cannot read weights file /models/resnet18.pth: truncated")
    if kind == "permission":
        raise PermissionError(errno.EACCES, "Permission denied", "/shared/ckpt/last.pt")
    if kind == "runtime":
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    return fake_trainer.fit(config, data, on_epoch, **kwargs)
