"""Symbolic links in a dataset: loops and links to nothing are skipped with their reason.

A link that points at itself, a loop of links and a link whose target is gone once ended
``data check`` and ``run --data`` with ``OSError: Too many levels of symbolic links``. A
link to a real file or folder is followed, as any path is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpsearch.cli import main
from tests.hpsearch.study_checks import assert_one_line_error
from tests.trainer._imagefiles import (
    DATABASE,
    make_competition,
    make_database,
    make_folder_per_class,
    write_image,
)
from trainer.config import DataConfig
from trainer.data import load_data
from trainer.layout import discover_layout, list_image_files

LOOP = "symbolic link loop"


def _links(folder: Path, outside: Path) -> dict[str, str]:
    """Every kind of link in ``folder``: name -> the reason it is skipped with."""
    os.symlink("self.png", folder / "self.png")
    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    os.symlink(outside / "gone.png", folder / "dangling.png")
    os.symlink(outside, folder / "outside")  # a folder elsewhere: not entered
    return {
        "self.png": LOOP,
        "loop-a.png": LOOP,
        "loop-b.png": LOOP,
        "dangling.png": f"symbolic link to a missing {outside / 'gone.png'}",
        "outside/": "sub-folder not read",
    }


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    write_image(folder / "far.png", seed=9)
    return folder


@pytest.mark.parametrize("kind", ["folder-per-class", "competition", "radiography-database"])
def test_links_in_a_class_folder_are_skipped_with_their_reason(
    kind: str, tmp_path: Path, outside: Path
) -> None:
    if kind == "folder-per-class":
        root = make_folder_per_class(tmp_path / "data", per_class=2)
        folder, prefix = root / "covid", "covid/"
    elif kind == "competition":
        root = make_competition(tmp_path / "data", per_class=2, tests=2)
        folder, prefix = root / "test", "test/"
    else:
        root = make_database(tmp_path / "data", per_class=2)
        folder, prefix = root / DATABASE[0] / "images", f"{DATABASE[0]}/images/"
    os.symlink(outside / "far.png", folder / "linked.png")  # a file elsewhere: followed
    expected = {prefix + name: why for name, why in _links(folder, outside).items()}
    layout = discover_layout(root)
    skipped = dict(layout.skipped)
    for path, why in expected.items():
        assert skipped.get(path) == why, (path, layout.skipped)
    listed = [p for p, _ in layout.items] + layout.test_items
    assert prefix + "linked.png" in listed
    bad = tuple(prefix + name for name in ("self", "loop", "dangling"))
    assert not any(p.startswith(bad) for p in listed)


def test_link_loops_among_the_class_folders_are_skipped(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path / "data", per_class=2)
    os.symlink("stray", root / "stray")  # beside the class folders
    os.symlink(root / "covid" / "nothing", root / "empty-link")
    layout = discover_layout(root)
    skipped = dict(layout.skipped)
    assert skipped["stray"] == LOOP
    assert skipped["empty-link"].startswith("symbolic link to a missing ")
    assert len(layout.items) == 8


def test_a_class_folder_linked_from_elsewhere_is_read(tmp_path: Path) -> None:
    root = make_folder_per_class(tmp_path / "data", per_class=2)
    (root / "normal").rename(tmp_path / "normal-elsewhere")
    os.symlink(tmp_path / "normal-elsewhere", root / "normal")
    layout = discover_layout(root)
    assert sum(1 for _, label in layout.items if label == 3) == 2


@pytest.mark.parametrize("case", ["self", "loop", "dangling"])
def test_a_dataset_root_that_leads_nowhere_is_one_line(case: str, tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    if case == "self":
        os.symlink("data", root)
    elif case == "loop":
        os.symlink("other", root)
        os.symlink("data", tmp_path / "other")
    else:
        os.symlink(tmp_path / "gone", root)
    code = main(["data", "check", str(root)])
    why = LOOP if case != "dangling" else "symbolic link to a missing"
    assert_one_line_error(code, capsys.readouterr().err, str(root), why)


def test_data_check_names_each_link_it_skips(tmp_path: Path, outside: Path, capsys) -> None:
    root = make_folder_per_class(tmp_path / "data", per_class=2)
    expected = _links(root / "covid", outside)
    assert main(["data", "check", str(root)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    for name, why in expected.items():
        assert f"covid/{name}  ({why})" in captured.out


def test_loading_the_data_skips_the_links_as_a_run_does(tmp_path: Path, outside: Path) -> None:
    # hpsearch run --data reads the data through load_data
    root = make_folder_per_class(tmp_path / "data", per_class=6, size=20)
    _links(root / "covid", outside)
    config = DataConfig(root=root, image_size=16, cache_dir=tmp_path / "cache", workers=1)
    data = load_data(config, "cpu", with_test=False)
    assert data.train_y.numel() + data.val_y.numel() == 24


def test_predict_lists_links_among_the_images_as_not_read(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "test"
    write_image(folder / "test_0.png")
    expected = _links(folder, outside)
    images, skipped = list_image_files(folder)
    assert images == ["test_0.png"]
    assert dict(skipped) == expected
