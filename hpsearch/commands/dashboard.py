"""``hpsearch dashboard``: optuna-dashboard on the study storage, with trial artifacts."""

from __future__ import annotations

import argparse

from hpsearch.commands.options import add_artifacts_option
from hpsearch.dashboard import DEFAULT_HOST, DEFAULT_PORT


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected 0-65535") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: expected 0-65535")
    return value


#: Shown at the end of ``hpsearch dashboard --help``.
EXAMPLES = """\
examples:
  hpsearch dashboard                         # http://127.0.0.1:8080 on ./hpsearch.db
  hpsearch dashboard --storage sqlite:///runs/hpsearch.db --port 8081
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="study storage (default: $HPSEARCH_STORAGE, else sqlite:///hpsearch.db)",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="working directory whose artifacts/ folder holds the trial files, unless "
        "--artifacts is given (default: $HPSEARCH_WORKDIR, else ./hpsearch-work)",
    )
    add_artifacts_option(parser)
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; "
        "0.0.0.0 opens it to the network)",
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )


def run(args: argparse.Namespace) -> int:
    from hpsearch.dashboard import serve
    from hpsearch.paths import Workdir
    from hpsearch.storage import resolve_storage_url

    url = resolve_storage_url(args.storage)
    workdir = Workdir.resolve(args.workdir, args.artifacts)
    serve(url, args.host, args.port, workdir.artifacts)
    return 0
