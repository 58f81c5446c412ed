"""precision_probe: 'auto' on a CPU decided by a measurement, cached per CPU, torch and shape.

The timings are mocked (a ``measure`` that returns set figures and counts its calls),
so the choices do not depend on this machine's speed; one test runs the real
measurement on a tiny model and checks only its form.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

import pytest
import torch

from trainer import precision as precision_module
from trainer import precision_probe as probe
from trainer.config import TrainConfig
from trainer.errors import UserError
from trainer.precision_probe import (
    BF16_MIN_SPEEDUP,
    PrecisionChoice,
    ProbeShape,
    choose_precision,
    measure_steps_per_sec,
    resolve_trial_precision,
)

SHAPE = ProbeShape(arch="resnet18", image_size=64, batch_size=32, channels_last=True)


class FakeMeasure:
    """A measurement that returns ``fp32`` and ``bf16`` steps/s and counts its calls."""

    def __init__(self, fp32: float = 1.0, bf16: float = 2.0, cpu_share: float = 1.0) -> None:
        self.figures = {"fp32": fp32, "bf16": bf16, "cpu_share": cpu_share}
        self.calls: list[tuple[ProbeShape, int]] = []

    def __call__(self, shape: ProbeShape, threads: int) -> dict[str, float]:
        self.calls.append((shape, threads))
        return dict(self.figures)


def no_measure(shape: ProbeShape, threads: int) -> dict[str, float]:
    raise AssertionError("measured, where the cache or the rule should have answered")


@pytest.fixture
def cache_file(tmp_path: Path) -> Path:
    return tmp_path / "work" / probe.PROBE_CACHE_FILE


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with AVX512-BF16 or AMX, whatever this machine has."""
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)


# -- the choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bf16", "expected"),
    [
        (2.0, "bf16"),  # the AVX512-BF16 EPYC and the AMX Xeon: 1.8-1.9x
        (1.16, "bf16"),
        (1.14, "fp32"),  # some gain, but below the threshold: not worth bf16's costs
        (1.0, "fp32"),
        (0.8, "fp32"),  # the AVX512-BF16 Xeon without AMX: bf16 slower
    ],
)
def test_the_probe_picks_bf16_only_when_clearly_faster(
    cache_file: Path, bf16: float, expected: str
) -> None:
    measure = FakeMeasure(fp32=10.0, bf16=10.0 * bf16)
    choice = choose_precision(SHAPE, 2, cache_file, measure=measure)
    assert choice.precision == expected
    assert choice.how == "probe" and not choice.from_cache
    assert choice.fp32_steps_per_sec == 10.0
    assert choice.bf16_steps_per_sec == pytest.approx(10.0 * bf16)
    assert choice.bf16_speedup == pytest.approx(bf16)
    assert choice.threshold == BF16_MIN_SPEEDUP
    assert measure.calls == [(SHAPE, 2)]


def test_the_threshold_can_be_given(cache_file: Path) -> None:
    measure = FakeMeasure(fp32=1.0, bf16=1.3)
    assert choose_precision(SHAPE, 2, cache_file, measure=measure).precision == "bf16"
    stricter = choose_precision(SHAPE, 2, cache_file, measure=no_measure, threshold=1.5)
    # the cache keeps figures, not verdicts: a stricter threshold judges them afresh
    assert stricter.precision == "fp32" and stricter.from_cache


def test_the_choice_records_both_figures_as_plain_json(cache_file: Path) -> None:
    choice = choose_precision(SHAPE, 2, cache_file, measure=FakeMeasure(fp32=0.5, bf16=1.0))
    attr = json.loads(json.dumps(choice.to_attr()))
    assert attr["precision"] == "bf16"
    assert attr["how"] == "probe"
    assert attr["fp32_steps_per_sec"] == 0.5 and attr["bf16_steps_per_sec"] == 1.0
    assert attr["bf16_speedup"] == 2.0 and attr["threshold"] == BF16_MIN_SPEEDUP
    assert attr["from_cache"] is False and attr["probe_seconds"] >= 0
    assert attr["stored"] is True and attr["cpu_share"] == 1.0
    assert attr["threads"] == 2 and attr["shape"]["image_size"] == 64
    assert attr["cpu"] == probe.cpu_identity()
    line = choice.describe()
    assert line.startswith("bf16, chosen by the probe: fp32 0.5 steps/s (16 img/s), bf16 1 ")
    assert "bf16 2.00x fp32 >= 1.15x" in line and "cached" in line
    assert PrecisionChoice.from_attr(attr) == choice


# -- the cache -------------------------------------------------------------------------


