"""The grid of a grid study: its points, which of them train alike, and the order slots run.

Pure functions of a search space, the fixed training values and the study's seed;
:class:`hpsearch.study.spec.StudySpec` asks them for its scale's grid.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from hpsearch.study.space import Param
from hpsearch.trials.applicable import applicable

Point = dict[str, Any]
TrainingKey = tuple[tuple[str, Any], ...]


def grid_points(space: Sequence[Param]) -> list[Point]:
    """Every point of the grid, in file order (the first axis varies slowest)."""
    names = [p.name for p in space]
    combos = itertools.product(*(p.values for p in space))
    return [dict(zip(names, combo, strict=True)) for combo in combos]


def training_key(point: Point, fixed: dict[str, Any]) -> TrainingKey:
    """What of a grid point reaches the training: its values less those its optimizer
    ignores (an Adam point's momentum), with the optimizer taken from the point or from
    the fixed values. Two points with the same key train alike."""
    merged = {**fixed, **point}
    return tuple(sorted((k, v) for k, v in applicable(merged).items() if k in point))


def distinct_indices(points: Sequence[Point], fixed: dict[str, Any]) -> list[int]:
    """One point per distinct training, the first in file order (indices, ascending)."""
    first: dict[TrainingKey, int] = {}
    for i, point in enumerate(points):
        first.setdefault(training_key(point, fixed), i)
    return sorted(first.values())


def slot_order(n_points: int, trained: Sequence[int], first: Sequence[int], seed: int) -> list[int]:
    """Which point (index in file order) each slot trains: ``first`` (the enqueued points,
    in file order), then the other ``trained`` points shuffled by ``seed``.

    Workers claim the lowest free slot, so this is the order in which the grid is run. A
    shuffled order, as Optuna's own GridSampler uses, makes the first trials (those that
    set the pruner's bar) and the trials of a search stopped early a spread of the grid
    rather than one corner of it.
    """
    kept = set(trained)
    head = list(dict.fromkeys(first))
    rest = [int(i) for i in np.random.default_rng(seed).permutation(n_points)]
    return head + [i for i in rest if i in kept and i not in head]
