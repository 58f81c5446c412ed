"""Bad input: one clear line on stderr, exit code 2, nothing written to the study.

Each case runs the real command line (``hpsearch.cli.main`` in this process, or
``python -m hpsearch.cli`` where workers or warnings matter) and checks the exit code,
that stderr is exactly one line with no traceback, and that no study was created (for
SQLite: that the database file does not exist). Awkward but usable images (16-bit, RGB,
palette, odd sizes) are converted, not refused; unreadable files are skipped and named.

The message of every study-file mistake is tested in test_spec.py, the layout and
decoding rules in tests/trainer/test_layout.py, test_data.py and test_cache.py, the
other ``predict`` errors in test_predict.py; these tests hold the command-line contract.
"""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import optuna
import pytest
import torch

from hpsearch.cli import main
from hpsearch.export.model_file import save_model
from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.study_checks import assert_one_line_error, slot_rows, study_names
from tests.hpsearch.test_spec import BAD, VALID
from tests.trainer._imagefiles import (
    CANONICAL,
    make_folder_per_class,
    write_awkward,
    write_debris,
    write_image,
)
from trainer.classes import CLASS_NAMES
from trainer.model import build_model

REAL_DATA = "tests.hpsearch.real_data_trainer"
IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A valid folder-per-class dataset: three tiny gray PNGs per class."""
    return make_folder_per_class(tmp_path_factory.mktemp("data") / "xray", per_class=3)


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.toml"
    path.write_text(VALID)
    return path


@pytest.fixture
def run(tmp_path: Path, capsys, monkeypatch):
    """``hpsearch run ARGS`` in this process with the workdir under tmp_path: (code, stderr)."""
    monkeypatch.delenv("HPSEARCH_STORAGE", raising=False)

    def call(*args: str) -> tuple[int, str]:
        code = main(["run", *args, "--workdir", str(tmp_path / "work"), "--wandb", "off"])
        return code, capsys.readouterr().err

    return call


def _sqlite(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "study.db"
    return db, f"sqlite:///{db}"


# -- study files ------------------------------------------------------------------------

STUDY_CASES = [
    "syntax",
    "unknown top key",
    "unknown study key",
    "wrong type",
    "empty grid axis",
    "empty space",
    "lr zero",
    "negative lr",
    "unknown sampler",
    "unknown pruner",
]


@pytest.mark.parametrize("case", STUDY_CASES)
def test_bad_study_file(case: str, tmp_path: Path, run, dataset: Path) -> None:
    text, expected = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    db, url = _sqlite(tmp_path)
    code, err = run("--study", str(path), "--storage", url, "--data", str(dataset))
    # the file and the offending key are named on the one line
    assert_one_line_error(code, err, str(path), expected)
    # checked before anything else: no database, not even the workdir
    assert not db.exists()
    assert not (tmp_path / "work").exists()


def test_missing_study_file(tmp_path: Path, run) -> None:
    db, url = _sqlite(tmp_path)
    code, err = run("--study", str(tmp_path / "nope.toml"), "--storage", url)
    assert_one_line_error(code, err, "nope.toml", "not found")
    assert not db.exists()


# -- flags -------------------------------------------------------------------------------

FLAG_CASES = {
    "workers 0": (["--workers", "0"], "--workers must be >= 1"),
    "workers negative": (["--workers", "-3"], "--workers must be >= 1"),
    "n-trials 0": (["--n-trials", "0"], "--n-trials must be >= 1"),
    "timeout 0": (["--timeout", "0"], "--timeout must be > 0"),
    "absent GPU": (["--devices", "99"], "GPU 99 is not there"),
    "not a GPU index": (["--devices", "x"], "'x' is not a GPU index"),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_run_flags(case: str, tmp_path: Path, run, study_file: Path, dataset: Path) -> None:
    flags, expected = FLAG_CASES[case]
    db, url = _sqlite(tmp_path)
    code, err = run("--study", str(study_file), "--storage", url, "--data", str(dataset), *flags)
    assert_one_line_error(code, err, expected)
    assert not db.exists()


# -- storage URLs ------------------------------------------------------------------------

STORAGE_CASES = {
    "malformed": ("not a url", "malformed storage URL"),
    "unsupported backend": ("mongodb://db.example/studies", "unsupported storage"),
    "missing folder": ("sqlite:///{tmp}/no/such/folder/s.db", "does not exist"),
    "refused": ("postgresql://hp:s3cret@127.0.0.1:1/studies", "cannot open storage"),
    "unknown host": ("postgresql://hp:s3cret@no-such-host.invalid/studies", "cannot open storage"),
}


@pytest.mark.parametrize("case", sorted(STORAGE_CASES))
def test_bad_storage_url(case: str, tmp_path: Path, run, study_file: Path, dataset: Path) -> None:
    template, expected = STORAGE_CASES[case]
    url = template.format(tmp=tmp_path)
    code, err = run("--study", str(study_file), "--storage", url, "--data", str(dataset))
    line = assert_one_line_error(code, err, expected)
    # the password never shows, the user name and host do
    assert "s3cret" not in line
    if "@" in url:
        assert "hp:***@" in line
    assert not (tmp_path / "no").exists()


# -- datasets ----------------------------------------------------------------------------


def _bad_dataset(case: str, root: Path) -> str:
    """Build a broken dataset at ``root``; return the text its error must contain."""
    if case == "missing":
        return "does not exist"
    if case == "a file":
        root.write_text("not a folder")
        return "is not a folder"
    if case == "empty":
        root.mkdir()
        return "no dataset layout recognised"
    names = dict(CANONICAL)
    if case == "class missing":
        del names[2]
        make_folder_per_class(root, names=names)
        return "no images for class(es) pneumonia"
    make_folder_per_class(root, names=names)
    if case == "unknown class folder":
        write_image(root / "cats" / "cat-1.png")
        return "'cats'"
    if case == "class unreadable":
        folder = root / "pneumonia"
        shutil.rmtree(folder)
        write_awkward(folder)
        return "no readable images for class(es) pneumonia"
    raise AssertionError(case)


DATA_CASES = ["missing", "a file", "empty", "class missing", "unknown class folder"]


@pytest.mark.parametrize("case", DATA_CASES)
def test_bad_dataset_writes_no_study(case: str, tmp_path: Path, run, study_file: Path) -> None:
    root = tmp_path / "xray"
    expected = _bad_dataset(case, root)
    db, url = _sqlite(tmp_path)
    code, err = run("--study", str(study_file), "--storage", url, "--data", str(root))
    assert_one_line_error(code, err, expected)
    # the data is checked before the storage is opened: no SQLite file at all
    assert not db.exists()


@pytest.mark.slow
def test_class_of_unreadable_images_names_them_then_fails(tmp_path: Path, study_file: Path) -> None:
    root = tmp_path / "xray"
    expected = _bad_dataset("class unreadable", root)
    db, url = _sqlite(tmp_path)
    args = ["run", "--study", str(study_file), "--storage", url, "--data", str(root)]
    env = fake_env(tmp_path, STAND_IN_TRAINER=REAL_DATA)
    result = run_cli([*args, "--workdir", str(tmp_path / "work"), "--wandb", "off"], env)
    # the images must be decoded to find this out: each skipped file is named first,
    # then the run ends on one error line
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert lines[-1].startswith("hpsearch run: error: ") and expected in lines[-1]
    for name in ("empty.png", "truncated.png", "text.png"):
        assert f"skipped pneumonia/{name}" in result.stderr
    assert not db.exists()


def _snapshot(url: str, name: str) -> tuple:
    study = optuna.load_study(study_name=name, storage=url)
    trials = [
        (t.number, t.state, t.params, t.user_attrs, t.intermediate_values) for t in study.trials
    ]
    return study.user_attrs, trials, [tuple(r) for r in slot_rows(url, study)]


@pytest.mark.slow
def test_bad_input_leaves_an_existing_study_untouched(
    tmp_path: Path, run, study_file: Path, dataset: Path
) -> None:
    _, url = _sqlite(tmp_path)
    first = [
        "run",
        "--study",
        str(study_file),
        "--name",
        "s",
        "--storage",
        url,
        "--data",
        str(dataset),
        "--n-trials",
        "2",
        "--workdir",
        str(tmp_path / "work"),
        "--wandb",
        "off",
    ]
    env = fake_env(tmp_path, STAND_IN_TRAINER=REAL_DATA, FAKE_TRAINER_EPOCH_S="0")
    result = run_cli(first, env)
    assert result.returncode == 0, result.stderr[-2000:]
    before = _snapshot(url, "s")
    assert len(before[1]) == 2

    broken = tmp_path / "broken"
    _bad_dataset("class missing", broken)
    other_space = tmp_path / "other.toml"
    other_space.write_text(VALID.replace("lr = [0.001, 0.01]", "lr = [0.001, 0.01, 0.1]"))
    reruns = {
        "dataset missing a class": (study_file, broken, [], "no images for class"),
        "dataset gone": (study_file, tmp_path / "gone", [], "does not exist"),
        "absent GPU": (study_file, dataset, ["--devices", "99"], "GPU 99"),
        "other search space": (other_space, dataset, [], "already exists in this storage"),
    }
    for path, data, flags, expected in reruns.values():
        argv = ["--study", str(path), "--name", "s", "--storage", url, "--data", str(data)]
        code, err = run(*argv, *flags)
        assert_one_line_error(code, err, expected)
        # not a trial, attribute, value or claim changed
        assert _snapshot(url, "s") == before
    assert study_names(url) == ["s"]


def _counts(stderr: str) -> int:
    match = re.search(r"\(train (\d+), val (\d+), test (\d+)\)", stderr)
    assert match, stderr[-2000:]
    return sum(int(n) for n in match.groups())


@pytest.mark.slow
def test_awkward_images_are_converted_and_broken_ones_skipped(
    tmp_path: Path, study_file: Path
) -> None:
    root = make_folder_per_class(tmp_path / "xray", per_class=2)
    awkward = {
        "covid": [("rgb.png", (30, 20), "RGB"), ("rgba.png", (24, 24), "RGBA")],
        "lung_opacity": [("deep.png", (25, 25), "I;16")],
        "pneumonia": [("palette.png", (20, 20), "P")],
        "normal": [("odd.png", (50, 37), "L"), ("tiny.png", (7, 5), "L")],
    }
    for folder, files in awkward.items():
        for name, size, mode in files:
            write_image(root / folder / name, size, seed=len(name), mode=mode)
    broken = write_awkward(root / "covid")
    write_debris(root / "normal")
    (root / "normal" / "notes.txt").write_text("not an image")
    usable = 4 * 2 + sum(len(files) for files in awkward.values())
    url = f"sqlite:///{tmp_path / 'study.db'}"
    args = [
        "run",
        "--study",
        str(study_file),
        "--name",
        "awkward",
        "--storage",
        url,
        "--data",
        str(root),
        "--n-trials",
        "1",
        "--workdir",
        str(tmp_path / "work"),
        "--wandb",
        "off",
    ]
    env = fake_env(tmp_path, STAND_IN_TRAINER=REAL_DATA, FAKE_TRAINER_EPOCH_S="0")
    result = run_cli(args, env)
    assert result.returncode == 0, result.stderr[-3000:]
    # every convertible image is in the splits, none of the broken ones
    assert _counts(result.stderr) == usable
    # each unreadable file is named with its reason
    for name in broken.values():
        assert re.search(rf"skipped covid/{re.escape(name)}: \w", result.stderr), name
    assert "Traceback" not in result.stderr
    study = optuna.load_study(study_name="awkward", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert study.user_attrs["hpsearch"]["data"]["synthetic"] is False


# -- predict -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    meta = {
        "arch": "resnet18",
        "num_classes": 4,
        "in_chans": 1,
        "image_size": IMAGE_SIZE,
        "mean": 0.45,
        "std": 0.22,
        "class_names": list(CLASS_NAMES),
    }
    save_model(out / "model.pt", build_model("resnet18", num_classes=4, in_chans=1), meta)
    return out


def _predict(model: Path, images: Path, out: Path, capsys) -> tuple[int, str, str]:
    argv = ["predict", "--model", str(model), "--images", str(images), "--out", str(out)]
    code = main([*argv, "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _model_problem(case: str, folder: Path, good: Path) -> str:
    if case == "folder missing":
        return "does not exist"
    folder.mkdir()
    target = folder / "model.pt"
    if case == "only the onnx file":
        (folder / "model.onnx").write_bytes(b"onnx")
        return "has no model.pt"
    if case == "truncated file":
        target.write_bytes((good / "model.pt").read_bytes()[:5000])
        return "cannot read model file"
    if case == "not a model":
        torch.save([1, 2, 3], target)
        return "is not a saved model"
    if case == "weights of another model":
        saved = torch.load(good / "model.pt", weights_only=True)
        torch.save({**saved, "num_classes": 3}, target)
        return "do not make a resnet18 model with 3 classes"
    raise AssertionError(case)


MODEL_CASES = [
    "folder missing",
    "only the onnx file",
    "truncated file",
    "not a model",
    "weights of another model",
]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_predict_model_folder_problems(case: str, model_dir: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "test"
    write_image(images / "test_0.png", (IMAGE_SIZE, IMAGE_SIZE))
    expected = _model_problem(case, tmp_path / "model", model_dir)
    out = tmp_path / "submission.csv"
    code, _, err = _predict(tmp_path / "model", images, out, capsys)
    assert_one_line_error(code, err, expected)
    assert not out.exists()


def test_predict_converts_other_image_kinds(model_dir: Path, tmp_path: Path, capsys) -> None:
    images = tmp_path / "test"
    kinds = {
        "test_0": ("L", (IMAGE_SIZE, IMAGE_SIZE)),
        "test_1": ("RGB", (40, 30)),
        "test_2": ("RGBA", (IMAGE_SIZE, IMAGE_SIZE)),
        "test_3": ("P", (20, 20)),
        "test_4": ("I;16", (64, 64)),
        "test_5": ("1", (33, 17)),
        "test_10": ("L", (299, 299)),
    }
    for stem, (mode, size) in kinds.items():
        write_image(images / f"{stem}.png", size, seed=len(stem), mode=mode)
    broken = write_awkward(images)
    write_debris(images)
    (images / "readme.txt").write_text("not an image")
    out = tmp_path / "submission.csv"
    code, stdout, err = _predict(model_dir, images, out, capsys)
    assert code == 0, err
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))
    # one row per convertible image, in natural order of the name, valid class indices
    assert [r[0] for r in rows[1:]] == [
        "test_0",
        "test_1",
        "test_2",
        "test_3",
        "test_4",
        "test_5",
        "test_10",
    ]
    assert {int(r[1]) for r in rows[1:]} <= {0, 1, 2, 3}
    # the unreadable ones are named, one warning each, and counted
    for name in broken.values():
        assert f"unreadable image {name}" in err
    assert f"{len(broken)} unreadable image(s) left out" in err
    assert "Traceback" not in err
    assert f"wrote {out}: {len(kinds)} image(s)" in stdout
