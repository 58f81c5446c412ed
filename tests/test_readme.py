"""The README's two commands are the ones CI and newcomers run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_starts_with_install_run_and_install_test() -> None:
    run, test = _commands()
    # the first command installs and runs the main job with no other flags
    assert run == "python3 -m pip install -e . && hpsearch run --study grid"
    assert "pytest" in test and "pip install" in test


def test_ci_runs_the_readme_test_command_as_written() -> None:
    _, test = _commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci
    assert ci[1:3] and "set -euo pipefail" in ci
