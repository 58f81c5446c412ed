"""A small finished search, built by hand: synthetic data, one trained checkpoint, a study.

The study has the user attributes ``hpsearch run`` writes, three complete trials (the
best one with a real ``best.pt`` from a one-epoch ``trainer.fit``), a pruned trial and an
interrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpsearch.trials.record import TrialRecord
from trainer.config import TrainConfig
from trainer.data import Data, DataConfig, load_data
from trainer.demo import write_demo_dataset
from trainer.training import fit

IMAGE_SIZE = 32
DISTRIBUTIONS = {
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "optimizer": CategoricalDistribution(["sgd", "adam"]),
}


@dataclass
class Search:
    """What the tests get: the data, the storage and study, the workdir."""

    study: optuna.Study
    storage_url: str
    data: Data
    data_root: Path
    workdir: Path
    checkpoint: Path


def data_attrs(root: Path, test_fraction: float, synthetic: bool = True) -> dict[str, Any]:
    """The ``data`` entry of the study's user attrs."""
    return {
        "root": str(root),
        "image_size": IMAGE_SIZE,
        "val_fraction": 0.2,
        "test_fraction": test_fraction,
        "split_seed": 0,
        "synthetic": synthetic,
    }


def make_data(root: Path, cache: Path, test_fraction: float, n: int = 100) -> Data:
    """Synthetic demo images (32 px) and their splits."""
    if not root.exists():
        write_demo_dataset(root, n=n, size=IMAGE_SIZE, seed=0, workers=1)
    config = DataConfig(
        root=root,
        image_size=IMAGE_SIZE,
        val_fraction=0.2,
        test_fraction=test_fraction,
        split_seed=0,
        cache_dir=cache,
        workers=1,
    )
    return load_data(config)


def train_checkpoint(data: Data, out: Path) -> tuple[Path, dict[str, Any], Any]:
    """One epoch of a tiny ResNet-18 run; returns (best.pt, config dict, FitResult)."""
    torch.set_num_threads(1)
    config = TrainConfig(
        epochs=1, batch_size=16, optimizer="adam", lr=2e-3, threads=1, device="cpu", seed=0
    )
    result = fit(config, data, checkpoint_dir=out, resume=False)
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    return result.best_checkpoint, config.to_dict(), result


def make_study(
    storage_url: str,
    name: str,
    data: dict[str, Any],
    workdir: Path,
    checkpoint: Path | None,
    config: dict[str, Any],
    best_metrics: dict[str, float],
) -> optuna.Study:
    """A study shaped like one ``hpsearch run`` leaves behind."""
    study = optuna.create_study(study_name=name, storage=storage_url, direction="maximize")
    study.set_user_attr(
        "hpsearch",
        {
            "spec_file": "studies/grid.toml",
            "scale": "full",
            "sampler": "grid",
            "pruner": "median",
            "metric": "val_accuracy",
            "direction": "maximize",
            "fixed": {"epochs": 1},
            "data": data,
            "workdir": str(workdir),
            "n_slots": 5,
        },
    )
    best_value = float(best_metrics["val_accuracy"])
    specs = [
        ("sgd", 0.05, [0.30, 0.35], best_value - 0.10, TrialState.COMPLETE, {}),
        ("adam", 0.002, [best_value], best_value, TrialState.COMPLETE, {}),
        ("sgd", 0.001, [0.20], None, TrialState.PRUNED, {}),
        ("adam", 0.02, [0.25, 0.28], best_value - 0.05, TrialState.COMPLETE, {}),
        ("sgd", 0.01, [], None, TrialState.FAIL, {"interrupted": True}),
    ]
    for slot, (opt, lr, curve, value, state, extra) in enumerate(specs):
        result: dict[str, Any] = {
            "epochs_run": len(curve),
            "best_epoch": (curve.index(max(curve)) + 1) if curve else None,
            "checkpoint": str(workdir / f"slot-{slot}" / "best.pt"),
        }
        if value == best_value:
            result.update(best_metrics)
            result["checkpoint"] = str(checkpoint) if checkpoint else None
        record = TrialRecord(
            slot=slot, config={**config, "optimizer": opt, "lr": lr}, result=result, **extra
        )
        attrs = record.user_attrs()
        trial = create_trial(
            state=state,
            value=value if state == TrialState.COMPLETE else None,
            params={"optimizer": opt, "lr": lr},
            distributions=DISTRIBUTIONS,
            intermediate_values={i + 1: v for i, v in enumerate(curve)},
            user_attrs=attrs,
        )
        study.add_trial(trial)
    return study


def build_search(tmp: Path, name: str = "demo", test_fraction: float = 0.25) -> Search:
    """Data, a trained checkpoint and a study in ``tmp`` (SQLite storage there)."""
    workdir = tmp / "work"
    root = tmp / "demo-data"
    data = make_data(root, workdir / "cache", test_fraction)
    ckpt, config, result = train_checkpoint(data, tmp / "ckpt")
    metrics = {k: v for k, v in result.best_metrics.items() if k.startswith("val_")}
    url = f"sqlite:///{tmp / 'study.db'}"
    study = make_study(url, name, data_attrs(root, test_fraction), workdir, ckpt, config, metrics)
    return Search(study, url, data, root, workdir, ckpt)


GRID_SPACE: dict[str, list[Any]] = {
    "lr": [0.001, 0.01, 0.1],
    "momentum": [0.5, 0.9],
    "batch_size": [64, 128],
    "optimizer": ["sgd", "adam"],
    "weight_decay": [0.01],
}


def make_grid_study(storage_url: str, n_complete: int, n_pruned: int = 2) -> optuna.Study:
    """A grid-shaped study without checkpoints: ``n_complete`` complete trials over five
    parameters (``weight_decay`` the same in all of them), then ``n_pruned`` pruned ones."""
    import random

    study = optuna.create_study(study_name="grid", storage=storage_url, direction="maximize")
    distributions = {k: CategoricalDistribution(v) for k, v in GRID_SPACE.items()}
    rng = random.Random(0)
    for i in range(n_complete + n_pruned):
        pruned = i >= n_complete
        curve = [0.3 + 0.1 * e + 0.2 * rng.random() for e in range(2 if pruned else 4)]
        study.add_trial(
            create_trial(
                state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
                value=None if pruned else max(curve),
                params={k: rng.choice(v) for k, v in GRID_SPACE.items()},
                distributions=distributions,
                intermediate_values={e + 1: v for e, v in enumerate(curve)},
            )
        )
    return study
