"""optuna-dashboard served on the study storage: studies, trials and their artifacts over HTTP."""

from __future__ import annotations

import argparse
import json
import threading
import urllib.request
from pathlib import Path

import optuna
import pytest

import hpsearch.dashboard
from hpsearch.commands import dashboard as dashboard_command
from hpsearch.dashboard import make_server
from hpsearch.storage import open_storage
from hpsearch.storage.artifacts import attach_file, open_artifact_store
from trainer.errors import UserError


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read()


def _demo_study(url: str, artifact_dir: Path, tmp_path: Path) -> tuple[int, bytes, bytes]:
    """Trial 0 complete with a checkpoint artifact and a report attached after it ended,
    trial 1 pruned; the trial id, the checkpoint's bytes and the report's."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="demo", storage=open_storage(url), direction="maximize")
    store = open_artifact_store(artifact_dir)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"synthetic checkpoint \x00\x01")
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    for epoch, value in enumerate((0.6, 0.7, 0.8), start=1):
        trial.report(value, epoch)
    attach_file(study, trial, checkpoint, store)
    study.tell(trial, 0.8)
    report = tmp_path / "report.html"
    report.write_bytes(b"<html>synthetic report</html>")
    attach_file(study, study.trials[0], report, store)  # finished: a study artifact
    pruned = study.ask()
    pruned.suggest_float("lr", 1e-4, 1e-1, log=True)
    pruned.report(0.3, 1)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    return trial._trial_id, checkpoint.read_bytes(), report.read_bytes()


def test_dashboard_serves_study_trials_and_artifact(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    artifact_dir = tmp_path / "artifacts"
    trial_id, content, report = _demo_study(url, artifact_dir, tmp_path)

    server = make_server(url, "127.0.0.1", 0, artifact_dir)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = server.url.removesuffix("/dashboard/")
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0

        studies = json.loads(_get(f"{base}/api/studies"))["study_summaries"]
        (summary,) = [s for s in studies if s["study_name"] == "demo"]
        study_id = summary["study_id"]

        detail = json.loads(_get(f"{base}/api/studies/{study_id}"))
        states = [t["state"] for t in detail["trials"]]
        assert states == ["Complete", "Pruned"]
        (trial,) = [t for t in detail["trials"] if t["trial_id"] == trial_id]
        (artifact,) = trial["artifacts"]
        assert artifact["filename"] == "best.pt"
        assert trial["user_attrs"] == [
            {"key": "artifact:best.pt", "value": artifact["artifact_id"]}
        ]

        served = _get(f"{base}/artifacts/{study_id}/{trial_id}/{artifact['artifact_id']}")
        assert served == content
        # a file attached after the trial ended is the study's, served under the study
        (later,) = detail["artifacts"]
        assert later["filename"] == "report.html"
        assert _get(f"{base}/artifacts/{study_id}/{later['artifact_id']}") == report
        assert b"<html" in _get(server.url).lower()  # the single-page app itself
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_make_server_reports_a_busy_port(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    open_storage(url)  # the dashboard opens an existing storage only
    first = make_server(url, "127.0.0.1", 0, None)
    try:
        with pytest.raises(UserError, match=f"127.0.0.1:{first.port}"):
            make_server(url, "127.0.0.1", first.port, None)
    finally:
        first.close()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="hpsearch dashboard")
    dashboard_command.configure(parser)
    return parser.parse_args(argv)


def test_dashboard_flags_default_to_this_machine_only() -> None:
    args = _parse([])
    assert (args.host, args.port, args.storage, args.workdir) == ("127.0.0.1", 8080, None, None)
    assert _parse(["--host", "0.0.0.0", "--port", "0"]).port == 0


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_dashboard_rejects_bad_port(port: str) -> None:
    with pytest.raises(SystemExit):
        _parse(["--port", port])


class _FakeServer:
    url = "http://127.0.0.1:8080/dashboard/"

    def serve_forever(self) -> None:
        raise KeyboardInterrupt  # Ctrl-C right away

    def close(self) -> None:
        pass


def test_dashboard_prints_url_first_and_no_password(tmp_path, monkeypatch, capsys) -> None:
    seen = {}

    def fake_make_server(storage_url, host, port, artifact_dir):
        seen.update(storage_url=storage_url, host=host, port=port, artifact_dir=artifact_dir)
        return _FakeServer()

    monkeypatch.setattr(hpsearch.dashboard, "make_server", fake_make_server)
    storage = "postgresql://hp:s3cret@127.0.0.1:5432/studies"
    args = _parse(["--storage", storage, "--workdir", str(tmp_path / "work")])
    assert dashboard_command.run(args) == 0

    out = capsys.readouterr().out
    assert out.splitlines()[0] == _FakeServer.url
    assert "s3cret" not in out and "hp:***@127.0.0.1" in out
    assert seen["storage_url"] == storage  # the real password still reaches the database
    assert seen["host"] == "127.0.0.1"
    assert Path(seen["artifact_dir"]) == (tmp_path / "work" / "artifacts").absolute()


def test_unreachable_storage_error_hides_password(tmp_path: Path) -> None:
    # nothing listens on port 1 of this machine: the connection is refused at once
    args = _parse(["--storage", "postgresql://hp:s3cret@127.0.0.1:1/studies", "--port", "0"])
    with pytest.raises(UserError) as err:
        dashboard_command.run(args)
    assert "s3cret" not in str(err.value) and "***" in str(err.value)


def test_missing_sqlite_file_is_a_user_error(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    args = _parse(["--storage", f"sqlite:///{missing}"])
    with pytest.raises(UserError, match=r"none\.db"):
        dashboard_command.run(args)
    assert not missing.exists()
