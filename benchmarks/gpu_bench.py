"""GPU throughput of the trainer against the original pipeline, in one run of a few minutes.

Measures ResNet-18 training at 224 px on one GPU:

a. the trainer (``trainer.fit``: uint8 images resident in GPU memory, batches built with
   tensor ops, bf16 autocast, channels_last, one-channel stem) at batch 256 and 512;
b. the original pipeline written plainly: PNG files decoded by PIL in 8 ``DataLoader``
   worker processes every epoch, 3-channel float tensors from torchvision transforms on the
   CPU (Resize, CenterCrop, RandomHorizontalFlip, ToTensor, Normalize), fp32 model (no AMP,
   as the original), batch 256;
c. 2 and 4 trials at once on the one GPU, each its own process (this script in child
   mode), total images/s;
d. ``torch.compile`` on vs off for the trainer, compile time apart;
e. the ceilings: forward + backward + optimizer step on one resident batch, for the
   trainer's model (bf16, channels_last, 1 channel) and the plain one (fp32, 3 channels).

Every image is synthetic (generated here; smooth structure plus noise), since only the
speed is measured. Each trainer measurement runs one warm-up epoch (cuDNN autotuning,
allocator) and then times whole epochs of a fixed number of steps; ``fit`` ends every
epoch with a host synchronisation, so epoch times are device times. Other measurements
call ``torch.cuda.synchronize`` around a fixed number of timed steps after a warm-up.

Imports only torch, torchvision, numpy, PIL and this repository's ``trainer`` package
(found by path; ``trainer.fit`` needs neither sklearn, optuna nor wandb). Results are
printed as they come and written to ``$OUT/gpu_bench.json`` (if ``$OUT`` is set) after
every part, so a run cut short keeps what it measured. Parts that would overrun the time
budget are skipped and say so.

Usage::

    python benchmarks/gpu_bench.py                 # on the GPU machine, 2-5 minutes
    python benchmarks/gpu_bench.py --only d f      # some parts only (letters as above)
    python benchmarks/gpu_bench.py --smoke         # every code path on the CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import models, transforms

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from original_pipeline import ORIGINAL_MEAN, ORIGINAL_STD, original_transform  # noqa: E402

from trainer.config import TrainConfig  # noqa: E402
from trainer.data import Data  # noqa: E402
from trainer.training import fit, peak_rss_mb  # noqa: E402

# The original team's settings: SGD lr 1e-3, momentum 0.5, weight decay 1e-2 (their
# normalisation constants are in original_pipeline.py).
ORIGINAL = {
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.5,
    "weight_decay": 1e-2,
    "precision": "auto",
}
SOURCE_SIZE = 299
"""Side of the competition's PNGs; the plain pipeline resizes them to the training size."""

GOAL_IMAGES_PER_SEC = 8000
GOAL_RATIO = 3.0


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------- settings


def settings(smoke: bool) -> dict:
    """Sizes of every part; ``smoke`` shrinks them to run on a CPU in about a minute."""
    if smoke:
        return {
            "device": "cpu",
            "size": 32,
            "batches": [8, 16],
            "steps": 3,
            "val": 16,
            "plain_batch": 8,
            "plain_workers": 2,
            "plain_files": 48,
            "plain_warmup": 1,
            "plain_steps": 3,
            "ceiling_steps": 2,
            "children": [2, 4],
            "child_batch": 8,
            "child_steps": 2,
            "compile_batch": 8,
            "memory_images": 400,
        }
    return {
        "device": "cuda",
        "size": 224,
        "batches": [256, 512],
        "steps": 40,
        "val": 1024,
        "plain_batch": 256,
        "plain_workers": 8,
        "plain_files": 2048,
        "plain_warmup": 5,
        "plain_steps": 30,
        "ceiling_steps": 20,
        "children": [2, 4],
        "child_batch": 256,
        "child_steps": 30,
        "compile_batch": 256,
        "memory_images": 20_000,
    }


# --------------------------------------------------------------------------- synthetic data


