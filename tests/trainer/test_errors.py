"""first_line: one line of an error message for a one-line UserError."""

from __future__ import annotations

import pytest

from trainer.errors import first_line


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ValueError("bad value"), "bad value"),
        (RuntimeError("\n  Error(s) in loading:\n\tsize mismatch\n"), "Error(s) in loading:"),
        (OSError(), "OSError"),  # no message: the type names the problem
        (KeyError("  \n "), "'  \\n '"),  # str() of a KeyError is its repr
        (RuntimeError(" \n "), "RuntimeError"),
    ],
)
def test_first_line(error: BaseException, line: str) -> None:
    assert first_line(error) == line
