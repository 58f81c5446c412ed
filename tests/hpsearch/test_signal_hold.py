"""Holding a stop signal back over a step that must not be cut in two."""

from __future__ import annotations

import signal

import pytest

from hpsearch.run.signals import StopSignalHold

pytestmark = pytest.mark.usefixtures("terminal_ctrl_c")


def test_a_held_ctrl_c_lands_at_release() -> None:
    hold = StopSignalHold()
    hold.hold()
    signal.raise_signal(signal.SIGINT)  # noted, nothing raised yet
    with pytest.raises(KeyboardInterrupt):
        hold.release()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_release_without_a_signal_only_puts_the_handlers_back() -> None:
    hold = StopSignalHold()
    hold.hold()
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    hold.release()
    hold.release()  # twice is harmless
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_signal_is_not_kept_waiting() -> None:
    hold = StopSignalHold()
    hold.hold()
    signal.raise_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)  # twice Ctrl-C means now
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_goes_to_its_own_handler() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        hold = StopSignalHold()
        hold.hold()
        signal.raise_signal(signal.SIGTERM)
        assert seen == []
        hold.release()
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
