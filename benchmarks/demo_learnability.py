"""Is the synthetic demo dataset an honest task? Speed, shortcut check and a learning check.

Writes a synthetic demo dataset with one worker process (and times it), then:

1. a logistic regression on global image statistics (mean, std, percentiles) — it should
   stay well below the CNN, or the classes differ by brightness rather than by signs;
2. a randomly initialised ResNet-18 (one input channel) trained a few epochs at 64 px with
   a good, a far too small and a far too large learning rate — the good one should reach
   0.85-0.96 validation accuracy, the bad ones should visibly lose.

Usage::

    python benchmarks/demo_learnability.py                 # everything, about 5 minutes on 2 cores
    python benchmarks/demo_learnability.py --runs sgd:0.05  # one training run
    python benchmarks/demo_learnability.py --sheet sheet.png --runs ""  # contact sheet only
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn
from torchvision.models import resnet18

from trainer.classes import class_index
from trainer.demo import contact_sheet, write_demo_dataset


def load_images(root: Path, px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images at their size, the same resized to ``px`` (float in [0, 1]), and labels."""
    images, labels = [], []
    for path in sorted(root.glob("*/images/*.png")):
        images.append(np.asarray(Image.open(path)))
        labels.append(class_index(path.parent.parent.name))
    full = np.stack(images)
    small = F.interpolate(
        torch.from_numpy(full).float()[:, None] / 255, size=(px, px), mode="area"
    ).numpy()
    return full, small, np.array(labels)


def global_stats_accuracy(full: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray):
    """Validation accuracy of a logistic regression on per-image brightness statistics."""
    flat = full.reshape(len(full), -1).astype(np.float32)
    feats = np.column_stack(
        [flat.mean(1), flat.std(1), *np.percentile(flat, [1, 5, 25, 50, 75, 95, 99], axis=1)]
    )
    scaler = StandardScaler().fit(feats[train])
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(feats[train]), y[train])
    return model.score(scaler.transform(feats[val]), y[val])


def build_resnet18() -> nn.Module:
    model = resnet18(weights=None, num_classes=4)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def train_resnet(
    x: torch.Tensor,
    y: torch.Tensor,
    train: np.ndarray,
    val: np.ndarray,
    optimizer: str,
    lr: float,
    epochs: int,
    seed: int,
    device: str = "cpu",
) -> list[float]:
    """Validation accuracy after each epoch of a randomly initialised ResNet-18."""
    torch.manual_seed(seed)
    model = build_resnet18().to(device)
    x, y = x.to(device), y.to(device)
    params = model.parameters()
    opt = (
        torch.optim.SGD(params, lr=lr, momentum=0.9)
        if optimizer == "sgd"
        else torch.optim.Adam(params, lr=lr)
    )
    mean, std = x[train].mean(), x[train].std()
    xn = (x - mean) / std
    train_t, val_t = torch.from_numpy(train).to(device), torch.from_numpy(val).to(device)
    accuracies = []
    for _ in range(epochs):
        model.train()
        order = train_t[torch.randperm(len(train_t), device=device)]
        for i in range(0, len(order), 64):
            batch = order[i : i + 64]
            xb = xn[batch]
            flip = torch.rand(len(batch), device=device) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(model(xb), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            logits = [model(xn[val_t[i : i + 256]]) for i in range(0, len(val_t), 256)]
        pred = torch.cat(logits).argmax(1)
        accuracies.append(float((pred == y[val_t]).float().mean()))
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=128, help="generated image size")
    parser.add_argument("--px", type=int, default=64, help="training image size")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument(
        "--runs",
        default="sgd:0.05,adam:0.001,sgd:1e-5,sgd:1.0",
        help="comma-separated optimizer:lr pairs to train ('' for none)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sheet", type=Path, help="also save a contact sheet PNG here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.sheet:
        print(f"contact sheet: {contact_sheet(args.sheet, seed=args.seed)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "demo"
        info = write_demo_dataset(
            root, n=args.n, size=args.size, seed=args.seed, workers=1, progress=False
        )
        print(
            f"generated {args.n} synthetic images at {args.size} px on one core "
            f"in {info['seconds']:.1f} s: {info['counts']}"
        )
        full, small, labels = load_images(root, args.px)

    idx = np.arange(len(labels))
    train, val = train_test_split(idx, test_size=0.1, stratify=labels, random_state=0)
    majority = np.bincount(labels[train]).argmax()
    print(f"majority-class rate on validation: {np.mean(labels[val] == majority):.3f}")
    stats_acc = global_stats_accuracy(full, labels, train, val)
    print(f"global-statistics logistic regression: {stats_acc:.3f}")

    x, y = torch.from_numpy(small), torch.from_numpy(labels)
    for run in filter(None, args.runs.split(",")):
        optimizer, lr = run.split(":")
        started = time.perf_counter()
        accs = train_resnet(x, y, train, val, optimizer, float(lr), args.epochs, seed=0)
        per_epoch = " ".join(f"{a:.3f}" for a in accs)
        print(
            f"resnet18 {optimizer} lr={float(lr):g}: val accuracy per epoch {per_epoch} "
            f"({time.perf_counter() - started:.0f} s)"
        )


if __name__ == "__main__":
    main()