def test_the_cache_is_reused_without_measuring_again(cache_file: Path) -> None:
    first = choose_precision(SHAPE, 2, cache_file, measure=FakeMeasure(fp32=1.0, bf16=1.9))
    again = choose_precision(SHAPE, 2, cache_file, measure=no_measure)
    assert again.from_cache and not first.from_cache
    assert again.precision == first.precision == "bf16"
    assert again.fp32_steps_per_sec == 1.0 and again.bf16_steps_per_sec == 1.9
    assert again.probe_seconds == first.probe_seconds
    saved = json.loads(cache_file.read_text())
    (entry,) = saved["entries"].values()
    assert entry["torch"] == str(torch.__version__) and entry["threads"] == 2


@pytest.mark.parametrize(
    "change",
    [
        {"image_size": 128},
        {"batch_size": 64},
        {"arch": "resnet34"},
        {"channels_last": False},
        {"in_chans": 3},
    ],
)
def test_other_shapes_are_measured_and_kept_beside(cache_file: Path, change: dict) -> None:
    choose_precision(SHAPE, 2, cache_file, measure=FakeMeasure(fp32=1.0, bf16=2.0))
    other = ProbeShape(**{**SHAPE.__dict__, **change})
    measure = FakeMeasure(fp32=1.0, bf16=1.0)
    assert choose_precision(other, 2, cache_file, measure=measure).precision == "fp32"
    assert measure.calls == [(other, 2)]
    # both shapes stay cached
    assert choose_precision(SHAPE, 2, cache_file, measure=no_measure).precision == "bf16"
    assert choose_precision(other, 2, cache_file, measure=no_measure).precision == "fp32"


def test_another_thread_count_is_measured_again(cache_file: Path) -> None:
    choose_precision(SHAPE, 2, cache_file, measure=FakeMeasure())
    measure = FakeMeasure()
    choose_precision(SHAPE, 1, cache_file, measure=measure)
    assert measure.calls == [(SHAPE, 1)]


