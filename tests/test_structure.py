"""The shape of the code holds: no import cycle, layers point down, short functions.

The rules and their reasons are in ``.ci/structure.py`` and ARCHITECTURE.md; this runs the
same script CI runs, so a change that breaks a rule fails the suite too.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "structure.py"


def _structure():
    spec = importlib.util.spec_from_file_location("structure", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_structure_script_passes() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 cycle(s)" in done.stdout


def test_the_script_finds_a_cycle_and_a_broken_layer() -> None:
    # The checks themselves can fail: a made-up graph with a cycle and an upward import.
    structure = _structure()
    graph = {"hpsearch.run.a": {"hpsearch.run.b"}, "hpsearch.run.b": {"hpsearch.run.a"}}
    assert structure.cycles(graph) == [["hpsearch.run.a", "hpsearch.run.b"]]
    assert "above it" in structure.rule_broken("hpsearch.storage.x", "hpsearch.run.worker")
    assert "trials alone" in structure.rule_broken("reports.study", "hpsearch.study.spec")
    assert structure.rule_broken("reports.study", "hpsearch.trials.record") is None
    assert "report-making" in structure.rule_broken("hpsearch.run.worker", "reports.final")
