"""Trial files in Optuna's artifact store, named in user attrs; the storage stays plain Optuna."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta

from hpsearch.paths import Workdir
from hpsearch.storage import open_storage
from hpsearch.storage.artifacts import attach_file, open_artifact_store
from trainer.errors import UserError


@pytest.fixture
def study(tmp_path: Path) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    return optuna.create_study(study_name="demo", storage=open_storage(url), direction="maximize")


def _file(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_open_artifact_store_on_workdir_creates_its_folder(tmp_path: Path) -> None:
    workdir = Workdir(tmp_path / "work")
    store = open_artifact_store(workdir)
    assert workdir.artifacts.is_dir()
    store.write("abc", io.BytesIO(b"x"))
    assert (workdir.artifacts / "abc").read_bytes() == b"x"


def test_open_artifact_store_rejects_urls_for_now() -> None:
    with pytest.raises(UserError, match="s3://bucket/x"):
        open_artifact_store("s3://bucket/x")


def test_attach_to_running_then_finished_trial(study: optuna.Study, tmp_path: Path) -> None:
    store = open_artifact_store(tmp_path / "artifacts")
    trial = study.ask()
    best = _file(tmp_path, "best.pt", b"checkpoint bytes")
    checkpoint_id = attach_file(study, trial, best, store)
    study.tell(trial, 0.9)

    frozen = study.trials[0]
    # the running trial got a real trial artifact, named in its user attrs
    assert frozen.user_attrs["artifact:best.pt"] == checkpoint_id
    metas = get_all_artifact_meta(frozen, storage=study._storage)
    assert [(m.artifact_id, m.filename) for m in metas] == [(checkpoint_id, "best.pt")]

    # Optuna refuses to change a finished trial: later files go to the study, keyed by trial
    report = _file(tmp_path, "report.html", b"<html>report</html>")
    report_id = attach_file(study, frozen._trial_id, report, store)
    assert study.user_attrs["artifact:trial-0:report.html"] == report_id
    (meta,) = get_all_artifact_meta(study)
    assert (meta.artifact_id, meta.filename, meta.mimetype) == (
        report_id,
        "report.html",
        "text/html",
    )
    # the trial's own artifacts are unchanged
    assert len(get_all_artifact_meta(frozen, storage=study._storage)) == 1
    with store.open_reader(report_id) as f:
        assert f.read() == b"<html>report</html>"


def test_attach_rejects_missing_file_and_foreign_trial(study, tmp_path) -> None:
    store = open_artifact_store(tmp_path / "artifacts")
    trial = study.ask()
    with pytest.raises(FileNotFoundError, match=r"nope\.pt"):
        attach_file(study, trial, tmp_path / "nope.pt", store)

    other = optuna.create_study(study_name="other", storage=study._storage)
    other.ask()
    foreign = other.ask()  # number 1: study "demo" has no trial 1
    with pytest.raises(ValueError, match="not a trial of study 'demo'"):
        attach_file(study, foreign._trial_id, _file(tmp_path, "a.pt", b"a"), store)
    with pytest.raises(TypeError, match="str"):
        attach_file(study, "0", _file(tmp_path, "b.pt", b"b"), store)


@pytest.mark.slow
def test_optuna_cli_reads_the_storage(study: optuna.Study, tmp_path: Path) -> None:
    store = open_artifact_store(tmp_path / "artifacts")
    for value in (0.7, 0.9):
        trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
        attach_file(study, trial, _file(tmp_path, "best.pt", str(value).encode()), store)
        study.tell(trial, value)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    # what the `optuna` console script runs, on this interpreter
    optuna_cli = [sys.executable, "-c", "import sys; from optuna.cli import main; sys.exit(main())"]
    out = subprocess.run(
        [*optuna_cli, "best-trial", "--study-name", "demo", "--storage", url, "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    best = json.loads(out)
    assert best["number"] == 1 and best["value"] == pytest.approx(0.9)
    assert best["user_attrs"]["artifact:best.pt"] == study.trials[1].user_attrs["artifact:best.pt"]
