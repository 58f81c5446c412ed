"""Find the labelled images of a dataset folder, whichever of three layouts it uses.

* competition: ``ROOT/train/<class>/*.png`` and optionally ``ROOT/test/*.png`` (unlabelled);
* radiography-database: ``ROOT/<Class>/images/*.png`` (the public COVID-19 Radiography
  Database; ``masks/`` and the ``*.metadata.xlsx`` sheets are ignored);
* folder-per-class: ``ROOT/<class>/*.png``.

A folder holding exactly one sub-folder (``xray-data/``, ``COVID-19_Radiography_Dataset/``)
is looked into once. Class indices always come from :func:`trainer.classes.class_index`,
never from the order of the folders.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from trainer.classes import CLASS_NAMES, class_index
from trainer.errors import UserError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
SYNTHETIC_MARKER = "SYNTHETIC.txt"
"""A file of this name in the dataset root marks generated (synthetic) data."""

_OS_DEBRIS = frozenset({".ds_store", "thumbs.db", "desktop.ini", "__macosx"})

EXPECTED_LAYOUTS = (
    "expected ROOT/train/<class>/*.png (competition, optional ROOT/test/*.png), "
    "ROOT/<Class>/images/*.png (COVID-19 Radiography Database) "
    "or ROOT/<class>/*.png (folder per class)"
)


@dataclass(frozen=True)
class Layout:
    """What :func:`discover_layout` found. Paths are POSIX strings relative to ``root``."""

    kind: str
    """'competition', 'radiography-database' or 'folder-per-class'."""
    root: Path
    items: list[tuple[str, int]]
    """(relative path, class index), in natural order of the path."""
    test_items: list[str] = field(default_factory=list)
    """Unlabelled images of the competition's ``test/`` folder, in natural order."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(relative path, reason) of what was left out: OS debris, non-image files, masks."""
    synthetic: bool = False
    """True when the root holds the ``SYNTHETIC.txt`` marker of the demo generator."""
    class_folders: dict[int, str] = field(default_factory=dict)
    """Class index -> folder it was read from, relative to ``root``."""


def natural_key(text: str) -> tuple[tuple[int | str, ...], str]:
    """Sort key that puts ``test_2`` before ``test_10``; ties broken by the plain string."""
    parts = re.split(r"(\d+)", text)
    return (tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), text)


def debris_reason(name: str) -> str | None:
    """Why a file or folder name is OS or hidden-file debris, or None if it is not."""
    lower = name.lower()
    if lower in _OS_DEBRIS:
        return "operating-system metadata"
    if name.startswith("._"):
        return "macOS resource fork"
    if name.startswith("."):
        return "hidden file or folder"
    return None


def link_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a symbolic link leads to nothing that can be read, or None (not a link, or a
    link to something that exists). A link to a file or a folder elsewhere is followed as
    any path is; one that points at itself, a loop of links and a link whose target is
    gone are skipped with this reason."""
    if not os.path.islink(path):
        return None
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop"
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"symbolic link to a missing {_link_target(path)}"
        return f"symbolic link not followed: {error.strerror}"
    return None


def _link_target(path: str | os.PathLike[str]) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "target"


def is_image_name(name: str) -> bool:
    """True for the image extensions read here (png, jpg, jpeg, bmp, tif, tiff; any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(
    folder: Path, root: Path | None = None
) -> tuple[list[str], list[tuple[str, str]]]:
    """Image files directly inside ``folder``, and what was skipped there and why.

    Paths are POSIX strings relative to ``root`` (``folder`` itself when None), in natural
    order. Sub-folders are not entered; they are reported as skipped.
    """
    prefix = "" if root is None else folder.relative_to(root).as_posix() + "/"
    with os.scandir(folder) as scan:
        entries = sorted(scan, key=lambda e: natural_key(e.name))
    images: list[str] = []
    skipped: list[tuple[str, str]] = []
    for entry in entries:
        rel = prefix + entry.name
        reason = debris_reason(entry.name) or link_problem(entry.path)
        if reason is not None:
            skipped.append((rel, reason))
        elif _entry_is_dir(entry):
            skipped.append((rel + "/", "sub-folder not read"))
        elif not is_image_name(entry.name):
            skipped.append((rel, "not an image file (extension)"))
        else:
            images.append(rel)
    return images, skipped


def _entry_is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # gone or unreadable since the listing: not a folder to report as one
        return False


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and debris_reason(p.name) is None),
        key=lambda p: natural_key(p.name),
    )


def _guess_kind(folder: Path) -> str | None:
    if (folder / "train").is_dir():
        return "competition"
    dirs = _visible_dirs(folder)
    if any((d / "images").is_dir() for d in dirs):
        return "radiography-database"
    if any(class_index(d.name) is not None for d in dirs):
        return "folder-per-class"
    if any(is_image_name(f.name) for d in dirs for f in d.iterdir() if f.is_file()):
        return "folder-per-class"
    return None


def _class_folders(parent: Path, root: Path) -> dict[int, Path]:
    """Map each class folder under ``parent`` to its index; unknown or doubled folders fail."""
    found: dict[int, Path] = {}
    for d in _visible_dirs(parent):
        index = class_index(d.name)
        if index is None:
            raise UserError(
                f"class folder {d.relative_to(root).as_posix()!r} in {root} maps to no class; "
                f"expected one of {', '.join(CLASS_NAMES)} (any spelling such as COVID, "
                "Lung_Opacity, Viral Pneumonia, Normal)"
            )
        if index in found:
            raise UserError(
                f"folders {found[index].name!r} and {d.name!r} in {parent} are both class "
                f"{CLASS_NAMES[index]!r}; keep one"
            )
        found[index] = d
    return found


