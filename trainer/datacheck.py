"""What a dataset folder holds, as the loader sees it: for ``hpsearch data check``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainer.cache import decode_image, unreadable_reason
from trainer.classes import CLASS_NAMES
from trainer.layout import Layout, discover_layout

_KIND_TITLES = {
    "competition": "competition layout (train/<class>/, test/)",
    "radiography-database": "COVID-19 Radiography Database layout (<Class>/images/)",
    "folder-per-class": "folder-per-class layout (<class>/)",
}


def check_dataset(
    path: str | Path,
    decode: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Layout, images per class, test images, skipped files and the synthetic flag of ``path``.

    Empty (0-byte) image files are always listed as unreadable (a ``stat`` each). With
    ``decode`` every image is also decoded (slow: one process, the full dataset) and every
    unreadable one is listed; ``on_progress(done, total)`` is called as images are
    decoded. Each class's ``usable`` count leaves out its unreadable images (only the
    empty ones without ``decode``). The result is JSON-serialisable. A folder that is no
    dataset raises :class:`~trainer.errors.UserError`.
    """
    layout = discover_layout(path)
    bad = _unreadable(layout, on_progress) if decode else _empty_files(layout)
    bad_paths = {b["path"] for b in bad}
    counts = [0] * len(CLASS_NAMES)
    usable = [0] * len(CLASS_NAMES)
    for rel, label in layout.items:
        counts[label] += 1
        usable[label] += rel not in bad_paths
    return {
        "path": str(path),
        "root": str(layout.root),
        "layout": layout.kind,
        "synthetic": layout.synthetic,
        "classes": [
            {
                "index": index,
                "name": name,
                "folder": layout.class_folders.get(index, ""),
                "images": counts[index],
                "usable": usable[index],
            }
            for index, name in enumerate(CLASS_NAMES)
        ],
        "images": len(layout.items),
        "usable_images": sum(usable),
        "test_images": len(layout.test_items),
        "skipped": [{"path": p, "reason": r} for p, r in layout.skipped],
        "decoded": decode,
        "unreadable": bad,
    }


def _all_images(layout: Layout) -> list[str]:
    return [p for p, _ in layout.items] + layout.test_items


def _empty_files(layout: Layout) -> list[dict[str, str]]:
    """The 0-byte labelled and test images: unreadable, and known without decoding."""
    bad = []
    for rel in _all_images(layout):
        try:
            empty = (layout.root / rel).stat().st_size == 0
        except OSError as error:
            bad.append({"path": rel, "reason": f"cannot read file ({error.strerror})"})
            continue
        if empty:
            bad.append({"path": rel, "reason": "empty file"})
    return bad


def _unreadable(
    layout: Layout, on_progress: Callable[[int, int], None] | None
) -> list[dict[str, str]]:
    """Decode every labelled and test image; (path, reason) of those that fail."""
    rel_paths = _all_images(layout)
    bad = []
    if on_progress is not None:
        on_progress(0, len(rel_paths))
    for done, rel in enumerate(rel_paths, start=1):
        try:
            decode_image(layout.root / rel, 8)
        except Exception as error:  # Pillow raises many types on malformed files
            bad.append({"path": rel, "reason": unreadable_reason(layout.root / rel, error)})
        if on_progress is not None:
            on_progress(done, len(rel_paths))
    return bad


def format_check(report: dict[str, Any]) -> str:
    """Plain-text rendering of a :func:`check_dataset` report."""
    lines = [f"dataset  {report['root']}", f"layout   {_KIND_TITLES[report['layout']]}"]
    if report["synthetic"]:
        lines.append("SYNTHETIC demo data (generated images, not real radiographs)")
    width = max(len(c["name"]) for c in report["classes"])
    lines.append(f"{'classes':<{width + 5}}  {'images':>7}  {'usable':>7}")
    for c in report["classes"]:
        lines.append(
            f"  {c['index']}  {c['name']:<{width}}  {c['images']:>7}  {c['usable']:>7}  "
            f"{c['folder']}/"
        )
    lines.append(f"     {'total':<{width}}  {report['images']:>7}  {report['usable_images']:>7}")
    if report["layout"] == "competition":
        lines.append(f"test images (unlabelled): {report['test_images']}")
    skipped = report["skipped"]
    lines.append(f"skipped files: {len(skipped)}")
    lines += [f"  {s['path']}  ({s['reason']})" for s in skipped]
    bad = report["unreadable"]
    if report["decoded"]:
        lines.append(f"unreadable images: {len(bad)}")
    else:
        lines.append(f"empty image files: {len(bad)}")
    lines += [f"  {s['path']}  ({s['reason']})" for s in bad]
    if not report["decoded"]:
        lines.append("images not decoded: --decode finds the other unreadable files")
    return "\n".join(lines)
