"""Is the synthetic demo dataset an honest task? Speed, shortcut check and a learning check.

Writes a synthetic demo dataset with one worker process (and times it), then:

1. a logistic regression on global image statistics (mean, std, percentiles) — it should
   stay well below the CNN, or the classes differ by brightness rather than by signs;
2. the project's own pipeline (``load_data`` + ``fit``: randomly initialised ResNet-18,
   one input channel, cosine schedule, batch 64, flips) for a few epochs at 64 px with
   sensible, far too small and far too large learning rates, on the CPU. A sensible one
   should reach 0.85 or more validation accuracy in 3 epochs; the bad ones should lose
   clearly. ``--repeat`` trains the first run again with the same seed: the validation
   metrics must come out identical.

Every number is validation accuracy on SYNTHETIC images (the 10 % validation split).

Usage::

    python benchmarks/demo_learnability.py                 # everything, ~10 minutes on 2 cores
    python benchmarks/demo_learnability.py --runs adam:0.001  # one training run
    python benchmarks/demo_learnability.py --precision bf16 --train-seeds 0,1,2  # spread
    python benchmarks/demo_learnability.py --sheet sheet.png --runs ""  # contact sheet only
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from trainer.config import DataConfig, TrainConfig
from trainer.data import Data, load_data
from trainer.demo import contact_sheet, write_demo_dataset
from trainer.training import fit


def load_images(root: Path, paths: list[str]) -> np.ndarray:
    """The generated images at their own size, in the order of ``paths``."""
    return np.stack([np.asarray(Image.open(root / p)) for p in paths])


def global_stats_accuracy(full: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray):
    """Validation accuracy of a logistic regression on per-image brightness statistics."""
    flat = full.reshape(len(full), -1).astype(np.float32)
    feats = np.column_stack(
        [flat.mean(1), flat.std(1), *np.percentile(flat, [1, 5, 25, 50, 75, 95, 99], axis=1)]
    )
    scaler = StandardScaler().fit(feats[train])
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(feats[train]), y[train])
    return model.score(scaler.transform(feats[val]), y[val])


def train_run(
    data: Data,
    optimizer: str,
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    precision: str = "auto",
) -> tuple[list[float], float]:
    """Validation accuracy after each epoch of the project's ``fit`` (random init), and seconds."""
    config = TrainConfig(
        arch="resnet18",
        pretrained=False,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="cosine",
        flip=True,
        seed=seed,
        device="cpu",
        precision=precision,
    )
    result = fit(config, data)
    return [row["val_accuracy"] for row in result.history], result.wall_seconds


def spread(runs: list[dict]) -> list[dict]:
    """Per (optimizer, lr): mean, sample sd, min and max of the last epoch's accuracy."""
    groups: dict[tuple[str, float], list[float]] = {}
    for run in runs:
        groups.setdefault((run["optimizer"], run["lr"]), []).append(run["val_accuracy"][-1])
    rows = []
    for (optimizer, lr), last in groups.items():
        values = np.asarray(last)
        sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        rows.append(
            {
                "optimizer": optimizer,
                "lr": lr,
                "n": len(values),
                "mean": float(values.mean()),
                "sd": sd,
                "min": float(values.min()),
                "max": float(values.max()),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128, help="generated image size")
    parser.add_argument("--px", type=int, default=64, help="training image size")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument(
        "--runs",
        default="adam:0.001,sgd:0.01,sgd:1e-5,sgd:1.0",
        help="comma-separated optimizer:lr pairs to train ('' for none)",
    )
    parser.add_argument("--repeat", action="store_true", help="train the first run twice")
    parser.add_argument(
        "--train-seeds",
        default="0",
        help="comma-separated training seeds: each run is trained once per seed, and the "
        "spread of its last-epoch accuracy over them is printed (default 0)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="auto (default), fp32 or bf16")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--sheet", type=Path, help="also save a contact sheet PNG here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    figures: dict = {"n": args.n, "size": args.size, "px": args.px, "epochs": args.epochs}
    figures["precision"] = args.precision

    if args.sheet:
        print(f"contact sheet: {contact_sheet(args.sheet, seed=args.seed)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        info = write_demo_dataset(root, n=args.n, size=args.size, seed=args.seed, workers=1)
        print(
            f"generated {args.n} SYNTHETIC images at {args.size} px on one core "
            f"in {info['seconds']:.1f} s: {info['counts']}"
        )
        figures["generate_seconds_one_core"] = info["seconds"]
        data_config = DataConfig(
            root,
            image_size=args.px,
            val_fraction=0.1,
            cache_dir=Path(tmp) / "cache",
        )
        data = load_data(data_config)
        full = load_images(root, data.names["train"] + data.names["val"])
    labels = np.concatenate([data.train_y.numpy(), data.val_y.numpy()])
    train = np.arange(len(data.train_y))
    val = np.arange(len(data.train_y), len(labels))

    majority = np.bincount(labels[train]).argmax()
    figures["majority_rate_val"] = float(np.mean(labels[val] == majority))
    rate = figures["majority_rate_val"]
    print(f"validation split: {len(val)} images; majority-class rate {rate:.3f}")
    figures["global_stats_logreg_val"] = global_stats_accuracy(full, labels, train, val)
    print(f"global-statistics logistic regression: {figures['global_stats_logreg_val']:.3f}")

    runs = [r.split(":") for r in filter(None, args.runs.split(","))]
    if args.repeat and runs:
        runs.insert(1, runs[0])
    seeds = [int(s) for s in args.train_seeds.split(",")]
    figures["train_seeds"] = seeds
    figures["runs"] = []
    for optimizer, lr in runs:
        for seed in seeds:
            accs, seconds = train_run(
                data, optimizer, float(lr), args.epochs, args.batch_size, seed, args.precision
            )
            figures["runs"].append(
                {
                    "optimizer": optimizer,
                    "lr": float(lr),
                    "seed": seed,
                    "val_accuracy": accs,
                    "seconds": seconds,
                }
            )
            per_epoch = " ".join(f"{a:.4f}" for a in accs)
            print(
                f"resnet18 {optimizer} lr={float(lr):g} cosine, batch {args.batch_size}, "
                f"seed {seed}: val accuracy per epoch {per_epoch} ({seconds:.0f} s)",
                flush=True,
            )
    if len(seeds) > 1:
        figures["spread"] = spread(figures["runs"])
        for row in figures["spread"]:
            print(
                f"{row['optimizer']} lr={row['lr']:g}: last-epoch val accuracy over "
                f"{row['n']} seeds: mean {row['mean']:.4f}, sd {row['sd']:.4f}, "
                f"range {row['min']:.4f}-{row['max']:.4f} ({args.precision})"
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
