"""Peak resident memory of a trial process on a 20,000-image dataset at 224 px.

Writes 20,000 synthetic 224-px grayscale PNGs (smooth gradient plus coarse random blocks;
they only need to be decodable images, so a trivial generator writes them fast) into a
temporary folder, then runs ``hpsearch bench`` on them twice as a separate process, each
of which reports its own peak RSS (``VmHWM``, see ``trainer.training.peak_rss_mb``):

1. the cache is built (decoded once by worker processes) and the trial trains;
2. the cache is reused, as by every later trial of a study.

Each run loads the dataset as a CPU trial does (train and validation splits left in the
cache file, each batch read from it; the held-out test split not at all) and trains a few
steps on the CPU (``--max-steps``): enough to reach the steady-state memory of training
without the hours a full 224-px epoch takes on a CPU. Validation runs on as many images
as were trained on, in one batch. Everything is deleted afterwards.

The original pipeline held every image as a 3-channel float32 tensor; its footprint is
computed, not run: 20,000 x 3 x 224 x 224 x 4 bytes.

Also times the project's demo generator (``trainer.demo``) on a sample at 224 px with two
processes, to say how long the same dataset would take with realistic synthetic images.

Usage (about 3 minutes on 2 cores)::

    python benchmarks/memory_rss.py
    python benchmarks/memory_rss.py --n 2000 --max-steps 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# Real proportions of the public database (COVID, lung opacity, normal, viral pneumonia).
SHARES = {"covid": 3616, "lung_opacity": 6012, "normal": 10192, "pneumonia": 1345}


def _write_chunk(task: tuple[str, str, int, int, int]) -> int:
    out, folder, start, stop, size = task
    rng = np.random.default_rng(start)
    ramp = np.linspace(0.0, 1.0, size)
    base = (ramp[None, :] * ramp[:, None] * 150).astype(np.uint8)
    cell = max(1, size // 28)
    reps = -(-size // cell)
    for i in range(start, stop):
        blocks = rng.integers(0, 100, (reps, reps), dtype=np.uint8)
        blocks = blocks.repeat(cell, 0).repeat(cell, 1)[:size, :size]
        Image.fromarray(base + blocks).save(Path(out) / folder / f"{i}.png", compress_level=1)
    return stop - start


def write_fast_dataset(out: Path, n: int, size: int, workers: int) -> float:
    """``n`` synthetic PNGs in folder-per-class layout; returns the seconds it took."""
    started = time.perf_counter()
    total = sum(SHARES.values())
    counts = {k: max(1, round(n * v / total)) for k, v in SHARES.items()}
    counts["normal"] += n - sum(counts.values())
    out.mkdir(parents=True)
    (out / "SYNTHETIC.txt").write_text(
        "SYNTHETIC DATA: generated images (gradient plus random blocks) for a memory "
        "benchmark; not radiographs.\n"
    )
    tasks, start = [], 0
    for folder, count in counts.items():
        (out / folder).mkdir()
        for lo in range(start, start + count, 500):
            tasks.append((str(out), folder, lo, min(lo + 500, start + count), size))
        start += count
    with ProcessPoolExecutor(workers) as pool:
        written = sum(pool.map(_write_chunk, tasks))
    assert written == n
    return time.perf_counter() - started


def time_demo_generator(tmp: Path, sample: int, size: int, workers: int) -> float:
    """Seconds per image of ``trainer.demo`` at ``size`` with ``workers`` processes."""
    from trainer.demo import write_demo_dataset

    made = write_demo_dataset(tmp / "demo-sample", n=sample, size=size, workers=workers)
    shutil.rmtree(tmp / "demo-sample")
    return made["seconds"] / sample


def run_trial(data: Path, workdir: Path, args: argparse.Namespace) -> dict:
    """``hpsearch bench`` in its own process; its JSON report (peak RSS measured inside)."""
    command = [
        sys.executable, "-m", "hpsearch.cli", "bench",
        "--data", str(data),
        "--image-size", str(args.image_size),
        "--batch-size", str(args.batch_size),
        "--epochs", "1",
        "--max-steps", str(args.max_steps),
        "--device", "cpu",
        "--workers", str(args.workers),
        "--workdir", str(workdir),
        "--precision", args.precision,
        "--json",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout)
    report["process_seconds"] = time.perf_counter() - started
    return report


def framework_rss_mb() -> float:
    """Peak RSS of a process that only imports what a trial does (torch, torchvision, trainer)."""
    code = "import trainer.data, trainer.training; print(trainer.training.peak_rss_mb())"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-steps", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="processes writing and decoding")
    parser.add_argument("--demo-sample", type=int, default=100,
                        help="images to time trainer.demo on (0: skip)")  # fmt: skip
    parser.add_argument("--precision", default="auto", help="auto (default), fp32 or bf16")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()

    out: dict = {"settings": {k: v for k, v in vars(args).items() if k != "json"}}
    out["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    out["load_average_start"] = os.getloadavg()[0]
    float_gb = args.n * 3 * args.image_size**2 * 4 / 1e9
    uint8_gb = args.n * args.image_size**2 / 1e9
    out["original_float32_estimate_gb"] = float_gb
    out["uint8_one_channel_gb"] = uint8_gb
    print(f"load average {out['load_average_start']:.2f}", flush=True)
    out["framework_rss_mb"] = framework_rss_mb()
    print(
        f"importing torch, torchvision and trainer: {out['framework_rss_mb']:.0f} MiB", flush=True
    )
    with tempfile.TemporaryDirectory(prefix="bench-memory-", dir="/tmp") as tmp_name:
        tmp = Path(tmp_name)
        if args.demo_sample:
            per_image = time_demo_generator(tmp, args.demo_sample, args.image_size, args.workers)
            out["demo_generator_seconds_per_image"] = per_image
            print(
                f"trainer.demo at {args.image_size} px, {args.workers} processes: "
                f"{per_image * 1000:.1f} ms/image -> {per_image * args.n / 60:.1f} min "
                f"for {args.n}",
                flush=True,
            )
        data = tmp / "data"
        seconds = write_fast_dataset(data, args.n, args.image_size, args.workers)
        out["write_seconds"] = seconds
        print(f"wrote {args.n} SYNTHETIC {args.image_size}-px PNGs in {seconds:.1f} s", flush=True)
        for name in ("cold_cache", "warm_cache"):
            report = run_trial(data, tmp / "work", args)
            out[name] = report
            cache = (
                "reused"
                if report["cache_from_existing"]
                else f"built in {report['cache_build_seconds']:.1f} s"
            )
            training = report["peak_rss_mb"] - report["peak_rss_after_load_mb"]
            print(
                f"{name}: peak RSS {report['peak_rss_mb']:.0f} MiB "
                f"({report['peak_rss_after_load_mb']:.0f} MiB after loading "
                f"{report['dataset_uint8_mb']:.0f} MiB of uint8 images, "
                f"{report['images_held_mb']:.0f} MiB of them held, then +{training:.0f} MiB "
                f"training at batch {args.batch_size}, {report['precision']}); cache {cache}; "
                f"process {report['process_seconds']:.0f} s",
                flush=True,
            )
    out["load_average_end"] = os.getloadavg()[0]
    print(
        f"original pipeline, all images as float32 x 3 channels: {float_gb:.1f} GB "
        f"(computed); uint8, one channel: {uint8_gb:.2f} GB",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
