"""``hpsearch best`` and ``hpsearch report`` through the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from hpsearch.cli import main
from reports.png import find_browser
from tests.reports.factory import Search, build_search, data_attrs, make_study

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> Search:
    torch.set_num_threads(1)
    return build_search(tmp_path_factory.mktemp("search"))


def base(search: Search) -> list[str]:
    return ["--study", "demo", "--storage", search.storage_url, "--workdir", str(search.workdir)]


def test_best_json(search: Search, capsys) -> None:
    assert main(["best", *base(search), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    best = search.study.best_trial
    assert out["trial"] == best.number
    assert out["params"] == best.params
    assert out["validation_metrics"]["val_accuracy"] == best.value
    assert out["checkpoint"] == str(search.checkpoint)


def test_best_text(search: Search, capsys) -> None:
    assert main(["best", *base(search)]) == 0
    out = capsys.readouterr().out
    assert f"best trial {search.study.best_trial.number}" in out
    assert "SYNTHETIC demo data" in out.splitlines()[0]
    assert str(search.checkpoint) in out


#: Runs one command in a fresh interpreter and prints which heavy packages it imported.
IMPORTS_OF = """
import sys
from hpsearch.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "sklearn") if m in sys.modules)
print("IMPORTED", ",".join(heavy), code)
"""


@pytest.mark.parametrize("command", [["best"], ["best", "--json"], ["status"]])
def test_reading_commands_start_without_torch_and_sklearn(search: Search, command) -> None:
    # best and status only read the study: torch (1-2 s to import) and scikit-learn
    # (most of a second) are for training, exporting and the final report.
    argv = [*command, *base(search)] if command[0] == "best" else [*command, *base(search)[:4]]
    proc = subprocess.run(
        [sys.executable, "-c", IMPORTS_OF, *argv], capture_output=True, text=True, timeout=300
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith("IMPORTED")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert line[-1] == "IMPORTED  0", line[-1]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--retrain"], "--retrain needs --export"),
        (["--study", "nope"], "no study named 'nope'"),
    ],
)
def test_best_user_errors(search: Search, argv, message, capsys) -> None:
    assert main(["best", *base(search), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_export_without_browser_skips_pngs_in_one_line(search, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "missing-chromium"))
    out = tmp_path / "final"
    assert main(["best", *base(search), "--export", str(out), "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    png_lines = [line for line in captured.err.splitlines() if "PNG" in line]
    assert len(png_lines) == 1 and "apt-get install chromium" in png_lines[0]
    assert (out / "report.html").is_file() and not list(out.glob("*.png"))
    assert "test split" in captured.out


@pytest.mark.slow
def test_export_with_browser_writes_pngs(search, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    if find_browser()[0] is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    out = tmp_path / "final"
    assert main(["best", *base(search), "--export", str(out), "--device", "cpu"]) == 0
    pngs = {p.name for p in out.glob("*.png")}
    assert {"confusion_counts.png", "confusion_normalized.png", "roc.png"} <= pngs
    assert "study_optimization_history.png" in pngs and "study_intermediate_values.png" in pngs
    assert "PNG" not in capsys.readouterr().err


def test_report_escapes_study_name_and_runs_on_partial_study(search, tmp_path, monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "missing-chromium"))
    make_study(
        search.storage_url,
        EVIL,
        data_attrs(search.data_root, 0.25),
        search.workdir,
        None,
        {},
        {"val_accuracy": 0.5},
    )
    out = tmp_path / "report"
    assert (
        main(["report", "--study", EVIL, "--out", str(out), "--storage", search.storage_url]) == 0
    )
    page = (out / "report.html").read_text()
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Final model" not in page  # the study part alone
    assert (out / "trials.csv").read_text().count("\n") == 6  # header + 5 trials
