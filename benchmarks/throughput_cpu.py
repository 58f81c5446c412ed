"""Trainer throughput against the original team's pipeline, in one run on the same data.

Three measurements on one machine, on one synthetic demo dataset:

* **trainer**: ``trainer.load_data`` + ``trainer.fit`` as a CPU trial runs them (one-channel
  ResNet-18, uint8 images decoded once and read a batch at a time from the cache file,
  batches built with tensor ops, ``--precision``; ``auto`` is decided as for a trial, by
  the precision probe on a CPU with native bf16, its figures cached in the temporary
  folder, so the first run pays for it, outside the timed training); images/s from
  ``FitResult``, which counts the training loop of every epoch, batch building included
  (the cache build and the per-epoch validation are outside it, and timed separately).
* **precisions**: the trainer in fp32, in bf16 and in ``auto``, one run of each a round,
  the order rotated every round: is ``auto`` as fast as the better of the two here?
* **probe**: the precision probe's measurement alone, once a round: its figures, the
  spread of bf16's gain between rounds, and what a probe costs.
* **held**: the same with the splits held in memory (``load_data(stream=False)``), to
  show what reading batches from the cache file costs.
* **plain**: the original pipeline written plainly: torchvision ``ImageFolder`` over a
  folder-per-class view (symlinks) of the same PNGs, decoded by PIL every epoch into
  3-channel tensors (Resize, CenterCrop, RandomHorizontalFlip, ToTensor, Normalize), a
  ``DataLoader`` with worker processes, torchvision ``resnet18`` with ``fc`` -> 4 classes,
  SGD lr 1e-3, momentum 0.5, weight decay 1e-2; the same image size, batch size, epochs
  and 90/10 split. images/s over the training loops of all epochs.
* **work**: images per CPU-second of each pipeline with one torch thread (the plain
  pipeline's DataLoader workers included): the work each does per image, which other
  processes on a shared machine do not change (wall-clock figures there vary by 2x).
* **formats**: the same for the one-channel model with one thread, in images per
  CPU-second, NCHW and NHWC in fp32 and NHWC under bf16 autocast: what layout and
  precision are worth on this CPU, whatever else runs on it.
* **ceiling**: forward + backward alone on one random batch that stays in memory, for the
  one-channel model in NHWC (as ``fit`` trains) and the 3-channel one in NCHW (as the
  plain pipeline): what each model costs with no data handling.

Both training runs use the same hyperparameters (the original team's), so they do the
same arithmetic per image apart from the stem's input channels.

Usage (about 4 minutes on 2 idle cores; each extra round adds about 1.5)::

    python benchmarks/throughput_cpu.py --rounds 3
    python benchmarks/throughput_cpu.py --n 400 --epochs 1 --only trainer plain   # a quick check
    python benchmarks/throughput_cpu.py --only trainer held --rounds 3  # streaming's cost
    python benchmarks/throughput_cpu.py --only probe precisions --rounds 3  # precision auto
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from original_pipeline import original_transform
from torch import nn
from torch.utils.data import DataLoader, random_split
from torchvision import datasets, models

from trainer.batches import batches_per_epoch
from trainer.classes import class_index
from trainer.config import TrainConfig
from trainer.data import DataConfig, load_data
from trainer.demo import write_demo_dataset
from trainer.precision import cpu_capability
from trainer.precision_probe import (
    PROBE_CACHE_FILE,
    ProbeShape,
    measure_steps_per_sec,
    resolve_trial_precision,
)
from trainer.training import fit


def original_hparams(batch_size: int, epochs: int) -> dict:
    return {
        "arch": "resnet18",
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.5,
        "weight_decay": 1e-2,
        "device": "cpu",
    }


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_trainer(
    root: Path,
    cache: Path,
    args: argparse.Namespace,
    *,
    threads: int | None = None,
    stream: bool = True,
    precision: str | None = None,
) -> dict:
    """Cache build, split loading and ``fit``, each timed.

    The data are loaded as a trial loads them (no test split); ``stream`` reads batches
    from the cache file as a CPU trial does, ``stream=False`` holds the splits in memory.
    With ``threads`` (the CPU-time measurement), validation is cut to one batch so that the
    CPU time of ``fit`` is, to within about 1 %, that of its training loop. ``precision``
    (default ``--precision``) ``auto`` is decided as for a trial: by the precision probe,
    whose figures are cached beside the image cache and whose time is reported apart.
    """
    started = time.perf_counter()
    config = DataConfig(root=root, image_size=args.image_size, cache_dir=cache)
    data = load_data(config, with_test=False, stream=stream)
    load_seconds = time.perf_counter() - started
    config = TrainConfig(
        **original_hparams(args.batch_size, args.epochs),
        threads=threads or args.threads,
        precision=precision or args.precision,
    )
    started = time.perf_counter()
    choice = resolve_trial_precision(
        config, image_size=args.image_size, cache_file=cache / PROBE_CACHE_FILE
    )
    choice_seconds = time.perf_counter() - started
    config = replace(config, precision=choice.precision)
    if threads is not None:
        data = replace(
            data, val_x=data.val_x[: args.batch_size], val_y=data.val_y[: args.batch_size]
        )
    cpu_started = cpu_seconds()
    result = fit(config, data)
    cpu = cpu_seconds() - cpu_started
    n = int(data.train_y.numel())
    trained = batches_per_epoch(n, args.batch_size) * min(n, args.batch_size) * result.epochs_run
    return {
        "images_per_cpu_second": trained / cpu,
        "images_per_sec": result.images_per_sec,
        "epoch_images_per_sec": [row["images_per_sec"] for row in result.history],
        "train_images_per_epoch": int(data.train_y.numel()),
        "cache_and_load_seconds": load_seconds,
        "fit_seconds": result.wall_seconds,
        "device": result.device,
        "precision": result.precision,
        "asked": precision or args.precision,
        "precision_choice": choice.to_attr(),
        "choice_seconds": choice_seconds,
        "streamed": stream,
    }


def folder_per_class(root: Path, out: Path) -> Path:
    """A folder-per-class view of the demo data (symlinks), the layout ImageFolder reads.

    ImageFolder numbers classes by sorted folder name; that ordering problem of the
    original does not change the speed measured here.
    """
    for path in sorted(root.glob("*/images/*.png")):
        folder = out / str(class_index(path.parent.parent.name))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).symlink_to(path.resolve())
    return out


def bench_plain(root: Path, args: argparse.Namespace, *, threads: int | None = None) -> dict:
    """The original pipeline: PIL decode + transforms per image per epoch, 3 channels.

    ``threads`` sets the main process's torch threads for the run (the workers use one).
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _plain(root, args)
    finally:
        torch.set_num_threads(previous)


