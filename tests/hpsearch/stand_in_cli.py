"""``python -m tests.hpsearch.stand_in_cli ARGS``: the real command line with a stand-in trainer.

Subprocess tests run this instead of ``python -m hpsearch.cli``. It passes the trainer
module named by ``$STAND_IN_TRAINER`` (``load_data`` and ``fit``, and ``check_data`` and
``choose_precision`` where it has them) to ``hpsearch.cli.main``,
and gives ``run`` a short heartbeat (``$STAND_IN_HEARTBEAT_S``) so dead workers are
noticed within seconds. Without ``$STAND_IN_TRAINER`` the real trainer runs.

Ctrl-C works here as at a terminal even when the test run itself ignores SIGINT: a shell
ignores it in the jobs it starts in the background without job control (``cmd &`` in a
script), children inherit that, and Python then installs no Ctrl-C handler, so the tests
that press Ctrl-C would find the command deaf to it.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

from hpsearch.cli import main
from hpsearch.trainer_api import TrainerAPI


def stand_in_main(argv: list[str]) -> int:
    name = os.environ.get("STAND_IN_TRAINER")
    trainer = None
    if name:
        module = importlib.import_module(name)
        trainer = TrainerAPI(
            load_data=module.load_data,
            fit=module.fit,
            check_data=getattr(module, "check_data", None),
            choose_precision=getattr(module, "choose_precision", None),
        )
    heartbeat = os.environ.get("STAND_IN_HEARTBEAT_S")
    if heartbeat and argv[:1] == ["run"] and "--heartbeat" not in argv:
        argv = [*argv, "--heartbeat", heartbeat]
    return main(argv, trainer=trainer)


if __name__ == "__main__":
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(stand_in_main(sys.argv[1:]))