def synthetic_images(n: int, size: int, device: str, seed: int) -> torch.Tensor:
    """``n`` synthetic uint8 images (N, 1, S, S) made on ``device``: blurred blocks plus noise."""
    generator = torch.Generator(device=device).manual_seed(seed)
    out = torch.empty((n, 1, size, size), dtype=torch.uint8, device=device)
    ramp = torch.linspace(0, 1, size, device=device)
    base = (ramp[None, :] * ramp[:, None] * 120)[None, None]
    coarse = max(2, size // 8)
    for start in range(0, n, 1024):
        stop = min(start + 1024, n)
        low = torch.rand((stop - start, 1, coarse, coarse), generator=generator, device=device)
        smooth = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        noise = torch.randn(smooth.shape, generator=generator, device=device)
        out[start:stop] = (base + smooth * 100 + noise * 6).clamp_(0, 255).to(torch.uint8)
    return out


def synthetic_data(n_train: int, n_val: int, size: int, device: str, seed: int = 0) -> Data:
    """A ``trainer.data.Data`` of synthetic images already on ``device``, 4 random classes."""
    x = synthetic_images(n_train + n_val, size, device, seed)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    y = torch.randint(0, 4, (n_train + n_val,), generator=generator, device=device)
    return Data(
        train_x=x[:n_train],
        train_y=y[:n_train],
        val_x=x[n_train:],
        val_y=y[n_train:],
        test_x=x[:0],
        test_y=y[:0],
        mean=ORIGINAL_MEAN,
        std=ORIGINAL_STD,
        image_size=size,
        source="synthetic (generated in memory)",
        synthetic=True,
    )


def _write_pngs(task: tuple[str, int, int, int]) -> int:
    folder, start, stop, size = task
    rng = np.random.default_rng(start)
    ramp = np.linspace(0.0, 1.0, size)
    base = ramp[None, :] * ramp[:, None] * 150
    cell, reps = 8, -(-size // 8)
    for i in range(start, stop):
        blocks = rng.integers(0, 90, (reps, reps)).repeat(cell, 0).repeat(cell, 1)[:size, :size]
        pixels = np.clip(base + blocks + rng.normal(0, 6, (size, size)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(Path(folder) / f"synthetic-{i}.png")
    return stop - start


def write_pngs(folder: Path, n: int, size: int, workers: int) -> list[Path]:
    """``n`` synthetic grayscale PNGs (about 60 KB at 299 px, like the real files)."""
    step = max(1, -(-n // (workers * 4)))
    tasks = [(str(folder), a, min(a + step, n), size) for a in range(0, n, step)]
    with ProcessPoolExecutor(workers) as pool:
        written = sum(pool.map(_write_pngs, tasks))
    if written != n:
        raise RuntimeError(f"wrote {written} of {n} PNG files")
    return [folder / f"synthetic-{i}.png" for i in range(n)]


# --------------------------------------------------------------------------- (a) the trainer


def bench_trainer(
    data: Data, batch: int, steps: int, device: str, *, compile: bool = False, epochs: int = 3
) -> dict:
    """``fit`` on ``steps`` batches per epoch; epoch 1 warms up, the rest are timed.

    With ``epochs=1`` the one epoch is all there is, and it is what is reported.
    """
    n = steps * batch
    if data.train_y.numel() < n:
        raise ValueError(f"need {n} training images, have {data.train_y.numel()}")
    view = replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n])
    config = TrainConfig(
        **ORIGINAL, arch="resnet18", epochs=epochs, batch_size=batch, device=device, compile=compile
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = fit(config, view)
    timed = result.history[1:] or result.history
    seconds = sum(n / row["images_per_sec"] for row in timed)
    return {
        "batch_size": batch,
        "steps_per_epoch": steps,
        "timed_epochs": len(timed),
        "images_per_sec": n * len(timed) / seconds,
        "epoch_images_per_sec": [row["images_per_sec"] for row in result.history],
        "first_epoch_train_seconds": n / result.history[0]["images_per_sec"],
        "steady_epoch_train_seconds": seconds / len(timed),
        "peak_memory_mb": result.peak_memory_mb,
        "host_peak_rss_mb": peak_rss_mb(),
        "device": result.device,
        "precision": result.precision,
        "compile": compile,
    }


# --------------------------------------------------------------------------- (b) the plain pipeline


class PngDataset(Dataset):
    """Files decoded by PIL on every access, as ImageFolder's loader does (RGB)."""

    def __init__(self, paths: list[Path], length: int, transform: transforms.Compose) -> None:
        self.paths, self.length, self.transform = paths, length, transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index % len(self.paths)]) as img:
            rgb = img.convert("RGB")
        return self.transform(rgb), index % 4


def plain_model(device: str) -> nn.Module:
    model = models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 4)
    return model.to(device)


def bench_plain(paths: list[Path], s: dict, device: str) -> dict:
    """The original pipeline: per-image CPU decode and transforms, fp32 model."""
    size, batch = s["size"], s["plain_batch"]
    transform = original_transform(size)
    total_steps = s["plain_warmup"] + s["plain_steps"]
    # One long epoch over the files (repeated), so worker start-up happens once, in warm-up.
    dataset = PngDataset(paths, total_steps * batch, transform)
    loader = DataLoader(
        dataset, batch_size=batch, shuffle=True, num_workers=s["plain_workers"], drop_last=True
    )
    torch.manual_seed(0)
    model = plain_model(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.5, weight_decay=1e-2)
    criterion = nn.CrossEntropyLoss()
    model.train()
    started = None
    for step, (x, y) in enumerate(loader):
        if step == s["plain_warmup"]:
            _sync(device)
            started = time.perf_counter()
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
    _sync(device)
    seconds = time.perf_counter() - started
    return {
        "batch_size": batch,
        "timed_steps": s["plain_steps"],
        "images_per_sec": s["plain_steps"] * batch / seconds,
        "loader_workers": s["plain_workers"],
        "source": f"{len(paths)} synthetic {SOURCE_SIZE}-px PNG files, decoded every access",
        "precision": "fp32 (PyTorch defaults: cuDNN may use TF32)",
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
    }


# --------------------------------------------------------------------------- (e) ceilings


def bench_ceiling(s: dict, device: str, *, trainer_like: bool) -> dict:
    """Forward + backward + SGD step on one resident, already normalised batch."""
    batch, size = s["batches"][0], s["size"]
    torch.manual_seed(0)
    model = plain_model(device)
    chans = 1 if trainer_like else 3
    if trainer_like:
        model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False).to(device)
    x = torch.randn(batch, chans, size, size, device=device)
    y = torch.randint(0, 4, (batch,), device=device)
    cuda = device == "cuda"
    if trainer_like and cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=1e-3, momentum=0.5, weight_decay=1e-2, fused=cuda
    )
    use_bf16 = trainer_like and cuda

    def step() -> None:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    _sync(device)
    started = time.perf_counter()
    for _ in range(s["ceiling_steps"]):
        step()
    _sync(device)
    return {
        "batch_size": batch,
        "channels": chans,
        "precision": "bf16 autocast, channels_last" if use_bf16 else "fp32",
        "images_per_sec": s["ceiling_steps"] * batch / (time.perf_counter() - started),
    }


