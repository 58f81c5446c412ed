"""``hpsearch bench`` on a tiny synthetic demo dataset."""

from __future__ import annotations

import json

import pytest

from hpsearch.cli import main

TINY = ["bench", "--data", "demo", "--demo-n", "48", "--image-size", "32", "--epochs", "1"]
CPU = ["--device", "cpu", "--threads", "1", "--workers", "1", "--batch-size", "8"]


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    """The workdir (where the precision probe keeps its figures) of every bench here."""
    folder = tmp_path / "work"
    monkeypatch.setenv("HPSEARCH_WORKDIR", str(folder))
    return folder


class FakeProbe:
    """The probe's measurement with set figures (steps/s), counting its calls."""

    def __init__(self, fp32: float, bf16: float) -> None:
        self.figures = {"fp32": fp32, "bf16": bf16, "cpu_share": 1.0}
        self.calls = 0

    def __call__(self, shape, threads):
        self.calls += 1
        return dict(self.figures)


@pytest.mark.parametrize("max_steps", [None, 2])
def test_bench_json_reports_throughput_and_memory(capsys, max_steps):
    extra = [] if max_steps is None else ["--max-steps", str(max_steps)]
    assert main([*TINY, *CPU, *extra, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images_per_sec"] > 0
    assert report["synthetic"] is True
    assert report["dataset_images"] == 48
    # A fresh demo dataset has no cache yet: it is built, and its time reported apart.
    assert report["cache_from_existing"] is False
    assert report["cache_build_seconds"] >= 0
    assert report["peak_rss_mb"] >= report["peak_rss_after_load_mb"] > 0
    assert report["cuda_peak_allocated_mb"] is None
    assert report["device"].startswith("cpu (1 thread")
    assert report["precision"] in ("bf16", "fp32") and "bf16" in report["cpu_capability"]
    if max_steps is not None:
        # Cut to whole batches, while the full dataset stays loaded.
        assert report["train_images"] == max_steps * 8
        # held: train and validation; the test split (as in a trial) stays on disk
        held = 48 - report["test_images_not_loaded"]
        assert 0 < report["test_images_not_loaded"] < 48 * 0.2  # about 10 %, stratified
        assert report["dataset_uint8_mb"] == pytest.approx(held * 32 * 32 / 2**20, rel=0.01)
        # on the CPU a trial's splits stay in the cache file: no image memory held
        assert report["images_held_mb"] == 0


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bench_records_the_precision_asked_for(capsys, monkeypatch, precision):
    monkeypatch.setattr("trainer.precision.cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr("trainer.precision_probe.measure_steps_per_sec", FakeProbe(1.0, 2.0))
    assert main([*TINY, *CPU, "--max-steps", "1", "--precision", precision, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == precision
    assert report["precision_choice"]["how"] == "asked"  # never probed


@pytest.mark.parametrize(("bf16", "expected"), [(2.0, "bf16"), (1.05, "fp32")])
def test_bench_auto_shows_the_probes_figures_and_choice(
    capsys, monkeypatch, workdir, bf16, expected
):
    monkeypatch.setattr("trainer.precision.cpu_has_native_bf16", lambda: True)
    probe = FakeProbe(fp32=0.5, bf16=0.5 * bf16)
    monkeypatch.setattr("trainer.precision_probe.measure_steps_per_sec", probe)
    assert main([*TINY, *CPU, "--max-steps", "1", "--precision", "auto", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    choice = report["precision_choice"]
    assert report["precision"] == choice["precision"] == expected  # fit trained in it
    assert choice["how"] == "probe" and choice["from_cache"] is False
    assert choice["fp32_steps_per_sec"] == 0.5
    assert choice["bf16_steps_per_sec"] == pytest.approx(0.5 * bf16)
    assert choice["threads"] == 1
    assert choice["shape"] == {
        "arch": "resnet18",
        "image_size": 32,
        "batch_size": 8,
        "channels_last": True,
        "in_chans": 1,
        "num_classes": 4,
    }
    assert (workdir / "precision-probe.json").is_file()

    # the next bench (or trial) of these shapes reads the figures from the workdir
    assert main([*TINY, *CPU, "--max-steps", "1"]) == 0
    out = capsys.readouterr().out
    assert probe.calls == 1
    line = next(row for row in out.splitlines() if row.startswith("precision"))
    assert f"{expected}, chosen by the probe: fp32 0.5 steps/s (4 img/s)" in line
    assert f"bf16 {bf16:.2f}x fp32" in line and "from the cache" in line


def test_bench_auto_precision_is_fp32_on_a_cpu_without_bf16(capsys, monkeypatch):
    monkeypatch.setattr("trainer.precision.cpu_has_native_bf16", lambda: False)
    assert main([*TINY, *CPU, "--max-steps", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["precision"] == "fp32"
    assert report["precision_choice"]["how"] == "no native bf16"


def test_a_trial_records_its_precision():
    from types import SimpleNamespace

    from hpsearch.run.objective import result_attrs

    result = SimpleNamespace(
        best_epoch=1,
        epochs_run=1,
        images_per_sec=1.0,
        wall_seconds=1.0,
        device="cpu (2 threads)",
        precision="bf16",
        peak_memory_mb=1.0,
        best_checkpoint=None,
        best_metrics={"val_accuracy": 0.5},
    )
    assert result_attrs(result, resumed=False)["precision"] == "bf16"


def test_bench_text_output_names_the_figures(capsys):
    assert main([*TINY, *CPU]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out
    assert "images/s" in out
    assert "peak RSS" in out


@pytest.mark.parametrize(
    "bad", [["--image-size", "0"], ["--batch-size", "-1"], ["--demo-n", "3"], ["--arch", "vgg"]]
)
def test_bench_rejects_bad_values_with_one_line(capsys, bad):
    assert main([*TINY, *CPU, *bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hpsearch bench: error:")


def test_bench_without_cuda_refuses_cuda_before_writing_data(capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")

    def no_demo(*args, **kwargs):
        raise AssertionError("the demo dataset was generated before the device was checked")

    monkeypatch.setattr("trainer.demo.write_demo_dataset", no_demo)
    assert main([*TINY, "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
