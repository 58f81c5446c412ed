"""Every value a model file carries is checked before use: a bad one is one line.

A ``best.pt`` (read by ``best --export``) or ``model.pt`` (read by ``predict``) whose
normalisation is NaN once gave a submission of class 0 for every image, and a string mean,
a zero std or a huge image size gave tracebacks or tried to allocate hundreds of GiB.
The command-line side (``predict`` writes nothing, exit 2, one line) is in
``test_refusals.py``, from :data:`BAD_ENTRIES` here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from hpsearch.cli import main
from hpsearch.export.model_file import FORMAT_VERSION, load_model_dir
from hpsearch.export.submission import predict_folder
from tests.hpsearch.study_checks import assert_one_line_error
from trainer.classes import CLASS_NAMES
from trainer.errors import UserError
from trainer.inference import load_model
from trainer.model import build_model

SIZE = 32
Change = Callable[[dict[str, Any]], dict[str, Any]]


@functools.cache
def _weights(num_classes: int = 4, in_chans: int = 1) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=num_classes, in_chans=in_chans)
    return {k: v.clone() for k, v in model.state_dict().items()}


def good_payload(format_version: int | None = FORMAT_VERSION) -> dict[str, Any]:
    """What training (``best.pt``) or an export (``model.pt``, with a format version) writes."""
    payload: dict[str, Any] = {
        "state_dict": dict(_weights()),
        "arch": "resnet18",
        "num_classes": 4,
        "in_chans": 1,
        "image_size": SIZE,
        "mean": 0.45,
        "std": 0.22,
        "class_names": list(CLASS_NAMES),
        "config": {"lr": 0.01},
        "epoch": 1,
    }
    if format_version is not None:
        payload["format_version"] = format_version
    return payload


def _with(**entries: Any) -> Change:
    return lambda saved: {**saved, **entries}


def _without(key: str) -> Change:
    return lambda saved: {k: v for k, v in saved.items() if k != key}


def _weight(name: str, value: float) -> Change:
    def change(saved: dict[str, Any]) -> dict[str, Any]:
        state = dict(saved["state_dict"])
        tensor = state[name].clone()
        tensor.view(-1)[0] = value
        return {**saved, "state_dict": {**state, name: tensor}}

    return change


def _other_model(num_classes: int, in_chans: int) -> Change:
    """Weights that do make the model the file names, of a shape the project never uses."""
    return _with(
        num_classes=num_classes, in_chans=in_chans, state_dict=_weights(num_classes, in_chans)
    )


#: case -> (how the file differs from a good one, what its one error line says)
BAD_ENTRIES: dict[str, tuple[Change, str]] = {
    "mean nan": (_with(mean=math.nan), "mean=nan"),
    "mean text": (_with(mean="x"), "mean='x'"),
    "mean true": (_with(mean=True), "mean=True"),
    "mean of 0-255 pixels": (_with(mean=140.0), "mean=140.0"),
    "std zero": (_with(std=0.0), "std=0.0"),
    "std negative": (_with(std=-0.2), "std=-0.2"),
    "std infinite": (_with(std=math.inf), "std=inf"),
    "image size huge": (_with(image_size=200_000), "image_size=200000"),
    "image size zero": (_with(image_size=0), "image_size=0"),
    "image size text": (_with(image_size="64"), "image_size='64'"),
    "image size float": (_with(image_size=64.0), "image_size=64.0"),
    "image size missing": (_without("image_size"), "missing image_size"),
    "arch unknown": (_with(arch="vgg16"), "arch='vgg16'"),
    "arch not text": (_with(arch=["resnet18"]), "arch=['resnet18']"),
    "num_classes text": (_with(num_classes="4"), "num_classes='4'"),
    "num_classes huge": (_with(num_classes=10**9), "num_classes=1000000000"),
    "three classes": (_other_model(3, 1), "the competition has 4 classes"),
    "three channels": (_other_model(4, 3), "the images here have one channel"),
    "in_chans zero": (_with(in_chans=0), "in_chans=0"),
    "classes in another order": (
        _with(class_names=sorted(CLASS_NAMES)),
        "are not the competition's classes in its order",
    ),
    "class names not a list": (_with(class_names="covid"), "class_names='covid'"),
    "epoch negative": (_with(epoch=-1), "epoch=-1"),
    "config not a table": (_with(config="lr=1"), "config='lr=1'"),
    "weight nan": (_weight("fc.weight", math.nan), "weight 'fc.weight' holds NaN"),
    "weight infinite": (_weight("conv1.weight", -math.inf), "weight 'conv1.weight' holds NaN"),
    "weight not a tensor": (
        lambda saved: {**saved, "state_dict": {**saved["state_dict"], "fc.bias": [0.0] * 4}},
        "state_dict entry 'fc.bias' is not a tensor",
    ),
    "no weights": (_with(state_dict={}), "its state_dict is not a table of weights"),
}

#: The entry only ``model.pt`` has.
BAD_FORMATS: dict[str, tuple[Change, str]] = {
    "format version missing": (_without("format_version"), "format_version=None"),
    "format version text": (_with(format_version="1"), "format_version='1'"),
    "format version zero": (_with(format_version=0), "format_version=0"),
    "format version newer": (_with(format_version=99), "newer than this hpsearch reads"),
}


def write_model_dir(folder: Path, change: Change | None = None) -> Path:
    """A model folder whose ``model.pt`` is a good one, or one changed by ``change``."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = good_payload()
    torch.save(change(payload) if change else payload, folder / "model.pt")
    return folder


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_a_bad_entry_of_best_pt_is_one_line(case: str, tmp_path: Path) -> None:
    change, expected = BAD_ENTRIES[case]
    path = tmp_path / "best.pt"
    torch.save(change(good_payload(format_version=None)), path)
    with pytest.raises(UserError) as error:
        load_model(path)
    message = str(error.value)
    assert expected in message and "\n" not in message
    assert message.startswith(str(path))


