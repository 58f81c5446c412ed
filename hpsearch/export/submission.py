"""Predicting a folder of unlabelled images with an exported model; the submission file."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.classes import CLASS_NAMES
from trainer.errors import UserError


@dataclass(frozen=True)
class Prediction:
    """One image: its name (file stem), predicted class index and the four probabilities."""

    name: str
    target: int
    proba: tuple[float, ...]


def predict_folder(
    model_dir: Path, images_dir: Path, *, device: str = "auto", batch_size: int = 256
) -> tuple[list[Prediction], list[tuple[str, str]], list[tuple[str, str]]]:
    """Predict every image file directly in ``images_dir``.

    Returns (predictions in natural order of the name, (file, reason) of the unreadable
    images, (file, reason) of the other entries that were not images). No readable image
    at all is a UserError.
    """
    from hpsearch.export.model_file import load_model_dir
    from trainer.cache import UnreadableImageWarning
    from trainer.data import load_images
    from trainer.inference import predict_proba
    from trainer.layout import list_image_files, natural_key
    from trainer.training import resolve_device

    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be >= 1")
    model, meta = load_model_dir(model_dir)
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise UserError(f"image folder {str(images_dir)!r} does not exist")
    files, ignored = list_image_files(images_dir)
    with warnings.catch_warnings():
        # Reported by the caller, once per file, from the returned list.
        warnings.simplefilter("ignore", UnreadableImageWarning)
        pixels, kept, unreadable = load_images(
            [images_dir / f for f in files], int(meta["image_size"])
        )
    unreadable = [(Path(p).name, why) for p, why in unreadable]
    if not kept:
        detail = f"{len(unreadable)} unreadable" if unreadable else "no image files"
        raise UserError(f"no readable image in {images_dir} ({detail})")
    proba = predict_proba(
        model,
        pixels[:, None],
        float(meta["mean"]),
        float(meta["std"]),
        batch_size=batch_size,
        device=resolve_device(device),
    )
    if not np.isfinite(proba).all():  # weights that overflow: a submission of class 0 else
        raise UserError(f"the model in {model_dir} gives NaN or infinite probabilities")
    rows = [
        Prediction(Path(p).stem, int(np.argmax(row)), tuple(float(v) for v in row))
        for p, row in zip(kept, proba, strict=True)
    ]
    stems = [r.name for r in rows]
    if len(set(stems)) != len(stems):
        doubled = sorted({s for s in stems if stems.count(s) > 1})
        raise UserError(
            f"several files share the name(s) {', '.join(doubled[:5])} in {images_dir} "
            "(e.g. test_1.png and test_1.jpg); keep one of each"
        )
    rows.sort(key=lambda r: natural_key(r.name))
    return rows, unreadable, ignored


def write_submission(rows: list[Prediction], out: Path, *, proba: bool = False) -> None:
    """``name,target`` rows (and ``p_<class>`` columns with ``proba``) in the given order."""
    out = Path(out)
    if not out.parent.is_dir():
        raise UserError(f"folder of --out {str(out.parent)!r} does not exist")
    header = ["name", "target"] + ([f"p_{c}" for c in CLASS_NAMES] if proba else [])
    try:
        with open(out, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                extra = [f"{p:.6f}" for p in row.proba] if proba else []
                writer.writerow([row.name, row.target, *extra])
    except OSError as error:
        raise UserError(f"cannot write {out}: {error.strerror or error}") from None