# --------------------------------------------------------------------------- (c) trials at once


def child_main(args: argparse.Namespace) -> None:
    """One trial of a concurrent group: warm up, wait for the others, then the timed fit."""
    s = settings(args.smoke)
    device = s["device"]
    batch, steps = s["child_batch"], s["child_steps"]
    data = synthetic_data(batch * steps, s["val"], s["size"], device, seed=args.child_index)
    bench_trainer(data, batch, steps, device, epochs=1)  # cuDNN autotuning, allocator
    ready = Path(args.ready_dir)
    (ready / f"ready-{args.child_index}").touch()
    deadline = time.monotonic() + 180
    while len(list(ready.glob("ready-*"))) < args.n_children:
        if time.monotonic() > deadline:
            raise SystemExit("other trials never became ready")
        time.sleep(0.05)
    started = time.time()
    result = bench_trainer(data, batch, steps, device, epochs=3)
    result.update(started=started, ended=time.time())
    print("RESULT " + json.dumps(result), flush=True)


def bench_concurrent(k: int, smoke: bool, budget_left: float) -> dict:
    """``k`` child processes training at once; their summed and wall-clock throughput."""
    s = settings(smoke)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-trials-") as tmp:
        procs, logs = [], []
        for i in range(k):
            # Output goes to files: a full pipe would stall a trial mid-measurement.
            logs.append((Path(tmp) / f"out-{i}.txt", Path(tmp) / f"err-{i}.txt"))
            with open(logs[-1][0], "w") as out, open(logs[-1][1], "w") as err:
                command = [sys.executable, __file__, "--child", str(i), "--n-children", str(k)]
                command += ["--ready-dir", tmp] + (["--smoke"] if smoke else [])
                command += ["--precision", ORIGINAL["precision"]]
                procs.append(subprocess.Popen(command, stdout=out, stderr=err))
        deadline = time.monotonic() + max(30.0, budget_left)
        outputs = []
        for proc, (out_path, err_path) in zip(procs, logs, strict=True):
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"{k} concurrent trials ran past the time budget") from None
            if proc.returncode != 0:
                tail = err_path.read_text()[-2000:]
                raise RuntimeError(f"a trial process failed ({proc.returncode}):\n{tail}")
            line = [x for x in out_path.read_text().splitlines() if x.startswith("RESULT ")][-1]
            outputs.append(json.loads(line[len("RESULT ") :]))
    n = s["child_batch"] * s["child_steps"]
    images = sum(n * len(r["epoch_images_per_sec"]) for r in outputs)
    wall = max(r["ended"] for r in outputs) - min(r["started"] for r in outputs)
    return {
        "trials": k,
        "batch_size": s["child_batch"],
        "per_trial_images_per_sec": [r["images_per_sec"] for r in outputs],
        "total_images_per_sec": sum(r["images_per_sec"] for r in outputs),
        # All epochs of the timed fits over the wall time from the first start to the last
        # end, model set-up and validation included: a lower bound.
        "total_images_per_sec_wall": images / wall,
        "peak_memory_mb_per_trial": [r["peak_memory_mb"] for r in outputs],
        # Each trial made its images on the GPU, as load_data(device='cuda') fills the
        # splits there: the host memory a GPU trial needs.
        "host_peak_rss_mb_per_trial": [r["host_peak_rss_mb"] for r in outputs],
    }


