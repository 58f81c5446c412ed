"""The two trainer functions a search calls, passed in rather than imported where used.

Workers receive them in their context, so tests can run the real orchestration with a
fast stand-in trainer (plain functions, picklable by name across ``spawn``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrainerAPI:
    """``load_data(config, device=None, with_test=True)`` and
    ``fit(config, data, on_epoch, checkpoint_dir=None, resume=False)``."""

    load_data: Callable[..., Any]
    fit: Callable[..., Any]


def default_trainer() -> TrainerAPI:
    """The real trainer (imports torch)."""
    from trainer.data import load_data
    from trainer.training import fit

    return TrainerAPI(load_data=load_data, fit=fit)
