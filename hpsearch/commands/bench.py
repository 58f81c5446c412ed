"""``hpsearch bench``: training throughput and memory of one trial, measured as a trial runs.

The data go through the same path as a trial's (layout discovery, decode-once cache,
split) and training is ``trainer.fit``. The cache is built (or found) first and timed on
its own, so the images/s figure is steady-state training, batch building included.
``--precision auto`` is decided as for a trial: on a CPU with native bf16 by the
precision probe, whose figures are shown and kept in the workdir for later trials.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from hpsearch.paths import Workdir

#: Shown at the end of ``hpsearch bench --help``.
EXAMPLES = """\
examples:
  hpsearch bench --data demo --image-size 64
  hpsearch bench --data demo --image-size 64 --batch-size 32 --precision auto --max-steps 5
  hpsearch bench --data ~/data/xray-data --image-size 224 --device cuda --max-steps 50
"""


PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = (
    "auto (default: bf16 autocast on CUDA; on a CPU with native bf16, the faster of fp32 "
    "and bf16 by a short measurement cached in the workdir; else fp32), fp32 or bf16"
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        help="dataset folder, or 'demo' for freshly generated SYNTHETIC images (in a temp folder)",
    )
    parser.add_argument(
        "--image-size", type=int, required=True, help="image side in pixels, as in a trial"
    )
    parser.add_argument(
        "--arch", default="resnet18", help="resnet18 (default), resnet34, resnet50, densenet121"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="default 128")
    parser.add_argument("--epochs", type=int, default=2, help="default 2")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--demo-n", type=int, default=2000, help="images generated for --data demo (default 2000)"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        help="train on only this many batches per epoch (and validate on as many images); "
        "the whole dataset is still loaded and held, so memory figures stay those of a trial",
    )
    parser.add_argument(
        "--val-fraction", type=float, default=0.1, help="validation share (default 0.1)"
    )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="held-out test share (default 0.1, as the full scale): split off and, as in a "
        "trial, never loaded",
    )
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    parser.add_argument("--threads", type=int, help="CPU threads for training (default: torch's)")
    parser.add_argument("--workers", type=int, help="processes that decode images (default: all)")
    parser.add_argument(
        "--workdir",
        help="where the image cache lives for --data PATH, and the precision probe's figures "
        "(precision-probe.json) for --precision auto (default ./hpsearch-work)",
    )


def run(args: argparse.Namespace) -> int:
    from trainer.config import MAX_IMAGE_SIZE
    from trainer.errors import UserError
    from trainer.training import resolve_device

    for name in ("image_size", "batch_size", "epochs", "demo_n", "max_steps", "threads", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')}={value}: must be >= 1")
    if args.image_size > MAX_IMAGE_SIZE:
        raise UserError(f"--image-size={args.image_size}: must be <= {MAX_IMAGE_SIZE}")
    if args.data == "demo" and args.demo_n < 4:
        raise UserError(f"--demo-n={args.demo_n}: the demo needs at least 4 images (one a class)")
    config = _train_config(args)  # bad settings fail before any data are written
    resolve_device(config.device)
    choice = precision_choice(args, config)
    config = replace(config, precision=choice.precision)
    if args.data == "demo":
        with tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp:
            result = _bench_demo(args, config, Path(tmp))
    else:
        result = measure(args, config, Path(args.data), Workdir.resolve(args.workdir).make().cache)
    result["precision_choice"] = choice.to_attr()
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


def precision_choice(args: argparse.Namespace, config: Any) -> Any:
    """What ``--precision`` means here, as for a trial of these shapes: an explicit one is
    kept; ``auto`` on a CPU with native bf16 is measured once (the workdir keeps it)."""
    from trainer.precision_probe import PROBE_CACHE_FILE, resolve_trial_precision

    def log(line: str) -> None:
        if not args.json or "not cached" in line:
            print(f"precision: {line}", file=sys.stderr, flush=True)

    cache_file = Workdir.resolve(args.workdir).root / PROBE_CACHE_FILE
    return resolve_trial_precision(
        config, image_size=args.image_size, cache_file=cache_file, log=log
    )


def _train_config(args: argparse.Namespace) -> Any:
    from trainer.config import TrainConfig

    return TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=args.device,
        threads=args.threads,
        precision=args.precision,
    )


def _bench_demo(args: argparse.Namespace, config: Any, tmp: Path) -> dict[str, Any]:
    from hpsearch.run.taskbar import progress_bar
    from trainer.demo import write_demo_dataset

    # Generated at the benchmark's size (the generator's range is 32-1024 px), so the
    # cache build decodes without resizing.
    size = min(max(args.image_size, 32), 1024)
    with progress_bar("synthetic demo images", show=not args.json) as on_progress:
        made = write_demo_dataset(
            tmp / "data", n=args.demo_n, size=size, workers=args.workers, on_progress=on_progress
        )
    result = measure(args, config, tmp / "data", tmp / "cache")
    result["demo_seconds"] = round(made["seconds"], 3)
    return result


def measure(args: argparse.Namespace, config: Any, root: Path, cache_dir: Path) -> dict[str, Any]:
    """Build or reuse the cache, load the splits, train with ``config``; the figures as a dict."""
    import time

    from trainer.config import DataConfig
    from trainer.data import load_data
    from trainer.training import fit, peak_rss_mb, resolve_device

    device = resolve_device(config.device)
    measured = _build_cache(args, root, cache_dir)
    started = time.perf_counter()
    data = load_data(
        DataConfig(
            root=root,
            image_size=args.image_size,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            cache_dir=cache_dir,
            workers=args.workers,
        ),
        with_test=False,  # a trial never holds the held-out test images
    )
    measured["load_seconds"] = round(time.perf_counter() - started, 3)
    measured["peak_rss_after_load_mb"] = round(peak_rss_mb(), 1)
    trained = _limit(data, args.max_steps * args.batch_size) if args.max_steps else data
    result = fit(config, trained)
    cuda = device.type == "cuda"
    measured["cuda_peak_allocated_mb"] = round(result.peak_memory_mb, 1) if cuda else None
    return _figures(args, config, data, trained, result, measured)


def _build_cache(args: argparse.Namespace, root: Path, cache_dir: Path) -> dict[str, Any]:
    """Build (or find) the image cache, timed on its own; whether it existed and the time."""
    from hpsearch.run.taskbar import progress_bar
    from trainer.cache import cache_dataset
    from trainer.layout import discover_layout

    layout = discover_layout(root)
    with progress_bar("decoding images into the cache", show=not args.json) as on_progress:
        cached = cache_dataset(
            layout.root,
            [rel for rel, _ in layout.items],
            args.image_size,
            cache_dir,
            workers=args.workers,
            on_progress=on_progress,
        )
    # The memory map is never read (load_data reads the file itself), so nothing is held.
    for line in cached.messages:  # once: load_data's reuse of the cache stays quiet
        print(f"warning: {line}", file=sys.stderr)
    return {
        "cache_from_existing": cached.from_cache,
        "cache_build_seconds": None if cached.from_cache else round(cached.build_seconds, 3),
    }


def _figures(
    args: argparse.Namespace,
    config: Any,
    data: Any,
    trained: Any,
    result: Any,
    measured: dict[str, Any],
) -> dict[str, Any]:
    """The report: what was trained on what, how fast, and the memory it took."""
    from trainer.cached_split import CachedSplit
    from trainer.precision import cpu_capability
    from trainer.training import peak_rss_mb

    splits = (data.train_x, data.val_x, data.test_x)
    split_mb = sum(t.numel() for t in splits) / 2**20
    held_mb = sum(t.numel() for t in splits if not isinstance(t, CachedSplit)) / 2**20
    n_test = len(data.names.get("test", []))
    return {
        "device": result.device,
        "cpu_capability": cpu_capability(),
        "precision": result.precision,
        "arch": config.arch,
        "image_size": args.image_size,
        "batch_size": config.batch_size,
        "epochs": result.epochs_run,
        "train_images": int(trained.train_y.numel()),
        "val_images": int(trained.val_y.numel()),
        "dataset_images": int(data.train_y.numel() + data.val_y.numel() + n_test),
        "test_images_not_loaded": n_test,
        "synthetic": data.synthetic,
        "images_per_sec": round(result.images_per_sec, 2),
        "epoch_images_per_sec": [round(r["images_per_sec"], 2) for r in result.history],
        "cache_from_existing": measured["cache_from_existing"],
        "cache_build_seconds": measured["cache_build_seconds"],
        "load_seconds": measured["load_seconds"],
        "fit_seconds": round(result.wall_seconds, 3),
        "dataset_uint8_mb": round(split_mb, 3),
        "images_held_mb": round(held_mb, 3),
        "peak_rss_after_load_mb": measured["peak_rss_after_load_mb"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cuda_peak_allocated_mb": measured["cuda_peak_allocated_mb"],
    }


def _limit(data: Any, images: int) -> Any:
    """The same data with the train and validation splits cut to ``images`` rows.

    Splits held in memory are cut as views; streamed ones stay in the cache file.
    """
    from dataclasses import replace

    from trainer.cached_split import CachedSplit

    def head(x: Any) -> Any:
        if isinstance(x, CachedSplit):
            return CachedSplit(x.file, x.rows[:images], x.size)
        return x[:images]

    return replace(
        data,
        train_x=head(data.train_x),
        train_y=data.train_y[:images],
        val_x=head(data.val_x),
        val_y=data.val_y[:images],
    )


def format_result(r: dict[str, Any]) -> str:
    """The figures as a few readable lines."""
    from trainer.precision_probe import PrecisionChoice

    data = f"{r['dataset_images']} images" + (" (SYNTHETIC)" if r["synthetic"] else "")
    built = r["cache_build_seconds"]
    cache = "reused" if built is None else f"built in {built:.1f} s"
    lines = [
        f"device      {r['device']}; {r['precision']} ({r['cpu_capability']})",
        f"precision   {PrecisionChoice.from_attr(r['precision_choice']).describe()}",
        f"data        {data}, {r['image_size']} px; train {r['train_images']}, "
        f"val {r['val_images']}, test {r['test_images_not_loaded']} (held out, not loaded)",
        f"model       {r['arch']}, batch {r['batch_size']}, {r['epochs']} epoch(s)",
        f"cache       {cache}; splits loaded in {r['load_seconds']:.1f} s "
        f"({r['dataset_uint8_mb']:.0f} MiB uint8, {r['images_held_mb']:.0f} MiB of it held)",
        f"training    {r['images_per_sec']:.1f} images/s (per epoch: "
        + ", ".join(f"{v:.1f}" for v in r["epoch_images_per_sec"])
        + ")",
        f"memory      peak RSS {r['peak_rss_mb']:.0f} MiB "
        f"({r['peak_rss_after_load_mb']:.0f} MiB after loading)",
    ]
    if r["cuda_peak_allocated_mb"] is not None:
        lines.append(f"            CUDA peak allocated {r['cuda_peak_allocated_mb']:.0f} MiB")
    return "\n".join(lines)
