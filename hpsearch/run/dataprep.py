"""The data a run trains on: the user's folder, or the synthetic demo data, cached once."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpsearch.paths import locked
from hpsearch.run.taskbar import progress_bar
from hpsearch.study.record import SPLIT_SETTINGS, DataRecord
from trainer.config import DataConfig
from trainer.errors import UserError
from trainer.fingerprint import DatasetFingerprint, dataset_fingerprint
from trainer.layout import SYNTHETIC_MARKER

if TYPE_CHECKING:
    from hpsearch.paths import Workdir
    from hpsearch.study.spec import StudySpec
    from hpsearch.trainer_api import TrainerAPI


@dataclass(frozen=True)
class PreparedData:
    """A dataset whose decoded cache is built, ready for the workers."""

    config: DataConfig
    synthetic: bool
    counts: dict[str, int]
    """Images per split: train, val, test."""
    fingerprint: DatasetFingerprint | None = None
    """The dataset's identity by content; None for data no known layout describes
    (only stand-in trainers read such folders)."""

    def record(self) -> DataRecord:
        """What the study records about its data."""
        settings = {k: getattr(self.config, k) for k in SPLIT_SETTINGS}
        return DataRecord(
            root=str(self.config.root),
            **settings,
            synthetic=self.synthetic,
            fingerprint=self.fingerprint.digest if self.fingerprint else "",
            class_counts=dict(self.fingerprint.class_counts) if self.fingerprint else {},
        )

    def describe(self) -> str:
        what = "SYNTHETIC demo data" if self.synthetic else "data"
        counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
        same = f", content {self.fingerprint.digest}" if self.fingerprint else ""
        return f"{what} {self.config.root} ({counts}){same}"


def demo_data(spec: StudySpec, workdir: Workdir) -> Path:
    """The synthetic dataset of the study's demo scale, generated once into the workdir.

    Any number of commands may ask for it at once (the same command on several GPUs of a
    machine): one generates it under a lock, into a folder of its own that is renamed to
    its place only when complete; the others wait for the lock and then read it.
    """
    demo = spec.demo_config()
    n, size, seed = demo.images, demo.size, demo.seed
    out = workdir.root / f"demo-data-n{n}-{size}px-seed{seed}"
    if _complete(out, n):
        return out
    with locked(workdir.root / f".{out.name}.lock"):
        if _complete(out, n):  # made by another command while this one waited
            return out
        from trainer.demo import write_demo_dataset

        part = workdir.root / f".{out.name}.part-{os.getpid()}"
        shutil.rmtree(part, ignore_errors=True)
        with progress_bar("synthetic demo images") as on_progress:
            write_demo_dataset(part, n=n, size=size, seed=seed, on_progress=on_progress)
        shutil.rmtree(out, ignore_errors=True)  # an incomplete one, left by an older version
        os.rename(part, out)
    return out


def _complete(out: Path, n: int) -> bool:
    """True for a demo dataset folder holding all its ``n`` images."""
    from trainer.demo import class_counts

    if not (out / SYNTHETIC_MARKER).is_file():
        return False
    counts = class_counts(n)
    return all(
        sum(1 for _ in (out / folder / "images").glob("*.png")) == count
        for folder, count in counts.items()
    )


def prepare_data(
    spec: StudySpec, scale: str, data_flag: str | None, workdir: Workdir, trainer: TrainerAPI
) -> PreparedData:
    """Find or generate the dataset and build its decoded cache, before any worker starts."""
    root = Path(data_flag).absolute() if data_flag else demo_data(spec, workdir)
    config = DataConfig(root=root, cache_dir=workdir.cache, **spec.data_values(scale))
    warnings: list[str] = []  # shown once the progress bar is gone, before any error
    try:
        with progress_bar("decoding images into the cache") as on_progress:
            data = trainer.load_data(config, on_progress=on_progress, on_warning=warnings.append)
    finally:
        for line in warnings:
            print(f"warning: {line}", file=sys.stderr)
    counts = {"train": len(data.train_y), "val": len(data.val_y), "test": len(data.test_y)}
    return PreparedData(
        config=config,
        synthetic=bool(data.synthetic),
        counts=counts,
        fingerprint=fingerprint_or_none(root),
    )


def fingerprint_or_none(root: Path) -> DatasetFingerprint | None:
    """The dataset's fingerprint; None when no layout describes the folder.

    The trainer's ``load_data`` has read ``root`` through the same layout discovery, so
    None happens only with stand-in trainers; the study then compares paths instead.
    """
    try:
        return dataset_fingerprint(root)
    except UserError:
        return None


def relocate_data(config: DataConfig, recorded: DataRecord, data_flag: str) -> DataConfig:
    """``config`` reading this machine's copy of the study's dataset at ``data_flag``.

    The copy must have the recorded fingerprint (a study recorded before fingerprints
    existed is taken at its word); another dataset is a UserError saying what differs.
    """
    root = Path(data_flag).absolute()
    here = dataset_fingerprint(root)
    if recorded.fingerprint and here.digest != recorded.fingerprint:
        mine = dataclasses.replace(
            recorded, root=str(root), fingerprint=here.digest, class_counts=here.class_counts
        )
        raise UserError(f"--data {root} is not the study's dataset ({recorded.difference(mine)})")
    return dataclasses.replace(config, root=root)
