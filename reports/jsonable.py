"""Values made plain for JSON: numpy scalars become Python numbers, NaN becomes None."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """numpy scalars -> Python numbers; NaN -> None (JSON has no NaN)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
