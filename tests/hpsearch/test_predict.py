"""``hpsearch predict``: submission file for a folder of test images."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from hpsearch.cli import main
from hpsearch.export.model_file import save_model
from trainer.classes import CLASS_NAMES
from trainer.model import build_model

SIZE = 32


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    model = build_model("resnet18", num_classes=4, in_chans=1)
    meta = {
        "arch": "resnet18",
        "num_classes": 4,
        "in_chans": 1,
        "image_size": SIZE,
        "mean": 0.45,
        "std": 0.22,
        "class_names": list(CLASS_NAMES),
    }
    save_model(out / "model.pt", model, meta)
    return out


def write_images(folder, count: int, broken: tuple[int, ...] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        path = folder / f"test_{i}.png"
        if i in broken:
            path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
        else:
            size = SIZE * 2 if i % 3 else SIZE  # other sizes are resized
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path)
    (folder / ".DS_Store").write_bytes(b"junk")
    (folder / "notes.txt").write_text("not an image")


def read_csv(path) -> list[list[str]]:
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_submission_has_one_row_per_readable_image(model_dir, tmp_path, capsys) -> None:
    write_images(tmp_path / "test", 12, broken=(5,))
    out = tmp_path / "submission.csv"
    rc = main(
        [
            "predict",
            "--model",
            str(model_dir),
            "--images",
            str(tmp_path / "test"),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    rows = read_csv(out)
    assert rows[0] == ["name", "target"]
    names = [r[0] for r in rows[1:]]
    # natural order, the unreadable test_5 left out
    assert names == [f"test_{i}" for i in range(12) if i != 5]
    assert all(r[1] in {"0", "1", "2", "3"} and len(r) == 2 for r in rows[1:])
    err = capsys.readouterr().err
    assert "test_5.png" in err
    assert "1 unreadable image(s)" in err
    assert "notes.txt" not in names


def test_proba_columns(model_dir, tmp_path) -> None:
    write_images(tmp_path / "test", 4)
    out = tmp_path / "submission.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model_dir),
                "--images",
                str(tmp_path / "test"),
                "--out",
                str(out),
                "--proba",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    rows = read_csv(out)
    assert rows[0] == ["name", "target", *(f"p_{c}" for c in CLASS_NAMES)]
    for row in rows[1:]:
        proba = np.array([float(v) for v in row[2:]])
        assert proba.sum() == pytest.approx(1.0, abs=1e-5)
        assert int(row[1]) == int(proba.argmax())


@pytest.mark.parametrize(
    "case", ["no-model-pt", "all-unreadable", "empty-folder", "no-folder", "no-out-folder"]
)
def test_user_errors_are_one_line(case, model_dir, tmp_path, capsys) -> None:
    images = tmp_path / "test"
    model = model_dir
    if case == "no-model-pt":
        write_images(images, 2)
        model = tmp_path / "empty-model"
        model.mkdir()
    elif case == "all-unreadable":
        write_images(images, 3, broken=(0, 1, 2))
    elif case == "empty-folder":
        images.mkdir()
    out = tmp_path / "s.csv"
    if case == "no-out-folder":
        write_images(images, 2)
        out = tmp_path / "missing" / "s.csv"
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            "--images",
            str(images),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hpsearch predict: error: ")
    expected = {
        "no-model-pt": "model.pt",
        "all-unreadable": "3 unreadable",
        "empty-folder": "no image files",
        "no-folder": "does not exist",
        "no-out-folder": "folder of --out",
    }[case]
    assert expected in err[-1]
    assert not out.exists()
