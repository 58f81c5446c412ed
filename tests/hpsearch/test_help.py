"""Every help text ends with examples; ``--study`` says what it names in each command."""

from __future__ import annotations

import pytest

from hpsearch.cli import COMMANDS, build_parser


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def _examples(text: str) -> list[str]:
    """The lines after the last ``examples:`` heading, which must end the text."""
    head, _, tail = text.rstrip().rpartition("\nexamples:\n")
    assert head, "no examples section"
    return tail.splitlines()


@pytest.mark.parametrize(
    "argv", [(), *[(name,) for name in COMMANDS], ("data", "demo"), ("data", "check")]
)
def test_help_ends_with_two_or_three_examples(argv: tuple[str, ...], capsys) -> None:
    examples = _examples(_help(capsys, *argv))
    assert 2 <= len(examples) <= 3
    prefix = "  hpsearch " + (" ".join(argv[:1]) + " " if argv else "")
    assert all(line.startswith(prefix) for line in examples), examples


def test_study_is_a_file_for_run_and_a_stored_name_elsewhere(capsys) -> None:
    run = " ".join(_help(capsys, "run").split())
    assert "--study FILE" in run and "a path to a .toml" in run
    for command in ("best", "report", "status"):
        text = " ".join(_help(capsys, command).split())
        assert "--study NAME" in text and "a study stored in the storage" in text
    for command in ("best", "report"):
        text = " ".join(_help(capsys, command).split())
        assert "may be left out when the storage holds one study" in text
