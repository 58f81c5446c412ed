"""``--study`` may be left out of best, report and status when the storage holds one study."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from hpsearch.cli import main
from hpsearch.study.stored import resolve_study_name
from trainer.errors import UserError


def _storage(tmp_path: Path, *names: str) -> str:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = optuna.storages.RDBStorage(url)
    for name in names:
        optuna.create_study(study_name=name, storage=storage)
    return url


def test_resolve_study_name(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(_storage(tmp_path, "grid"))
    assert resolve_study_name(storage, None) == "grid"  # the only one
    assert resolve_study_name(storage, "other") == "other"  # a given name is kept
    optuna.create_study(study_name="tpe", storage=storage)
    with pytest.raises(UserError, match=r"2 studies in this storage \(grid, tpe\): choose one"):
        resolve_study_name(storage, None)


def test_resolve_study_name_in_an_empty_storage(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(_storage(tmp_path))
    with pytest.raises(UserError, match="no study in this storage: run one first"):
        resolve_study_name(storage, None)


def test_best_uses_the_only_study(tmp_path: Path, monkeypatch, capsys) -> None:
    url = _storage(tmp_path, "grid")
    monkeypatch.setattr(
        "hpsearch.export.best_summary",
        lambda study, workdir, chosen=None: {"study": study.study_name},
    )
    assert main(["best", "--storage", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == "grid"


@pytest.mark.parametrize("command", [["best"], ["report", "--out", "out"]])
def test_best_and_report_ask_which_of_several(tmp_path: Path, command, capsys) -> None:
    url = _storage(tmp_path, "grid", "tpe")
    assert main([*command, "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "choose one with --study NAME" in err and "grid, tpe" in err
