"""The synthetic demo dataset: layout, proportions, determinism, safety."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer.classes import CLASS_NAMES, class_index
from trainer.demo import (
    DATABASE_FOLDERS,
    SYNTHETIC_MARKER,
    class_counts,
    is_demo_dataset,
    render_case,
    write_demo_dataset,
)
from trainer.errors import UserError

REAL = {folder: count for folder, _, count in DATABASE_FOLDERS}


def _write(out: Path, n: int = 12, seed: int = 0, workers: int = 1) -> dict:
    return write_demo_dataset(out, n=n, size=64, seed=seed, workers=workers)


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*.png"))


def test_layout_and_file_names_follow_the_public_database(tmp_path: Path) -> None:
    info = _write(tmp_path / "demo", n=12)
    root = tmp_path / "demo"
    expected = {
        Path(folder, "images", f"{folder}-{k}.png")
        for folder, count in info["counts"].items()
        for k in range(1, count + 1)
    }
    assert set(_files(root)) == expected
    # The folder with a space, as in the real download.
    assert (root / "Viral Pneumonia" / "images" / "Viral Pneumonia-1.png").is_file()
    assert sorted(p.name for p in root.iterdir()) == sorted([*REAL, SYNTHETIC_MARKER])
    assert info["seconds"] > 0


def test_folders_map_onto_the_competition_classes() -> None:
    for folder, label, _ in DATABASE_FOLDERS:
        assert class_index(folder) == label
    assert sorted(label for _, label, _ in DATABASE_FOLDERS) == list(range(len(CLASS_NAMES)))


def test_marker_says_synthetic_and_records_the_settings(tmp_path: Path) -> None:
    _write(tmp_path / "demo", n=8, seed=5)
    text = (tmp_path / "demo" / SYNTHETIC_MARKER).read_text(encoding="utf-8")
    assert text.startswith("SYNTHETIC")
    for line in ("seed: 5", "n: 8", "size: 64", "version"):
        assert line in text
    assert is_demo_dataset(tmp_path / "demo")


@pytest.mark.parametrize("n", [4, 5, 7, 100, 2000, 21165])
def test_class_counts_follow_the_real_proportions(n: int) -> None:
    counts = class_counts(n)
    assert sum(counts.values()) == n
    assert min(counts.values()) >= 1
    total = sum(REAL.values())
    if n >= 100:
        for folder, count in counts.items():
            assert abs(count - n * REAL[folder] / total) <= 1, folder


def test_class_counts_for_2000_images() -> None:
    # 2000 * share rounded by largest remainder: 341.7, 568.1, 963.1, 127.1.
    assert class_counts(2000) == {
        "COVID": 342,
        "Lung_Opacity": 568,
        "Normal": 963,
        "Viral Pneumonia": 127,
    }


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path: Path) -> None:
    _write(tmp_path / "a", n=10, seed=3, workers=1)
    _write(tmp_path / "b", n=10, seed=3, workers=2)
    files = _files(tmp_path / "a")
    assert files == _files(tmp_path / "b")
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_goes_to_the_callback_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: int
) -> None:
    calls: list[tuple[int, int]] = []
    write_demo_dataset(
        tmp_path / "demo", n=8, size=64, workers=workers, on_progress=lambda *c: calls.append(c)
    )
    assert calls[0] == (0, 8)  # the total is known before the first image
    assert calls[-1] == (8, 8)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert capsys.readouterr() == ("", "")  # the trainer itself shows nothing


def test_different_seeds_give_different_images(tmp_path: Path) -> None:
    _write(tmp_path / "a", n=8, seed=0)
    _write(tmp_path / "b", n=8, seed=1)
    differing = [
        rel
        for rel in _files(tmp_path / "a")
        if (tmp_path / "a" / rel).read_bytes() != (tmp_path / "b" / rel).read_bytes()
    ]
    assert len(differing) == 8


def test_images_are_8_bit_grayscale_of_the_asked_size(tmp_path: Path) -> None:
    _write(tmp_path / "demo", n=8)
    for rel in _files(tmp_path / "demo"):
        with Image.open(tmp_path / "demo" / rel) as im:
            assert im.mode == "L"
            assert im.size == (64, 64)
            pixels = np.asarray(im)
        # Not blank: an image with anatomy spans a wide range of grey levels.
        assert int(pixels.max()) - int(pixels.min()) > 100


def test_refuses_a_non_empty_folder_that_is_not_a_demo_dataset(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        _write(tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    assert not (tmp_path / "COVID").exists()


def test_refuses_a_file_in_place_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "demo").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        _write(tmp_path / "demo")


def test_overwrites_a_previous_demo_dataset_cleanly(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    _write(root, n=20, seed=0)
    _write(root, n=8, seed=1)
    assert len(_files(root)) == 8  # nothing left over from the larger first run
    assert "seed: 1" in (root / SYNTHETIC_MARKER).read_text(encoding="utf-8")


def test_writes_into_an_existing_empty_folder(tmp_path: Path) -> None:
    _write(tmp_path, n=4)
    assert len(_files(tmp_path)) == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"n": 3}, "n must be"), ({"size": 31}, "size must be"), ({"size": 1025}, "size must be")],
)
def test_rejects_bad_settings(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_demo_dataset(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("label", range(len(CLASS_NAMES)))
def test_render_case_is_deterministic_per_generator_seed(label: int) -> None:
    a = render_case(np.random.default_rng(7), label, 48)
    b = render_case(np.random.default_rng(7), label, 48)
    assert a.dtype == np.uint8
    assert a.shape == (48, 48)
    assert np.array_equal(a, b)


def test_render_case_rejects_an_unknown_label() -> None:
    with pytest.raises(ValueError, match="label"):
        render_case(np.random.default_rng(0), 4, 64)
