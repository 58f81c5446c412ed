"""The real trainer, with every epoch's training taking at least ``$PACED_EPOCH_S``
seconds (``$STAND_IN_TRAINER``).

A test that stops a run from outside (a scheduler's signal that comes within 30 s) needs
work left when the stop lands, however fast the machine trains. ``fit`` is the trainer's
own; an epoch whose training took less than the pace waits for the rest before it is
evaluated and checkpointed, so the time goes where a slow machine spends it: in
training. (Waiting after the checkpoint instead would make a stop likely to land between
the checkpoint and the epoch's report, a window of milliseconds in a real run.) A slow
machine is not slowed further.
"""

from __future__ import annotations

import os
import time
from typing import Any

from trainer import training
from trainer.data import load_data
from trainer.layout import discover_layout as check_data
from trainer.precision_probe import resolve_trial_precision as choose_precision

__all__ = ["check_data", "choose_precision", "fit", "load_data"]

_train_epoch = training._Run._train_epoch


def _paced_train_epoch(self: Any, epoch: int) -> tuple[float, float, int, float]:
    pace = float(os.environ.get("PACED_EPOCH_S", "0"))
    started = time.monotonic()
    result = _train_epoch(self, epoch)
    time.sleep(max(0.0, pace - (time.monotonic() - started)))
    return result


def fit(config: Any, data: Any, on_epoch: Any = None, **kwargs: Any) -> Any:
    training._Run._train_epoch = _paced_train_epoch  # type: ignore[method-assign]
    return training.fit(config, data, on_epoch, **kwargs)
