"""Optimizer and per-step learning-rate schedule from a ``TrainConfig``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

from trainer.config import TrainConfig


def make_optimizer(
    config: TrainConfig, params: Iterable[torch.nn.Parameter], *, fused: bool = False
) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov), Adam or AdamW with ``config``'s lr and weight decay.

    ``fused`` selects the single-kernel CUDA implementation.
    """
    # None is torch's default: it picks the implementation itself.
    fused_or_default = True if fused else None
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=config.lr,
            momentum=config.momentum,
            # Without momentum Nesterov is plain SGD, and torch rejects the combination.
            nesterov=config.nesterov and config.momentum > 0,
            weight_decay=config.weight_decay,
            fused=fused_or_default,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(
            params, lr=config.lr, weight_decay=config.weight_decay, fused=fused_or_default
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(
            params, lr=config.lr, weight_decay=config.weight_decay, fused=fused_or_default
        )
    raise ValueError(f"optimizer={config.optimizer!r}: not handled")


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of ``config.lr`` at each optimizer step (0-based), as a function.

    Linear warm-up over ``warmup_epochs``, then constant, cosine to zero over the rest of
    the budget, or multiplied by ``gamma`` every ``step_size`` epochs.
    """
    total = config.epochs * steps_per_epoch
    warmup = min(total, round(config.warmup_epochs * steps_per_epoch))
    decay_every = config.step_size * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if config.schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        if config.schedule == "step":
            return config.gamma ** (step // decay_every)
        return 1.0

    return factor


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> LambdaLR:
    """A scheduler to step after every optimizer step."""
    return LambdaLR(optimizer, lr_factor(config, steps_per_epoch))