@pytest.mark.parametrize("case", sorted({**BAD_ENTRIES, **BAD_FORMATS}))
def test_a_bad_entry_of_model_pt_is_one_line(case: str, tmp_path: Path) -> None:
    change, expected = {**BAD_ENTRIES, **BAD_FORMATS}[case]
    folder = write_model_dir(tmp_path / "model", change)
    with pytest.raises(UserError, match=None) as error:
        load_model_dir(folder)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_the_files_the_project_writes_pass(tmp_path: Path) -> None:
    model, meta = load_model_dir(write_model_dir(tmp_path / "model"))
    assert meta["class_names"] == list(CLASS_NAMES) and not model.training
    torch.save(good_payload(format_version=None), tmp_path / "best.pt")
    load_model(tmp_path / "best.pt")


def _images(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(
            folder / f"test_{i}.png"
        )
    return folder


def test_finite_weights_that_overflow_give_no_submission(tmp_path: Path, capsys) -> None:
    # every value finite, so the file passes; the logits overflow to inf, softmax to NaN,
    # and argmax of NaN is class 0: the submission would be all class 0
    def huge(saved: dict[str, Any]) -> dict[str, Any]:
        state = dict(saved["state_dict"])
        state["fc.weight"] = torch.full_like(state["fc.weight"], 3e38)
        return {**saved, "state_dict": state}

    model = write_model_dir(tmp_path / "model", huge)
    images = _images(tmp_path / "test")
    with pytest.raises(UserError, match="NaN or infinite probabilities"):
        predict_folder(model, images, device="cpu")
    out = tmp_path / "submission.csv"
    argv = ["predict", "--model", str(model), "--images", str(images), "--out", str(out)]
    assert_one_line_error(main(argv), capsys.readouterr().err, "NaN or infinite")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mean nan", "weight nan", "image size huge"])
def test_best_export_refuses_a_bad_checkpoint(case: str, tmp_path: Path, capsys) -> None:
    from tests.reports.factory import build_search

    search = build_search(tmp_path / "search")
    change, expected = BAD_ENTRIES[case]
    saved = torch.load(search.checkpoint, weights_only=True)
    torch.save(change(saved), search.checkpoint)
    out = tmp_path / "final"
    argv = ["best", "--storage", search.storage_url, "--workdir", str(search.workdir)]
    code = main([*argv, "--export", str(out), "--device", "cpu"])
    assert_one_line_error(code, capsys.readouterr().err, str(search.checkpoint), expected)
    assert not out.exists()


def test_an_image_size_beyond_the_largest_supported_is_refused_as_a_setting(tmp_path) -> None:
    from trainer.config import MAX_IMAGE_SIZE, DataConfig, SettingError

    DataConfig(root=tmp_path, image_size=MAX_IMAGE_SIZE)
    with pytest.raises(SettingError, match=f"image_size={MAX_IMAGE_SIZE + 1}: must be <= "):
        DataConfig(root=tmp_path, image_size=MAX_IMAGE_SIZE + 1)
