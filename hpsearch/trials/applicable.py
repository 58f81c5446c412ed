"""Which of a trial's parameters its training actually used.

A grid crosses every axis with every other, so an Adam trial still draws a ``momentum``
value: the optimizer never reads it. Views of trials show such a value as not applying
instead of as if it had shaped the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Parameter -> optimizers that ignore it (trainer/optim.py: only SGD takes momentum).
IGNORED_BY_OPTIMIZER: dict[str, frozenset[str]] = {
    "momentum": frozenset({"adam", "adamw"}),
    "nesterov": frozenset({"adam", "adamw"}),
}


#: How the views and the grid explain a value that does not apply.
IGNORED_NOTE = "momentum and nesterov are not used by adam or adamw"


def applies(name: str, params: Mapping[str, Any]) -> bool:
    """False when the trial's optimizer ignores parameter ``name``."""
    return params.get("optimizer") not in IGNORED_BY_OPTIMIZER.get(name, frozenset())


def applicable(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` without the values the trial's optimizer ignores."""
    return {k: v for k, v in params.items() if applies(k, params)}
