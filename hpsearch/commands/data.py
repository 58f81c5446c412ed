"""``hpsearch data demo`` (synthetic dataset) and ``hpsearch data check`` (what a folder holds)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

#: Shown at the end of ``hpsearch data --help``.
EXAMPLES = """\
examples:
  hpsearch data demo --out demo-data
  hpsearch data check ~/data/xray-data
  hpsearch data check ~/data/xray-data --decode --json
"""


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    demo = sub.add_parser(
        "demo",
        help="write the SYNTHETIC demo dataset (public database layout)",
        description="Write synthetic chest radiographs in the COVID-19 Radiography "
        "Database layout, four classes in its proportions. The images are synthetic.",
        epilog="examples:\n  hpsearch data demo --out demo-data\n"
        "  hpsearch data demo --out small --n 400 --size 64 --seed 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--out", required=True, help="folder to write (new, or a previous demo)")
    demo.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    demo.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    demo.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    demo.add_argument("--workers", type=int, help="processes (default: all cores)")
    check = sub.add_parser(
        "check",
        help="layout, images per class, skipped files",
        epilog="examples:\n  hpsearch data check ~/data/xray-data\n"
        "  hpsearch data check ~/data/xray-data --decode --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("path", help="dataset folder")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.add_argument(
        "--decode", action="store_true", help="also decode every image to find unreadable ones"
    )


def run(args: argparse.Namespace) -> int:
    if args.data_command == "demo":
        return _demo(args)
    return _check(args)


def _demo(args: argparse.Namespace) -> int:
    from hpsearch.run.taskbar import progress_bar
    from trainer.demo import check_demo_arguments, write_demo_dataset

    # every argument, before a progress line shows or a folder is made
    check_demo_arguments(args.out, args.n, args.size, args.seed, args.workers, as_flags=True)
    with progress_bar("synthetic demo images") as on_progress:
        result = write_demo_dataset(
            Path(args.out),
            n=args.n,
            size=args.size,
            seed=args.seed,
            workers=args.workers,
            on_progress=on_progress,
        )
    counts = ", ".join(f"{k} {v}" for k, v in result["counts"].items())
    print(
        f"wrote {args.n} SYNTHETIC images ({args.size} px, seed {args.seed}) to {args.out} "
        f"in {result['seconds']:.1f} s: {counts}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from hpsearch.run.taskbar import progress_bar
    from trainer.datacheck import check_dataset, format_check

    with progress_bar("decoding images", show=not args.json) as on_progress:
        report = check_dataset(args.path, decode=args.decode, on_progress=on_progress)
    print(json.dumps(report, indent=2) if args.json else format_check(report))
    return 0
