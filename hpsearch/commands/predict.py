"""``hpsearch predict``: a submission CSV for a folder of images, from an exported model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

#: Shown at the end of ``hpsearch predict --help``.
EXAMPLES = """\
examples:
  hpsearch predict --model final/ --images ~/data/xray-data/test --out submission.csv
  hpsearch predict --model final/ --images scans/ --out scans.csv --proba
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, metavar="DIR", help="folder written by hpsearch best --export"
    )
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of images")
    parser.add_argument("--out", required=True, metavar="CSV", help="submission file to write")
    parser.add_argument(
        "--proba", action="store_true", help="add the four class probabilities as columns"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")


def run(args: argparse.Namespace) -> int:
    from hpsearch.export.submission import predict_folder, write_submission
    from trainer.errors import UserError

    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {str(out)!r} is a folder: give the CSV file to write")
    if os.path.lexists(out) and not out.exists():
        raise UserError(f"--out {str(out)!r} is a symbolic link that leads nowhere")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"--out {str(out)!r} is under {str(out.parent)!r}, which is a file")
    if not out.parent.is_dir():
        raise UserError(f"folder of --out {str(out.parent)!r} does not exist")
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise UserError(f"folder of --out {str(out.parent)!r} cannot be written to")
    rows, unreadable, ignored = predict_folder(
        Path(args.model), Path(args.images), device=args.device, batch_size=args.batch_size
    )
    for path, reason in unreadable:
        print(f"warning: unreadable image {path}: {reason}", file=sys.stderr)
    if unreadable:
        print(
            f"warning: {len(unreadable)} unreadable image(s) left out of the submission",
            file=sys.stderr,
        )
    _note_ignored(Path(args.images), [name for name, _why in ignored])
    write_submission(rows, out, proba=args.proba)
    print(f"wrote {args.out}: {len(rows)} image(s)")
    return 0


def _note_ignored(images: Path, names: list[str]) -> None:
    """One note for the files that are not images, one for the sub-folders (not searched)."""
    folders = [n for n in names if (images / n).is_dir()]
    files = len(names) - len(folders)
    if files:
        print(f"note: {files} non-image file(s) in {images} ignored", file=sys.stderr)
    if folders:
        shown = ", ".join(sorted(folders)[:5]) + (", ..." if len(folders) > 5 else "")
        print(
            f"note: {len(folders)} sub-folder(s) of {images} not searched ({shown}); "
            "only the images directly in it are predicted",
            file=sys.stderr,
        )