def _non_dir_skips(folder: Path, root: Path, allowed: set[str]) -> list[tuple[str, str]]:
    skipped = []
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name in allowed or (entry.is_dir() and debris_reason(entry.name) is None):
            continue
        rel = entry.relative_to(root).as_posix()
        reason = debris_reason(entry.name) or link_problem(entry)
        if reason is None:
            if entry.name.lower().endswith(".xlsx"):
                reason = "metadata spreadsheet"
            else:
                reason = "not part of the layout"
        skipped.append((rel + ("/" if entry.is_dir() else ""), reason))
    return skipped


def discover_layout(path: str | Path) -> Layout:
    """Recognise the dataset layout at ``path`` and list its labelled images.

    Raises :class:`UserError` (one line) when the path does not exist, matches no layout,
    holds a class folder that maps to no class, or lacks a class.
    """
    given = Path(path).expanduser()
    root, kind = _find_root(given)
    found = _Found(skipped=_non_dir_skips(root, root, {SYNTHETIC_MARKER}))
    if kind == "competition":
        _read_competition(root, found)
    else:
        _read_class_folders(root, kind, found)
    _check_every_class(found.items, root, kind)
    found.items.sort(key=lambda item: natural_key(item[0]))
    synthetic = (root / SYNTHETIC_MARKER).is_file() or (given / SYNTHETIC_MARKER).is_file()
    return Layout(
        kind=kind,
        root=root,
        items=found.items,
        test_items=found.test_items,
        skipped=sorted(found.skipped, key=lambda s: natural_key(s[0])),
        synthetic=synthetic,
        class_folders=found.folders,
    )


@dataclass
class _Found:
    """What the layout readers collect, before it is sorted into a :class:`Layout`."""

    skipped: list[tuple[str, str]]
    items: list[tuple[str, int]] = field(default_factory=list)
    test_items: list[str] = field(default_factory=list)
    folders: dict[int, str] = field(default_factory=dict)

    def add_class(self, index: int, folder: Path, root: Path) -> None:
        images, skips = list_image_files(folder, root)
        self.items += [(p, index) for p in images]
        self.skipped += skips
        self.folders[index] = folder.relative_to(root).as_posix()


def check_dataset_folder(given: Path) -> None:
    """A one-line :class:`UserError` unless ``given`` is a folder (reads nothing in it)."""
    problem = link_problem(given)
    if problem is not None:
        raise UserError(f"dataset folder {given} is a {problem}")
    if not given.exists():
        raise UserError(f"dataset folder {given} does not exist; {EXPECTED_LAYOUTS}")
    if not given.is_dir():
        raise UserError(f"dataset path {given} is not a folder; {EXPECTED_LAYOUTS}")


def _find_root(given: Path) -> tuple[Path, str]:
    """The folder that holds the layout (``given`` or its only sub-folder) and its kind."""
    check_dataset_folder(given)
    root = given
    kind = _guess_kind(root)
    if kind is None:
        dirs = _visible_dirs(root)
        if len(dirs) == 1:
            root = dirs[0]
            kind = _guess_kind(root)
    if kind is None:
        raise UserError(f"no dataset layout recognised in {given}; {EXPECTED_LAYOUTS}")
    return root, kind


def _read_competition(root: Path, found: _Found) -> None:
    """``train/<class>/`` images and the unlabelled ``test/`` ones."""
    found.skipped += [
        (d.relative_to(root).as_posix() + "/", "not part of the layout")
        for d in _visible_dirs(root)
        if d.name not in ("train", "test")
    ]
    train = root / "train"
    found.skipped += _non_dir_skips(train, root, set())
    for index, folder in sorted(_class_folders(train, root).items()):
        found.add_class(index, folder, root)
    if (root / "test").is_dir():
        found.test_items, skips = list_image_files(root / "test", root)
        found.skipped += skips


def _read_class_folders(root: Path, kind: str, found: _Found) -> None:
    """``<Class>/images/`` (radiography database) or ``<class>/`` (folder per class) images."""
    for index, folder in sorted(_class_folders(root, root).items()):
        if kind == "radiography-database":
            found.skipped += _database_class_skips(folder, root)
            folder = folder / "images"
            if not folder.is_dir():
                continue
        found.add_class(index, folder, root)


def _check_every_class(items: list[tuple[str, int]], root: Path, kind: str) -> None:
    present = {label for _, label in items}
    missing = [name for i, name in enumerate(CLASS_NAMES) if i not in present]
    if missing:
        raise UserError(
            f"no images for class(es) {', '.join(missing)} in {root} ({kind} layout); "
            f"every class needs a folder with images: {', '.join(CLASS_NAMES)}"
        )


def _database_class_skips(folder: Path, root: Path) -> list[tuple[str, str]]:
    """Everything in a database class folder except ``images/``; masks count as one entry."""
    skipped = []
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if entry.name == "images":
            continue
        rel = entry.relative_to(root).as_posix()
        reason = debris_reason(entry.name) or link_problem(entry)
        if entry.is_dir():
            if reason is None and entry.name.lower() == "masks":
                count = sum(1 for _ in entry.iterdir())
                reason = f"lung masks, not training images ({count} files)"
            skipped.append((rel + "/", reason or "sub-folder not read"))
        else:
            skipped.append((rel, reason or "not part of the layout"))
    return skipped