def _plain(root: Path, args: argparse.Namespace) -> dict:
    size = args.image_size
    transform = original_transform(size)
    dataset = datasets.ImageFolder(str(root), transform=transform)
    generator = torch.Generator().manual_seed(0)
    n_val = len(dataset) // 10
    train, _val = random_split(dataset, [len(dataset) - n_val, n_val], generator=generator)
    loader = DataLoader(
        train, batch_size=args.batch_size, shuffle=True, num_workers=args.loader_workers
    )
    torch.manual_seed(0)
    model = models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.5, weight_decay=1e-2)
    criterion = nn.CrossEntropyLoss()
    per_epoch, images, seconds = [], 0, 0.0
    cpu_started = cpu_seconds()
    for _epoch in range(args.epochs):
        model.train()
        started, seen = time.perf_counter(), 0
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            seen += y.shape[0]
        elapsed = time.perf_counter() - started
        per_epoch.append(seen / elapsed)
        images, seconds = images + seen, seconds + elapsed
    # Workers are joined at the end of each epoch, so their CPU time is counted by now.
    cpu = cpu_seconds() - cpu_started
    return {
        "images_per_cpu_second": images / cpu,
        "images_per_sec": images / seconds,
        "epoch_images_per_sec": per_epoch,
        "train_images_per_epoch": len(train),
        "loader_workers": args.loader_workers,
    }


