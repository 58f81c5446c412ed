"""The real trainer, with every epoch taking at least ``$PACED_EPOCH_S`` seconds
(``$STAND_IN_TRAINER``).

A test that stops a run from outside (a scheduler's signal that comes within 30 s) needs
work left when the stop lands, however fast the machine trains. ``fit`` is the trainer's
own; after an epoch that took less than the pace (its checkpoint already written), its
per-epoch callback waits for the rest, so the epoch looks longer and nothing else
changes. A slow machine is not slowed further.
"""

from __future__ import annotations

import os
import time
from typing import Any

from trainer.data import load_data
from trainer.layout import discover_layout as check_data
from trainer.precision_probe import resolve_trial_precision as choose_precision
from trainer.training import fit as real_fit

__all__ = ["check_data", "choose_precision", "fit", "load_data"]


def fit(config: Any, data: Any, on_epoch: Any = None, **kwargs: Any) -> Any:
    pace = float(os.environ.get("PACED_EPOCH_S", "0"))
    last = [time.monotonic()]

    def paced(epoch: int, row: dict[str, float]) -> bool:
        time.sleep(max(0.0, pace - (time.monotonic() - last[0])))
        last[0] = time.monotonic()
        return bool(on_epoch(epoch, row)) if on_epoch is not None else False

    return real_fit(config, data, paced, **kwargs)