def test_another_torch_version_is_measured_again(
    cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    choose_precision(SHAPE, 2, cache_file, measure=FakeMeasure(fp32=1.0, bf16=2.0))
    monkeypatch.setattr(torch, "__version__", "2.99.0")
    measure = FakeMeasure(fp32=1.0, bf16=1.0)
    choice = choose_precision(SHAPE, 2, cache_file, measure=measure)
    assert len(measure.calls) == 1 and choice.precision == "fp32" and not choice.from_cache


def test_another_cpu_is_measured_again(cache_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    choose_precision(SHAPE, 2, cache_file, measure=FakeMeasure())
    monkeypatch.setattr(probe, "cpu_identity", lambda: "Intel(R) Xeon(R) Processor (other)")
    measure = FakeMeasure()
    choose_precision(SHAPE, 2, cache_file, measure=measure)
    assert len(measure.calls) == 1


@pytest.mark.parametrize("text", ["{not json", '{"format": 0, "entries": {}}', "[]"])
def test_a_damaged_or_older_cache_is_measured_again_and_replaced(
    cache_file: Path, text: str
) -> None:
    cache_file.parent.mkdir(parents=True)
    cache_file.write_text(text)
    measure = FakeMeasure()
    assert not choose_precision(SHAPE, 2, cache_file, measure=measure).from_cache
    assert len(measure.calls) == 1
    assert choose_precision(SHAPE, 2, cache_file, measure=no_measure).from_cache


def test_a_probe_starved_of_cpu_decides_its_run_but_is_not_cached(cache_file: Path) -> None:
    lines: list[str] = []
    starved = FakeMeasure(fp32=1.0, bf16=1.0, cpu_share=0.3)
    choice = choose_precision(SHAPE, 2, cache_file, measure=starved, log=lines.append)
    assert choice.precision == "fp32" and not choice.stored and choice.cpu_share == 0.3
    assert "30% of the CPU" in lines[-1] and "not cached" in lines[-1]
    assert "not cached" in choice.describe()
    # the next run measures again, and keeps figures measured with the cores free
    again = FakeMeasure(fp32=1.0, bf16=1.9, cpu_share=0.97)
    assert choose_precision(SHAPE, 2, cache_file, measure=again).stored
    assert len(again.calls) == 1
    cached = choose_precision(SHAPE, 2, cache_file, measure=no_measure)
    assert cached.from_cache and cached.precision == "bf16" and cached.cpu_share == 0.97


def test_a_measurement_without_two_rates_is_an_error_and_not_cached(cache_file: Path) -> None:
    with pytest.raises(ValueError, match="two rates"):
        choose_precision(SHAPE, 2, cache_file, measure=FakeMeasure(fp32=0.0, bf16=1.0))
    assert not cache_file.exists()


def test_an_unwritable_cache_folder_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write") as error:
        choose_precision(SHAPE, 2, blocker / "precision.json", measure=FakeMeasure())
    assert "\n" not in str(error.value)


def _probe_in_process(cache_file: str, name: str, log: str) -> dict:
    """One process's probe: its measurement notes who measured and waits for the other
    process to have started, so that the other one asks while this one measures."""
    folder = Path(log).parent
    (folder / f"started-{name}").touch()

    def measure(shape: ProbeShape, threads: int) -> dict[str, float]:
        with open(log, "a") as handle:
            handle.write(f"{name}\n")
        other = "b" if name == "a" else "a"
        deadline = time.monotonic() + 60
        while not (folder / f"started-{other}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # not needed for the assertion: widens the overlap
        return {"fp32": 1.0, "bf16": 2.0}

    return choose_precision(SHAPE, 2, Path(cache_file), measure=measure).to_attr()


def test_two_processes_probing_at_once_measure_once(tmp_path: Path, cache_file: Path) -> None:
    log = tmp_path / "measured.log"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        pending = [
            pool.apply_async(_probe_in_process, (str(cache_file), name, str(log)))
            for name in ("a", "b")
        ]
        results = [p.get(timeout=240) for p in pending]
    assert len(log.read_text().split()) == 1  # one measured; the other waited and read
    assert sorted(r["from_cache"] for r in results) == [False, True]
    assert {r["precision"] for r in results} == {"bf16"}
    assert {r["bf16_steps_per_sec"] for r in results} == {2.0}


# -- when 'auto' is probed -------------------------------------------------------------


def _config(**values: object) -> TrainConfig:
    return TrainConfig(**{"device": "cpu", "batch_size": 32, "threads": 2, **values})


@pytest.mark.parametrize("asked", ["fp32", "bf16"])
def test_an_explicit_precision_is_never_probed(cache_file: Path, asked: str, native_bf16) -> None:
    choice = resolve_trial_precision(
        _config(precision=asked), image_size=64, cache_file=cache_file, measure=no_measure
    )
    assert choice == PrecisionChoice(asked, "asked")
    assert choice.to_attr()["fp32_steps_per_sec"] is None
    assert not cache_file.exists()


def test_auto_on_cuda_is_bf16_without_a_probe(
    cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("trainer.training.resolve_device", lambda name: torch.device("cuda", 0))
    choice = resolve_trial_precision(
        _config(device="cuda"), image_size=64, cache_file=cache_file, measure=no_measure
    )
    assert (choice.precision, choice.how) == ("bf16", "cuda")


def test_auto_without_native_bf16_is_fp32_without_a_probe(
    cache_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    choice = resolve_trial_precision(
        _config(), image_size=64, cache_file=cache_file, measure=no_measure
    )
    assert (choice.precision, choice.how) == ("fp32", "no native bf16")


@pytest.mark.parametrize(("bf16", "expected"), [(1.05, "fp32"), (1.9, "bf16")])
def test_auto_with_native_bf16_is_probed_at_the_trials_shapes(
    cache_file: Path, native_bf16, bf16: float, expected: str
) -> None:
    measure = FakeMeasure(fp32=1.0, bf16=bf16)
    config = _config(arch="resnet34", batch_size=16, channels_last=False, threads=1)
    choice = resolve_trial_precision(config, image_size=48, cache_file=cache_file, measure=measure)
    assert choice.precision == expected
    shape = ProbeShape("resnet34", 48, 16, channels_last=False, in_chans=1, num_classes=4)
    assert measure.calls == [(shape, 1)]


def test_auto_probes_on_torchs_thread_count_when_the_trial_sets_none(
    cache_file: Path, native_bf16
) -> None:
    measure = FakeMeasure()
    resolve_trial_precision(
        _config(threads=None), image_size=32, cache_file=cache_file, measure=measure
    )
    assert measure.calls[0][1] == torch.get_num_threads()


# -- the real measurement --------------------------------------------------------------


def test_the_measurement_times_both_precisions_and_restores_the_state() -> None:
    shape = ProbeShape("resnet18", image_size=16, batch_size=4, channels_last=True)
    threads = torch.get_num_threads()
    rng = torch.get_rng_state()
    figures = measure_steps_per_sec(shape, 1, steps=1, warmup=0)
    assert set(figures) == {"fp32", "bf16", "cpu_share"}
    assert all(rate > 0 for rate in figures.values())
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng)


def test_the_measurement_interleaves_the_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    monkeypatch.setattr(probe, "_training_step", lambda shape, name: lambda: order.append(name))
    measure_steps_per_sec(SHAPE, 1, steps=3, warmup=1)
    warmup, timed = order[:2], order[2:]
    assert warmup == ["fp32", "bf16"]
    assert timed == ["fp32", "bf16", "bf16", "fp32", "fp32", "bf16"]
