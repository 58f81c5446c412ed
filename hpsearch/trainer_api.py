"""The two trainer functions a search calls, passed in rather than imported where used.

Workers receive them in their context, so tests can run the real orchestration with a
fast stand-in trainer (plain functions, picklable by name across ``spawn``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainerAPI:
    """``load_data(config, device=None, with_test=True)`` and
    ``fit(config, data, on_epoch, checkpoint_dir=None, resume=False)``, and optionally
    ``check_data(root)``."""

    load_data: Callable[..., Any]
    fit: Callable[..., Any]
    check_data: Callable[[Path], Any] | None = None
    """Raises a one-line error for a dataset folder no layout describes, before anything
    is written (reads the folder's names, no image); None: no check."""
    choose_precision: Callable[..., Any] | None = None
    """``choose_precision(config, image_size=, cache_file=)``: the precision a trial trains
    in when its config says 'auto', measured on this machine (a ``PrecisionChoice``);
    None: 'auto' is left to ``fit``."""


def default_trainer() -> TrainerAPI:
    """The real trainer (imports torch)."""
    from trainer.data import load_data
    from trainer.layout import discover_layout
    from trainer.precision_probe import resolve_trial_precision
    from trainer.training import fit

    return TrainerAPI(
        load_data=load_data,
        fit=fit,
        check_data=discover_layout,
        choose_precision=resolve_trial_precision,
    )