def bench_ceiling(
    in_chans: int,
    args: argparse.Namespace,
    *,
    channels_last: bool,
    bf16: bool = False,
    cpu_time: bool = False,
) -> dict:
    """Forward + backward of ResNet-18 on one resident random batch (no optimizer, no data).

    ``bf16`` runs the forward pass under bf16 autocast; ``cpu_time`` divides by the
    process's CPU time instead of the wall-clock time.
    """
    torch.manual_seed(0)
    model = models.resnet18(weights=None)
    model.fc = nn.Linear(model.fc.in_features, 4)
    if in_chans != 3:
        model.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.train()
    x = torch.randn(args.batch_size, in_chans, args.image_size, args.image_size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 4, (args.batch_size,))
    criterion = nn.CrossEntropyLoss()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        criterion(logits.float(), y).backward()

    clock = time.process_time if cpu_time else time.perf_counter
    for _ in range(2):
        step()
    started = clock()
    for _ in range(args.ceiling_steps):
        step()
    rate = args.ceiling_steps * args.batch_size / (clock() - started)
    return {"images_per_cpu_second" if cpu_time else "images_per_sec": rate}


def bench_probe(args: argparse.Namespace) -> dict:
    """The precision probe's measurement alone at the trainer's shapes and thread count."""
    shape = ProbeShape("resnet18", args.image_size, args.batch_size, channels_last=True)
    started = time.perf_counter()
    figures = measure_steps_per_sec(shape, args.threads or torch.get_num_threads())
    return {
        "fp32_images_per_sec": figures["fp32"] * args.batch_size,
        "bf16_images_per_sec": figures["bf16"] * args.batch_size,
        "bf16_speedup": figures["bf16"] / figures["fp32"],
        "cpu_share": figures["cpu_share"],
        "seconds": time.perf_counter() - started,
    }


