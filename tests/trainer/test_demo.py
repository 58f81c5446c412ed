"""The synthetic demo dataset: layout, proportions, determinism, safety."""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trainer import _radiograph
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
    [({"n": 3}, "n=3: "), ({"size": 31}, "size=31: "), ({"size": 1025}, "size=1025: ")],
)
def test_rejects_bad_settings(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
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


# --------------------------------------------------------------------------- drawing internals


def _frame(size: int) -> _radiograph._Frame:
    """A frame with the patient square to the image: anatomy U, V = pixel position."""
    frame = _radiograph._Frame(np.random.default_rng(0), size)
    frame.theta, frame.scale, frame.tx, frame.ty = 0.0, 1.0, 0.0, 0.0
    return frame


def _segment_distance(px: np.ndarray, py: np.ndarray, a: tuple, b: tuple):
    """Distance of points from the segment a-b, and how far along it they lie (0 to 1)."""
    d = np.subtract(b, a)
    along = ((px - a[0]) * d[0] + (py - a[1]) * d[1]) / (d @ d)
    t = np.clip(along, 0, 1)
    return np.hypot(px - a[0] - t * d[0], py - a[1] - t * d[1]), along


@pytest.mark.parametrize("angle", [0.0, 0.4, 0.785, 1.2, 2.0])
@pytest.mark.parametrize("width", [1, 2, 3])
def test_segments_are_drawn_along_the_line_with_their_width(angle: float, width: int) -> None:
    frame = _frame(64)
    u0, v0 = -0.3, 0.1
    u1, v1 = u0 + 0.7 * math.cos(angle), v0 + 0.7 * math.sin(angle)
    seg = np.array([[u0, v0, u1, v1, width, 0.7]])
    canvas = _radiograph._draw_segments(frame, seg)
    a, b = frame.to_pixels(u0, v0), frame.to_pixels(u1, v1)
    rows, cols = np.mgrid[:64, :64]
    dist, along = _segment_distance(cols, rows, a, b)
    drawn = canvas > 0
    assert set(np.unique(canvas)) == {0.0, np.float32(0.7)}
    # Every drawn pixel is close to the line; every pixel well inside the stroke, away
    # from the (square) ends, is drawn.
    assert dist[drawn].max() <= width / 2 + 0.75
    assert drawn[(dist <= max(0.0, width / 2 - 0.75)) & (along > 0.1) & (along < 0.9)].all()
    # About `width` pixels across, along the whole length (22 pixels); a one-pixel line
    # has one pixel per step of its major axis, so 1/sqrt(2) of that on a diagonal.
    length = math.dist(a, b)
    assert 0.7 * width * length <= drawn.sum() <= 1.3 * width * (length + 1)


def test_overlapping_segments_keep_the_larger_value_whatever_their_order() -> None:
    frame = _frame(64)
    seg = np.array([[-0.5, 0.0, 0.5, 0.0, 3, 0.4], [0.0, -0.5, 0.0, 0.5, 2, 0.9]])
    forward = _radiograph._draw_segments(frame, seg)
    assert np.array_equal(forward, _radiograph._draw_segments(frame, seg[::-1]))
    col, row = (round(x) for x in frame.to_pixels(0.0, 0.0))
    assert forward[row, col] == np.float32(0.9)


def test_segments_outside_the_image_are_clipped() -> None:
    frame = _frame(32)
    seg = np.array([[-2.0, 0.0, 2.0, 0.0, 1, 1.0], [3.0, 3.0, 4.0, 4.0, 2, 1.0]])
    canvas = _radiograph._draw_segments(frame, seg)
    assert canvas.shape == (32, 32)
    assert canvas.sum(axis=1).max() == 32  # one full row, nothing from the second segment


def _blur_reference(img: np.ndarray, sigma: float) -> np.ndarray:
    kernel = np.asarray(_radiograph._gauss_kernel(round(sigma, 2)))
    r = len(kernel) // 2
    p = np.pad(img.astype(np.float64), r, mode="edge")
    rows = sum(k * p[i : i + img.shape[0], :] for i, k in enumerate(kernel))
    return sum(k * rows[:, i : i + img.shape[1]] for i, k in enumerate(kernel))


@pytest.mark.parametrize("sigma", [0.5, 0.7, 1.1, 2.3])
def test_blur_is_a_gaussian_with_edge_padding(sigma: float) -> None:
    img = np.random.default_rng(1).random((40, 56)).astype(np.float32)
    out = _radiograph._blur(img, sigma)
    assert out.shape == img.shape
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, _blur_reference(img, sigma), atol=1e-5)


@pytest.mark.parametrize(("k", "shape"), [(6, (128, 128)), (32, (128, 128)), (12, (48, 80))])
def test_smooth_noise_is_pils_bicubic_enlargement_of_a_random_lattice(k: int, shape) -> None:
    out = _radiograph._smooth_noise(np.random.default_rng(3), shape, k)
    lattice = np.random.default_rng(3).standard_normal((k, k), dtype=np.float32)
    image = Image.fromarray(lattice, mode="F").resize(shape[::-1], Image.Resampling.BICUBIC)
    np.testing.assert_allclose(out, np.asarray(image), atol=1e-5)


@pytest.mark.parametrize("n", [4, 50, 1849])
def test_quantiles_match_numpy(n: int) -> None:
    x = np.random.default_rng(n).random(n).astype(np.float32).reshape(-1, 1)
    expected = np.quantile(x, (0.01, 0.99))
    np.testing.assert_allclose(_radiograph._quantiles(x, 0.01, 0.99), expected, rtol=1e-6)


def _anatomy(seed: int, size: int = 128) -> _radiograph._Anatomy:
    """The anatomy ``render_case`` draws first for a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return _radiograph._Anatomy(rng, _radiograph._Frame(rng, size))


def test_vessel_trees_branch_out_from_both_hila_and_are_deterministic() -> None:
    anat = _anatomy(11)
    assert np.array_equal(anat.vessels, _anatomy(11).vessels)
    assert not np.array_equal(anat.vessels, _anatomy(12).vessels)
    for s in (-1, 1):
        col, row = (round(float(x)) for x in anat.frame.to_pixels(*anat.hila[s]))
        assert anat.vessels[row - 2 : row + 3, col - 2 : col + 3].max() > 0.5
        # The tree grows laterally: more vessel outside the hilum than towards the midline.
        outer = anat.vessels[:, col + 3 :] if s == 1 else anat.vessels[:, : col - 2]
        inner = anat.vessels[:, 64 : col - 2] if s == 1 else anat.vessels[:, col + 3 : 64]
        assert outer.sum() > 3 * inner.sum()


def test_vessels_show_as_brighter_lines_in_the_lungs(monkeypatch: pytest.MonkeyPatch) -> None:
    normal = CLASS_NAMES.index("normal")
    for seed in range(4):
        anat = _anatomy(seed)
        with_vessels = render_case(np.random.default_rng(seed), normal, 128).astype(float)
        monkeypatch.setitem(_radiograph._TUNING, "vessels", 0.0)
        without = render_case(np.random.default_rng(seed), normal, 128).astype(float)
        monkeypatch.undo()
        lung = anat.air > 0.5 * anat.air.max()
        on_vessel = lung & (anat.vessels > 0.5)
        clear = lung & (anat.vessels == 0)
        assert on_vessel.sum() > 20
        # Density, so brighter on the film where vessels cross the lung, unchanged elsewhere.
        lift = (with_vessels - without)[on_vessel].mean()
        assert lift > 3, seed
        assert abs((with_vessels - without)[clear].mean()) < lift / 4, seed