# --------------------------------------------------------------------------- (f) host memory


def memory_child_main(args: argparse.Namespace) -> None:
    """A GPU trial's data path on PNG files: ``load_data(device=...)`` then a short ``fit``."""
    from trainer.data import DataConfig, load_data

    s = settings(args.smoke)
    device = s["device"]
    root = Path(args.memory_child)
    started = time.perf_counter()
    data = load_data(
        DataConfig(root=root, image_size=s["size"], cache_dir=root.parent / "cache"),
        device=device if device == "cuda" else None,
    )
    load_seconds = time.perf_counter() - started
    after_load = peak_rss_mb()
    batch = s["child_batch"]
    n = batch * s["child_steps"]
    view = replace(data, train_x=data.train_x[:n], train_y=data.train_y[:n], val_x=data.val_x[:n])
    view = replace(view, val_y=data.val_y[:n])
    result = fit(TrainConfig(**ORIGINAL, epochs=1, batch_size=batch, device=device), view)
    report = {
        "images": int(data.train_y.numel() + data.val_y.numel() + data.test_y.numel()),
        "image_size": s["size"],
        "dataset_uint8_mb": (data.train_x.numel() + data.val_x.numel()) / 2**20,
        "load_seconds": load_seconds,
        "host_peak_rss_after_load_mb": after_load,
        "host_peak_rss_mb": peak_rss_mb(),
        "device_peak_memory_mb": result.peak_memory_mb,
        "train_steps": s["child_steps"],
    }
    print("RESULT " + json.dumps(report), flush=True)


def bench_memory(smoke: bool, budget_left: float) -> dict:
    """Write a 20,000-image PNG dataset, then run a trial's data path in a fresh process."""
    from memory_rss import write_fast_dataset  # beside this file

    s = settings(smoke)
    with tempfile.TemporaryDirectory(prefix="gpu-bench-memory-") as tmp:
        root = Path(tmp) / "data"
        workers = min(16, os.cpu_count() or 1)
        write_seconds = write_fast_dataset(root, s["memory_images"], s["size"], workers)
        command = [sys.executable, __file__, "--memory-child", str(root)]
        command += (["--smoke"] if smoke else []) + ["--precision", ORIGINAL["precision"]]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=max(30.0, budget_left), check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"the trial process failed ({done.returncode}):\n{done.stderr[-2000:]}"
            )
        line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
        result = json.loads(line[len("RESULT ") :])
    result["png_write_seconds"] = write_seconds
    result["original_float32_estimate_gb"] = s["memory_images"] * 3 * s["size"] ** 2 * 4 / 1e9
    return result


# --------------------------------------------------------------------------- driver


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def environment(device: str) -> dict:
    env = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        env["gpu_memory_gb"] = torch.cuda.get_device_properties(0).total_memory / 1e9
    return env


