"""Layout discovery: the three layouts, every folder spelling, debris and broken files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainer._imagefiles import (
    CANONICAL,
    DATABASE,
    make_competition,
    make_database,
    make_folder_per_class,
    write_awkward,
    write_debris,
    write_image,
)
from trainer.cache import UnreadableImageWarning, decode_image
from trainer.datacheck import check_dataset, format_check
from trainer.errors import UserError
from trainer.layout import SYNTHETIC_MARKER, discover_layout, list_image_files


def _labels_by_folder(items: list[tuple[str, int]], depth: int) -> dict[str, set[int]]:
    """Class indices seen under each folder at path component ``depth``."""
    seen: dict[str, set[int]] = {}
    for rel, label in items:
        seen.setdefault(rel.split("/")[depth], set()).add(label)
    return seen


@pytest.mark.parametrize("wrapped", [False, True])
def test_competition_layout(tmp_path: Path, wrapped: bool) -> None:
    root = make_competition(tmp_path / "xray-data", per_class=2, tests=12)
    layout = discover_layout(tmp_path if wrapped else root)
    assert layout.kind == "competition"
    assert layout.root == root  # a wrapper folder is looked into once
    assert len(layout.items) == 8
    # Labels follow the folder's meaning, not alphabetical order (normal=3, pneumonia=2).
    assert _labels_by_folder(layout.items, 1) == {
        "covid": {0},
        "lung_opacity": {1},
        "pneumonia": {2},
        "normal": {3},
    }
    assert all(rel.startswith("train/") for rel, _ in layout.items)
    # Natural order: test_2 before test_10.
    assert layout.test_items == [f"test/test_{i}.png" for i in range(12)]
    assert layout.synthetic is False


def test_competition_without_test_folder(tmp_path: Path) -> None:
    root = make_competition(tmp_path, per_class=1, tests=0)
    assert not (root / "test").exists()
    layout = discover_layout(root)
    assert layout.kind == "competition"
    assert layout.test_items == []


@pytest.mark.parametrize("wrapped", [False, True])
def test_radiography_database_layout(tmp_path: Path, wrapped: bool) -> None:
    root = make_database(tmp_path / "COVID-19_Radiography_Dataset", per_class=2)
    layout = discover_layout(tmp_path if wrapped else root)
    assert layout.kind == "radiography-database"
    assert layout.root == root
    assert len(layout.items) == 8
    # Masks are never training images; everything comes from <Class>/images/.
    assert all(rel.split("/")[1] == "images" for rel, _ in layout.items)
    assert _labels_by_folder(layout.items, 0) == {
        "COVID": {0},
        "Lung_Opacity": {1},
        "Viral Pneumonia": {2},
        "Normal": {3},
    }
    skipped = dict(layout.skipped)
    for name in DATABASE.values():
        assert "mask" in skipped[f"{name}/masks/"]
        assert f"{name}.metadata.xlsx" in skipped
    assert layout.class_folders[2] == "Viral Pneumonia/images"


def test_folder_per_class_layout(tmp_path: Path) -> None:
    layout = discover_layout(make_folder_per_class(tmp_path, per_class=3))
    assert layout.kind == "folder-per-class"
    assert len(layout.items) == 12
    assert _labels_by_folder(layout.items, 0) == {n: {i} for i, n in CANONICAL.items()}


def test_items_are_sorted_naturally_and_repeatably(tmp_path: Path) -> None:
    make_folder_per_class(tmp_path, per_class=1)
    for i in (10, 2, 1):
        write_image(tmp_path / "normal" / f"Normal-{i}.png", seed=i)
    first = discover_layout(tmp_path).items
    normal = [rel for rel, _ in first if rel.startswith("normal/Normal-")]
    assert normal == ["normal/Normal-1.png", "normal/Normal-2.png", "normal/Normal-10.png"]
    assert discover_layout(tmp_path).items == first


SPELLINGS = [
    ("COVID", 0),
    ("covid", 0),
    ("COVID-19", 0),
    ("Lung_Opacity", 1),
    ("lung_opacity", 1),
    ("Lung Opacity", 1),
    ("Viral Pneumonia", 2),
    ("pneumonia", 2),
    ("Normal", 3),
    ("normal", 3),
]


@pytest.mark.parametrize(("folder", "index"), SPELLINGS)
@pytest.mark.parametrize("kind", ["competition", "radiography-database", "folder-per-class"])
def test_every_folder_spelling_maps_to_its_class(
    tmp_path: Path, folder: str, index: int, kind: str
) -> None:
    names = dict(CANONICAL)
    names[index] = folder
    if kind == "competition":
        make_folder_per_class(tmp_path / "train", per_class=1, names=names)
        prefix = "train/"
    elif kind == "radiography-database":
        for i, name in names.items():
            write_image(tmp_path / name / "images" / f"x-{i}.png", seed=i)
        prefix = ""
    else:
        make_folder_per_class(tmp_path, per_class=1, names=names)
        prefix = ""
    layout = discover_layout(tmp_path)
    assert layout.kind == kind
    labels = {rel: label for rel, label in layout.items}
    mine = [label for rel, label in labels.items() if rel.startswith(f"{prefix}{folder}/")]
    assert mine == [index]
    assert sorted(labels.values()) == [0, 1, 2, 3]


def test_extensions_are_case_insensitive_and_others_skipped(tmp_path: Path) -> None:
    make_folder_per_class(tmp_path, per_class=1)
    folder = tmp_path / "covid"
    for ext in ("PNG", "jpg", "JPEG", "bmp", "tif", "TIFF"):
        write_image(folder / f"extra.{ext}", seed=3, mode="L")
    (folder / "notes.txt").write_text("not an image")
    (folder / "scan.dcm").write_bytes(b"DICM")
    layout = discover_layout(tmp_path)
    covid = sorted(rel for rel, label in layout.items if label == 0)
    assert len(covid) == 7
    skipped = dict(layout.skipped)
    assert "covid/notes.txt" in skipped and "covid/scan.dcm" in skipped


def test_os_debris_is_skipped_with_a_reason(tmp_path: Path) -> None:
    make_folder_per_class(tmp_path, per_class=1)
    names = write_debris(tmp_path / "normal")
    (tmp_path / "__MACOSX").mkdir()
    layout = discover_layout(tmp_path)
    listed = {rel for rel, _ in layout.items}
    skipped = dict(layout.skipped)
    for name in names:
        assert f"normal/{name}" not in listed
        assert skipped[f"normal/{name}"]  # a reason, not an empty string
    assert "__MACOSX/" in skipped
    assert len(layout.items) == 4


def test_unknown_class_folder_is_named(tmp_path: Path) -> None:
    make_folder_per_class(tmp_path, per_class=1)
    write_image(tmp_path / "tuberculosis" / "tb-1.png")
    with pytest.raises(UserError, match="tuberculosis"):
        discover_layout(tmp_path)


def test_unknown_class_folder_in_competition_train(tmp_path: Path) -> None:
    make_competition(tmp_path, per_class=1, tests=0)
    write_image(tmp_path / "train" / "other" / "x.png")
    with pytest.raises(UserError, match="other"):
        discover_layout(tmp_path)


@pytest.mark.parametrize("kind", ["competition", "radiography-database", "folder-per-class"])
def test_missing_class_is_named(tmp_path: Path, kind: str) -> None:
    names = {i: n for i, n in CANONICAL.items() if n != "pneumonia"}
    if kind == "competition":
        make_folder_per_class(tmp_path / "train", per_class=1, names=names)
    elif kind == "radiography-database":
        for i, name in names.items():
            write_image(tmp_path / name / "images" / "x.png", seed=i)
    else:
        make_folder_per_class(tmp_path, per_class=1, names=names)
    with pytest.raises(UserError, match=r"class\(es\) pneumonia in"):
        discover_layout(tmp_path)


def test_empty_class_folder_counts_as_missing(tmp_path: Path) -> None:
    make_folder_per_class(tmp_path, per_class=1)
    for f in (tmp_path / "normal").iterdir():
        f.unlink()
    write_debris(tmp_path / "normal")
    with pytest.raises(UserError, match="normal"):
        discover_layout(tmp_path)


def test_two_folders_for_one_class(tmp_path: Path) -> None:
    make_folder_per_class(tmp_path, per_class=1)
    write_image(tmp_path / "COVID-19" / "x.png")
    with pytest.raises(UserError, match="COVID-19"):
        discover_layout(tmp_path)


@pytest.mark.parametrize("case", ["missing", "file", "empty", "unrelated"])
def test_no_layout_is_one_line_listing_the_layouts(tmp_path: Path, case: str) -> None:
    target = tmp_path / "data"
    if case == "file":
        target.write_text("x")
    elif case == "empty":
        target.mkdir()
    elif case == "unrelated":
        (target / "a").mkdir(parents=True)
        (target / "b").mkdir()
        (target / "notes.txt").write_text("x")
    with pytest.raises(UserError) as error:
        discover_layout(target)
    message = str(error.value)
    assert "\n" not in message
    assert str(target) in message
    for fragment in ("train/<class>", "<Class>/images", "ROOT/<class>/"):
        assert fragment in message


@pytest.mark.parametrize("where", ["root", "wrapper"])
def test_synthetic_marker(tmp_path: Path, where: str) -> None:
    root = make_database(tmp_path / "COVID-19_Radiography_Dataset", per_class=1)
    (root if where == "root" else tmp_path).joinpath(SYNTHETIC_MARKER).write_text("synthetic")
    layout = discover_layout(tmp_path)
    assert layout.synthetic is True
    assert SYNTHETIC_MARKER not in dict(layout.skipped)


def test_list_image_files_for_an_unlabelled_folder(tmp_path: Path) -> None:
    for i in (10, 0, 2):
        write_image(tmp_path / f"test_{i}.png", seed=i)
    write_debris(tmp_path)
    files, skipped = list_image_files(tmp_path)
    assert files == ["test_0.png", "test_2.png", "test_10.png"]
    assert {rel for rel, _ in skipped} >= {".DS_Store", "Thumbs.db"}


# --- awkward files: listed by extension, dropped when decoded -----------------------------


def _awkward_competition(tmp_path: Path) -> Path:
    root = make_competition(tmp_path, per_class=2, tests=3)
    folder = root / "train" / "covid"
    write_awkward(folder)
    write_debris(folder)
    write_image(folder / "rgb.png", mode="RGB", seed=1)
    write_image(folder / "rgba.png", mode="RGBA", seed=2)
    write_image(folder / "palette.png", mode="P", seed=3)
    write_image(folder / "sixteen.png", mode="I;16", seed=4)
    write_image(folder / "odd.png", size=(50, 37), seed=5)
    return root


def test_check_dataset_reports_counts_debris_and_unreadable(tmp_path: Path) -> None:
    root = _awkward_competition(tmp_path)
    report = check_dataset(root, decode=True)
    json.dumps(report)  # JSON-serialisable for --json
    counts = {c["name"]: c["images"] for c in report["classes"]}
    # covid: 2 good + 3 broken + 5 odd-but-readable; debris is not counted.
    assert counts == {"covid": 10, "lung_opacity": 2, "pneumonia": 2, "normal": 2}
    assert [c["index"] for c in report["classes"]] == [0, 1, 2, 3]
    assert report["test_images"] == 3
    # usable: the unreadable ones apart (3 in covid)
    usable = {c["name"]: c["usable"] for c in report["classes"]}
    assert usable == {"covid": 7, "lung_opacity": 2, "pneumonia": 2, "normal": 2}
    assert report["usable_images"] == 13
    unreadable = {u["path"]: u["reason"] for u in report["unreadable"]}
    assert set(unreadable) == {
        "train/covid/empty.png",
        "train/covid/truncated.png",
        "train/covid/text.png",
    }
    assert unreadable["train/covid/empty.png"] == "empty file"
    assert {s["path"] for s in report["skipped"]} >= {
        "train/covid/.DS_Store",
        "train/covid/Thumbs.db",
    }
    text = format_check(report)
    for needle in ("competition", "covid", "train/covid/truncated.png", ".DS_Store", "3"):
        assert needle in text
    assert "SYNTHETIC" not in text


def test_check_without_decoding_names_empty_files(tmp_path: Path) -> None:
    root = _awkward_competition(tmp_path)
    (root / "test" / "blank.png").write_bytes(b"")
    report = check_dataset(root)
    # a 0-byte file is unreadable without decoding it; the other broken ones need --decode
    assert report["unreadable"] == [
        {"path": "train/covid/empty.png", "reason": "empty file"},
        {"path": "test/blank.png", "reason": "empty file"},
    ]
    assert {c["name"]: c["usable"] for c in report["classes"]}["covid"] == 9
    text = format_check(report)
    assert "empty image files: 2" in text and "train/covid/empty.png" in text


def test_check_dataset_reports_decoding_progress(tmp_path: Path) -> None:
    root = _awkward_competition(tmp_path)
    calls: list[tuple[int, int]] = []
    report = check_dataset(root, decode=True, on_progress=lambda *c: calls.append(c))
    total = report["images"] + report["test_images"]  # every labelled and test image
    assert calls == [(done, total) for done in range(total + 1)]


def test_format_check_says_synthetic(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path, per_class=1)
    (root / SYNTHETIC_MARKER).write_text("synthetic")
    report = check_dataset(root)
    assert report["synthetic"] is True
    assert "SYNTHETIC" in format_check(report)


def test_awkward_images_decode_to_the_cache_shape(tmp_path: Path) -> None:
    root = _awkward_competition(tmp_path)
    folder = root / "train" / "covid"
    for name in ("rgb.png", "rgba.png", "palette.png", "sixteen.png", "odd.png"):
        pixels = decode_image(folder / name, 16)
        assert pixels.shape == (16, 16) and pixels.dtype == np.uint8
    for name in ("empty.png", "truncated.png", "text.png"):
        with pytest.raises(Exception):  # noqa: B017 - Pillow's error types vary by file
            decode_image(folder / name, 16)


def test_rgb_becomes_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 1] = 200
    Image.fromarray(rgb, "RGB").save(tmp_path / "green.png")
    expected = np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    assert np.array_equal(decode_image(tmp_path / "green.png", 8), expected)
    assert 0 < expected[0, 0] < 200  # luminance, not one channel


@pytest.mark.parametrize(("top", "bits"), [(4095, 12), (65535, 16), (1023, 10), (200, 8)])
def test_16_bit_scales_by_its_bit_depth(tmp_path: Path, top: int, bits: int) -> None:
    values = np.full((8, 8), top // 2, dtype=np.uint16)
    values[0, 0] = top
    Image.fromarray(values).save(tmp_path / "deep.png")
    pixels = decode_image(tmp_path / "deep.png", 8)
    assert pixels[0, 0] == round(top * 255 / (2**bits - 1))
    assert abs(int(pixels[4, 4]) - round((top // 2) * 255 / (2**bits - 1))) <= 1


def test_odd_size_is_resized_straight_to_square(tmp_path: Path) -> None:
    left_dark = np.zeros((37, 50), dtype=np.uint8)
    left_dark[:, 25:] = 255
    Image.fromarray(left_dark).save(tmp_path / "odd.png")
    pixels = decode_image(tmp_path / "odd.png", 20)
    # Stretched, not cropped: the edge stays in the middle, both halves survive.
    assert pixels[:, :9].max() == 0 and pixels[:, 11:].min() == 255


def test_load_images_drops_unreadable_and_warns(tmp_path: Path) -> None:
    good = [write_image(tmp_path / f"test_{i}.png", seed=i) for i in range(3)]
    names = write_awkward(tmp_path)
    paths = [*good, *(tmp_path / n for n in names.values())]
    from trainer.data import load_images

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels, kept, skipped = load_images(paths, 12)
    assert pixels.shape == (3, 12, 12)
    assert kept == [str(p) for p in good]
    assert {Path(p).name for p, _ in skipped} == set(names.values())
    warned = [str(w.message) for w in caught if issubclass(w.category, UnreadableImageWarning)]
    assert len(warned) == 3
    assert np.array_equal(pixels[1], decode_image(good[1], 12))