def bench_formats(args: argparse.Namespace) -> dict:
    """Images per CPU-second of the one-channel model on one thread, by layout and precision."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {
            name: bench_ceiling(1, args, channels_last=cl, bf16=bf16, cpu_time=True)[
                "images_per_cpu_second"
            ]
            for name, cl, bf16 in (
                ("nchw_fp32", False, False),
                ("nhwc_fp32", True, False),
                ("nhwc_bf16", True, True),
            )
        }
    finally:
        torch.set_num_threads(previous)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="synthetic images (default 2000)")
    parser.add_argument(
        "--source-size", type=int, default=128, help="side of the generated PNGs (default 128)"
    )
    parser.add_argument("--image-size", type=int, default=64, help="training side (default 64)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers (plain)")
    parser.add_argument("--ceiling-steps", type=int, default=8)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate trainer and plain this many times (order swapped every round), so "
        "that load from other processes on a shared machine hits both alike",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("ceiling", "formats", "trainer", "plain", "held", "work", "precisions", "probe"),
        help="run only these parts",
    )
    parser.add_argument(
        "--work-epochs", type=int, default=1, help="epochs of the CPU-time measurement"
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="the trainer's precision (default auto: as a trial decides it, by the precision "
        "probe on a CPU with native bf16)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads of the trainer, plain, precisions and probe runs (default: torch's)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    parts = args.only or ["ceiling", "formats", "trainer", "plain", "work"]

    out: dict = {
        "cpu": cpu_model(),
        "cpu_capability": cpu_capability(),
        "cores": os.cpu_count(),
        "torch_threads": args.threads or torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "load_average": {"start": load_average()},
    }
    print(
        f"{out['cpu']} ({out['cpu_capability']}), {out['cores']} cores, torch {out['torch']} "
        f"({out['torch_threads']} threads), load average {out['load_average']['start']:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        root = Path(tmp) / "demo"
        made = write_demo_dataset(root, n=args.n, size=args.source_size)
        out["demo_seconds"] = made["seconds"]
        print(
            f"wrote {args.n} SYNTHETIC {args.source_size}-px images in {made['seconds']:.1f} s",
            flush=True,
        )
        if "ceiling" in parts:
            result = {
                # Each model in the memory format its pipeline trains in (fit: NHWC).
                "one_channel": bench_ceiling(1, args, channels_last=True),
                "three_channel": bench_ceiling(3, args, channels_last=False),
                "load_average_after": load_average(),
            }
            out["ceiling"] = result
            print(f"ceiling: {_describe('ceiling', result)}", flush=True)
        if "formats" in parts:
            out["formats"] = bench_formats(args)
            out["formats"]["load_average_after"] = load_average()
            print(f"formats: {_describe('formats', out['formats'])}", flush=True)
        needs_plain = "plain" in parts or "work" in parts
        plain_root = folder_per_class(root, Path(tmp) / "plain") if needs_plain else None
        cache = Path(tmp) / "cache"
        runs = {
            "trainer": lambda: bench_trainer(root, cache, args),
            "plain": lambda: bench_plain(plain_root, args, threads=args.threads),
            "held": lambda: bench_trainer(root, cache, args, stream=False),
            "fp32": lambda: bench_trainer(root, cache, args, precision="fp32"),
            "bf16": lambda: bench_trainer(root, cache, args, precision="bf16"),
            "auto": lambda: bench_trainer(root, cache, args, precision="auto"),
            "probe": lambda: bench_probe(args),
        }
        for round_ in range(args.rounds):
            order = ("trainer", "plain", "held")
            order = order if round_ % 2 == 0 else order[::-1]
            if "probe" in parts:
                order = ("probe", *order)
            if "precisions" in parts:
                # fp32, bf16, auto; then bf16, auto, fp32; then auto, fp32, bf16; ...
                shift = round_ % 3
                three = ("fp32", "bf16", "auto")
                order = (*order, *three[shift:], *three[:shift])
            for part in order:
                if part not in parts and part not in ("fp32", "bf16", "auto"):
                    continue
                result = runs[part]()
                result["load_average_after"] = load_average()
                out.setdefault(part, []).append(result)
                print(f"round {round_ + 1} {part}: {_describe(part, result)}", flush=True)

        if "work" in parts:
            # One torch thread each, so that no thread spins waiting for another and the CPU
            # time is the work done, whatever else runs on the machine.
            work_args = argparse.Namespace(**{**vars(args), "epochs": args.work_epochs})
            trainer_work = bench_trainer(root, Path(tmp) / "cache", work_args, threads=1)
            plain_work = bench_plain(plain_root, work_args, threads=1)
            out["work"] = {
                "trainer_images_per_cpu_second": trainer_work["images_per_cpu_second"],
                "plain_images_per_cpu_second": plain_work["images_per_cpu_second"],
                "ratio": trainer_work["images_per_cpu_second"]
                / plain_work["images_per_cpu_second"],
                "load_average_after": load_average(),
            }
            print(f"work: {_describe('work', out['work'])}", flush=True)

    if "trainer" in out and "plain" in out:
        ratios = [
            t["images_per_sec"] / p["images_per_sec"]
            for t, p in zip(out["trainer"], out["plain"], strict=True)
        ]
        mean = {
            k: statistics.fmean(r["images_per_sec"] for r in out[k]) for k in ("trainer", "plain")
        }
        out["mean_images_per_sec"] = mean
        out["ratio_trainer_to_plain_per_round"] = ratios
        out["ratio_trainer_to_plain"] = mean["trainer"] / mean["plain"]
        print(
            f"mean trainer {mean['trainer']:.1f} img/s, plain {mean['plain']:.1f} img/s: "
            f"trainer / plain = {out['ratio_trainer_to_plain']:.2f}x (goal >= 2.0x on bf16 CPUs); "
            f"per round: {', '.join(f'{r:.2f}' for r in ratios)}"
        )
    if "trainer" in out and "held" in out:
        streamed = statistics.fmean(r["images_per_sec"] for r in out["trainer"])
        held = statistics.fmean(r["images_per_sec"] for r in out["held"])
        out["ratio_streamed_to_held"] = streamed / held
        print(
            f"trainer reading batches from the cache file {streamed:.1f} img/s, holding the "
            f"splits {held:.1f} img/s: {streamed / held:.3f}x (goal >= 0.97x)"
        )
    if "precisions" in parts:
        out["precisions"] = summarize_precisions(out)
    if "probe" in parts:
        gains = [r["bf16_speedup"] for r in out["probe"]]
        seconds = [r["seconds"] for r in out["probe"]]
        print(
            f"probe: bf16 / fp32 {min(gains):.2f}-{max(gains):.2f}x over {len(gains)} rounds "
            f"(median {statistics.median(gains):.2f}x); {statistics.median(seconds):.1f} s a probe"
        )
    out["load_average"]["end"] = load_average()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


def summarize_precisions(out: dict) -> dict:
    """Mean images/s of fp32, bf16 and auto, auto over the better of the two (overall and
    per round), what auto chose and what its probe cost."""
    mean = {p: statistics.fmean(r["images_per_sec"] for r in out[p]) for p in ("fp32", "bf16")}
    mean["auto"] = statistics.fmean(r["images_per_sec"] for r in out["auto"])
    better = max(("fp32", "bf16"), key=lambda p: mean[p])
    per_round = [
        a["images_per_sec"] / max(f["images_per_sec"], b["images_per_sec"])
        for f, b, a in zip(out["fp32"], out["bf16"], out["auto"], strict=True)
    ]
    chosen = [r["precision"] for r in out["auto"]]
    probes = [r["choice_seconds"] for r in out["auto"] if not r["precision_choice"]["from_cache"]]
    summary = {
        "mean_images_per_sec": mean,
        "better_of_two": better,
        "bf16_over_fp32": mean["bf16"] / mean["fp32"],
        "auto_over_better": mean["auto"] / mean[better],
        "auto_over_better_per_round": per_round,
        "auto_chose": chosen,
        "probe_seconds": probes,
    }
    print(
        f"precisions: fp32 {mean['fp32']:.1f}, bf16 {mean['bf16']:.1f}, auto {mean['auto']:.1f} "
        f"img/s (bf16 / fp32 {summary['bf16_over_fp32']:.2f}x); auto chose "
        f"{', '.join(chosen)}; auto / the better ({better}) = {summary['auto_over_better']:.2f}x "
        f"(per round {', '.join(f'{r:.2f}' for r in per_round)}); probes took "
        f"{', '.join(f'{s:.1f}' for s in probes) or 'none'} s",
        flush=True,
    )
    return summary


def _describe(part: str, result: dict) -> str:
    load = f"(load average {result['load_average_after']:.2f} after)"
    if part == "ceiling":
        one = result["one_channel"]["images_per_sec"]
        three = result["three_channel"]["images_per_sec"]
        return (
            f"forward+backward {one:.1f} img/s (1 channel, NHWC as fit), "
            f"{three:.1f} img/s (3 channels, NCHW as plain) {load}"
        )
    if part == "formats":
        rates = ", ".join(
            f"{k.replace('_', ' ')} {v:.1f}" for k, v in result.items() if k != "load_average_after"
        )
        return f"1-channel model, one thread, images per CPU-second: {rates} {load}"
    if part == "probe":
        return (
            f"fp32 {result['fp32_images_per_sec']:.1f}, bf16 {result['bf16_images_per_sec']:.1f} "
            f"img/s: bf16 {result['bf16_speedup']:.2f}x; {result['seconds']:.1f} s, "
            f"{result['cpu_share']:.0%} of the CPU {load}"
        )
    if part == "work":
        return (
            f"trainer {result['trainer_images_per_cpu_second']:.1f}, plain "
            f"{result['plain_images_per_cpu_second']:.1f} images per CPU-second (1 torch thread; "
            f"plain's workers counted): {result['ratio']:.2f}x {load}"
        )
    epochs = ", ".join(f"{v:.1f}" for v in result["epoch_images_per_sec"])
    extra = ""
    if part in ("trainer", "held", "fp32", "bf16", "auto"):
        extra = (
            f"; {result['precision']}; cache build + load {result['cache_and_load_seconds']:.1f} s"
        )
        choice = result["precision_choice"]
        if choice["how"] == "probe":
            source = "cached" if choice["from_cache"] else f"{result['choice_seconds']:.1f} s"
            extra += f"; probe: bf16 {choice['bf16_speedup']:.2f}x fp32 ({source})"
    return f"{result['images_per_sec']:.1f} img/s (epochs: {epochs}){extra} {load}"


if __name__ == "__main__":
    main()