class Report:
    """Results so far; printed part by part and saved after each part."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.results = path, {}

    def add(self, key: str, value: object) -> None:
        self.results[key] = value
        log(f"[{key}] {json.dumps(value, default=str)}")
        self.save()

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.results, indent=2, default=str))


def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    s = settings(args.smoke)
    device = s["device"]
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke to test the code paths on a CPU")
    out_dir = os.environ.get("OUT")
    report = Report(Path(out_dir) / "gpu_bench.json" if out_dir else None)
    report.add("mode", "smoke (CPU, tiny sizes: figures mean nothing)" if args.smoke else "gpu")
    report.add("environment", environment(device))

    def left() -> float:
        return args.budget_s - (time.monotonic() - started)

    wanted = set(args.only or "abcdef")

    def part(key: str, needs_s: float, run) -> None:
        if key[0] not in wanted:
            return
        if left() < needs_s:
            report.add(key, {"skipped": f"{left():.0f} s left of the budget, needs ~{needs_s:.0f}"})
            return
        t0 = time.monotonic()
        try:
            value = run()
        except Exception as error:  # one failing part must not lose the others
            value = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
        if isinstance(value, dict):
            value["part_seconds"] = round(time.monotonic() - t0, 1)
        report.add(key, value)

    with tempfile.TemporaryDirectory(prefix="gpu-bench-png-") as png_dir:
        # PNGs are written first, before CUDA is initialised in this process.
        t0 = time.monotonic()
        source = SOURCE_SIZE if not args.smoke else 48
        files = s["plain_files"] if "b" in wanted else 0
        paths = write_pngs(Path(png_dir), files, source, min(16, os.cpu_count() or 1))
        report.add("png_files", {"n": len(paths), "seconds": round(time.monotonic() - t0, 1)})

        biggest = max(s["batches"]) * s["steps"] if "a" in wanted else 0
        t0 = time.monotonic()
        data = synthetic_data(biggest, s["val"], s["size"], device)
        _sync(device)
        report.add(
            "synthetic_data",
            {
                "train_images": biggest,
                "val_images": s["val"],
                "bytes": data.train_x.numel() + data.val_x.numel(),
                "seconds": round(time.monotonic() - t0, 1),
            },
        )
        for batch in s["batches"]:
            part(
                f"a_trainer_batch{batch}",
                30,
                lambda batch=batch: bench_trainer(data, batch, s["steps"], device),
            )
        part("b_plain", 40, lambda: bench_plain(paths, s, device))
    part("e_ceiling_trainer_model", 15, lambda: bench_ceiling(s, device, trainer_like=True))
    part("e_ceiling_plain_model", 15, lambda: bench_ceiling(s, device, trainer_like=False))

    trainer_256 = report.results.get(f"a_trainer_batch{s['batches'][0]}", {})
    plain = report.results.get("b_plain", {})
    if "images_per_sec" in trainer_256 and "images_per_sec" in plain:
        ratio = trainer_256["images_per_sec"] / plain["images_per_sec"]
        best = max(
            report.results[f"a_trainer_batch{b}"].get("images_per_sec", 0.0) for b in s["batches"]
        )
        report.add(
            "goals",
            {
                "trainer_images_per_sec_best": best,
                "goal_images_per_sec": GOAL_IMAGES_PER_SEC,
                "images_per_sec_met": best >= GOAL_IMAGES_PER_SEC,
                "ratio_trainer_to_plain_same_batch": ratio,
                "goal_ratio": GOAL_RATIO,
                "ratio_met": ratio >= GOAL_RATIO,
            },
        )

    data = None  # the trials of part c make their own; free this one first
    if device == "cuda":
        torch.cuda.empty_cache()
    for k in s["children"]:
        part(f"c_concurrent_{k}", 60, lambda k=k: bench_concurrent(k, args.smoke, left() - 5))

    def compiled() -> dict:
        batch = s["compile_batch"]
        data = synthetic_data(batch * s["steps"], s["val"], s["size"], device)
        result = bench_trainer(data, batch, s["steps"], device, compile=True)
        eager = report.results.get(f"a_trainer_batch{batch}", {}).get("images_per_sec")
        # The first epoch's extra time over a steady epoch is the compilation.
        result["compile_seconds"] = (
            result["first_epoch_train_seconds"] - result["steady_epoch_train_seconds"]
        )
        result["eager_images_per_sec"] = eager
        if eager:
            result["speedup_over_eager"] = result["images_per_sec"] / eager
        if device != "cuda":
            result["note"] = "fit compiles only on CUDA; on the CPU this ran eagerly"
        return result

    part("f_memory_trial", 60, lambda: bench_memory(args.smoke, left() - 5))
    part("d_compile", 120, compiled)
    report.add("total_seconds", round(time.monotonic() - started, 1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, every code path")
    parser.add_argument(
        "--budget-s", type=float, default=330, help="skip parts that would end past this"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=list("abcdef"),
        help="run only these parts (letters as in the description above)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="the trainer's precision (default auto: bf16 on CUDA)",
    )
    parser.add_argument("--child", type=int, dest="child_index", help=argparse.SUPPRESS)
    parser.add_argument("--n-children", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ready-dir", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    ORIGINAL["precision"] = arguments.precision  # every fit of this run and its children
    if arguments.child_index is not None:
        child_main(arguments)
    elif arguments.memory_child is not None:
        memory_child_main(arguments)
    else:
        main(arguments)
