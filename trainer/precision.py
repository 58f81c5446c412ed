"""Which arithmetic a training run uses: bf16 autocast where the hardware has it, else fp32.

On CUDA, and on many CPUs with native bf16 instructions (AVX512-BF16 or AMX), autocast
to bf16 nearly doubles the speed of ResNet-18 (1.8x measured on a CPU with AMX, at 64 px).
On a CPU without them torch emulates bf16 and runs about 9x *slower* than fp32, so
``"auto"`` falls back to fp32 there. The capability comes from what torch reports about
the CPU, never from its name.

Native bf16 is not always faster (an AVX512-BF16 CPU without AMX ran it at 0.8x fp32), so
a search decides ``"auto"`` on a CPU with native bf16 by measuring first
(:func:`trainer.precision_probe.resolve_trial_precision`) and trains with the explicit
precision it chose; :func:`resolve_precision` is the rule without a measurement.
"""

from __future__ import annotations

import torch

from trainer.config import PRECISIONS


def cpu_has_native_bf16() -> bool:
    """True when this CPU runs bf16 arithmetic natively (AVX512-BF16 or AMX tiles).

    Asks torch (``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``,
    private but present since torch 2.2); a torch without them counts as no support.
    """
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def cpu_capability() -> str:
    """torch's name for the CPU's vector instructions ('AVX2', 'AVX512', ...), bf16 noted."""
    name = str(torch.backends.cpu.get_cpu_capability())
    return f"{name}, native bf16" if cpu_has_native_bf16() else f"{name}, no native bf16"


def resolve_precision(precision: str, device: torch.device) -> str:
    """'bf16' or 'fp32': what ``precision`` ('auto', 'fp32', 'bf16') means on ``device``.

    'auto' is bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere, without measuring
    (:mod:`trainer.precision_probe` measures). An explicit 'bf16' is honoured even where it
    is slow: the user asked for it.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()):
        return "bf16"
    return "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision: bfloat16, or None (plain fp32)."""
    return torch.bfloat16 if precision == "bf16" else None
