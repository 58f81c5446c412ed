"""precision: what 'auto' resolves to, and the precision a run records."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trainer.synthetic_tensors import synthetic_data
from trainer import precision as precision_module
from trainer.config import SettingError, TrainConfig
from trainer.precision import autocast_dtype, resolve_precision
from trainer.training import fit

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture
def no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU without native bf16 (AVX2 only), whatever this machine has."""
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with AVX512-BF16 or AMX, whatever this machine has."""
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)


def test_auto_is_fp32_on_a_cpu_without_native_bf16(no_bf16: None) -> None:
    assert resolve_precision("auto", CPU) == "fp32"
    # CUDA has bf16 whatever the CPU
    assert resolve_precision("auto", CUDA) == "bf16"


def test_auto_is_bf16_on_a_cpu_with_native_bf16(native_bf16: None) -> None:
    assert resolve_precision("auto", CPU) == "bf16"


@pytest.mark.parametrize("given", ["fp32", "bf16"])
@pytest.mark.parametrize("native", [False, True])
def test_an_explicit_precision_is_kept(monkeypatch, given: str, native: bool) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision(given, CPU) == given
    assert resolve_precision(given, CUDA) == given


def test_autocast_dtype() -> None:
    assert autocast_dtype("bf16") is torch.bfloat16
    assert autocast_dtype("fp32") is None


def test_the_probe_asks_torch() -> None:
    # whatever this CPU is, the probe answers a bool and the capability names it
    assert isinstance(precision_module.cpu_has_native_bf16(), bool)
    assert "bf16" in precision_module.cpu_capability()


def test_an_unknown_precision_is_a_setting_error() -> None:
    with pytest.raises(SettingError, match="precision"):
        TrainConfig(precision="fp16")


def _fit(precision: str):
    data = synthetic_data(n_train=32, n_val=16, size=16, seed=3)
    config = TrainConfig(epochs=1, batch_size=16, device="cpu", threads=1, precision=precision)
    return fit(config, data)


def test_fit_records_fp32_for_auto_on_a_cpu_without_bf16(no_bf16: None) -> None:
    assert _fit("auto").precision == "fp32"


def test_fit_records_bf16_for_auto_on_a_cpu_with_bf16(native_bf16: None) -> None:
    result = _fit("auto")
    assert result.precision == "bf16"
    assert math.isfinite(result.history[0]["train_loss"])
