"""Optimizers and the per-step learning-rate schedule."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch

from trainer.config import TrainConfig
from trainer.optim import lr_factor, make_optimizer, make_scheduler

BASE = TrainConfig(epochs=4, lr=0.1)


def _factors(config: TrainConfig, steps_per_epoch: int) -> list[float]:
    factor = lr_factor(config, steps_per_epoch)
    return [factor(step) for step in range(config.epochs * steps_per_epoch)]


def test_no_schedule_is_constant():
    assert _factors(BASE, 5) == [1.0] * 20


def test_warmup_rises_linearly_then_holds():
    factors = _factors(replace(BASE, warmup_epochs=1.0), 4)
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4:] == [1.0] * 12


def test_cosine_falls_from_one_towards_zero():
    factors = _factors(replace(BASE, schedule="cosine", warmup_epochs=0.5), 10)
    assert factors[4] == 1.0  # warm-up over, decay starts at the top
    after = factors[5:]
    assert all(a > b for a, b in itertools.pairwise(after))
    assert factors[-1] < 0.01
    middle = 5 + (40 - 5) // 2
    assert factors[middle] == pytest.approx(0.5 * (1 + math.cos(math.pi * 17 / 35)))


def test_step_decays_every_step_size_epochs():
    factors = _factors(replace(BASE, schedule="step", step_size=2, gamma=0.5), 3)
    assert factors == pytest.approx([1.0] * 6 + [0.5] * 6)


def test_scheduler_drives_the_optimizer_lr():
    config = replace(BASE, schedule="step", step_size=1, gamma=0.1)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = make_optimizer(config, [param])
    scheduler = make_scheduler(optimizer, config, steps_per_epoch=2)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.01])


@pytest.mark.parametrize(
    ("changes", "kind"),
    [
        ({"optimizer": "sgd", "momentum": 0.9, "nesterov": True}, torch.optim.SGD),
        ({"optimizer": "sgd", "momentum": 0.0, "nesterov": True}, torch.optim.SGD),
        ({"optimizer": "adam", "weight_decay": 1e-4}, torch.optim.Adam),
        ({"optimizer": "adamw", "weight_decay": 0.05}, torch.optim.AdamW),
    ],
)
def test_make_optimizer(changes, kind):
    config = replace(BASE, **changes)
    optimizer = make_optimizer(config, [torch.nn.Parameter(torch.zeros(2))])
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert group["lr"] == config.lr
    assert group["weight_decay"] == config.weight_decay
    if kind is torch.optim.SGD:
        # Nesterov needs momentum; without it the step is plain SGD anyway
        assert group["nesterov"] == (config.momentum > 0)
