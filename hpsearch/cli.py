"""The ``hpsearch`` command line: one module per subcommand under ``hpsearch.commands``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hpsearch.run.signals import stop_signals_handled, stop_signals_noted, stop_status
from trainer.errors import UserError

if TYPE_CHECKING:
    from types import ModuleType

    from hpsearch.trainer_api import TrainerAPI

#: Subcommand -> (module under hpsearch.commands, one-line help). Modules are imported
#: only when their command runs, so ``hpsearch status`` never pays for torch or wandb.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run (or resume) a study: launch training trials on the study storage"),
    "confirm": ("confirm", "train the best configurations again with new seeds, and rank them"),
    "status": ("status", "trials by state, best so far, ETA"),
    "best": ("best", "the best trial; --export DIR turns it into the final model and report"),
    "report": ("report", "study report (history, importances, curves) as HTML/PNG"),
    "predict": ("predict", "predict a folder of images with an exported model (submission CSV)"),
    "dashboard": ("dashboard", "serve optuna-dashboard on the study storage"),
    "data": ("data", "demo data generator and dataset checks"),
    "bench": ("bench", "measure training throughput and memory as a trial would"),
}

#: Shown at the end of ``hpsearch --help``.
EXAMPLES = """\
examples:
  hpsearch run --study grid          # a search on synthetic demo data (study file: grid)
  hpsearch status                    # trials, best so far, ETA (stored study: grid)
  hpsearch best --export final/      # the best trial as the final model and its report
"""

#: What the last line says after an interrupted command, where it has more to say.
INTERRUPTED = {
    "run": "; completed trials are saved: run the same command again to resume",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpsearch",
        description="Hyperparameter searches for chest X-ray classifiers (Optuna + torchvision).\n"
        "`hpsearch COMMAND --help` shows a command's options and examples.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        commands = _command_module(module)
        cmd = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=commands.EXAMPLES,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.set_defaults(_module=module)
        commands.configure(cmd)
    return parser


def _command_module(module: str) -> ModuleType:
    return importlib.import_module(f"hpsearch.commands.{module}")


def _version() -> str:
    from hpsearch import __version__

    return f"hpsearch {__version__}"


def main(argv: Sequence[str] | None = None, *, trainer: TrainerAPI | None = None) -> int:
    """Entry point of the console script; returns the exit status.

    ``trainer`` replaces the real trainer's ``load_data`` and ``fit`` (tests pass a fast
    stand-in); None means the real one.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.trainer = trainer
    try:
        with stop_signals_handled():
            status = int(_command_module(args._module).run(args) or 0)
            sys.stdout.flush()  # a closed pipe shows here, not at exit as a traceback
            return status
    except UserError as err:
        from hpsearch.storage import redact_text  # a driver's message may echo a secret

        print(f"hpsearch {args.command}: error: {redact_text(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Also reached by a further Ctrl-C while a run stops: the resume line still shows,
        # and yet another Ctrl-C cannot cut it off.
        with stop_signals_noted():
            print(
                f"hpsearch {args.command}: interrupted{INTERRUPTED.get(args.command, '')}",
                file=sys.stderr,
            )
            return stop_status()
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    """The reader of our output went away (``hpsearch status | head -1``): stop quietly,
    as Unix tools do, with the status of a process killed by SIGPIPE."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        # Python flushes stdout again at exit: point it at /dev/null so that flush is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
