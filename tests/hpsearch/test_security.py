"""Security: no code runs from model files, no password shows, no path escapes, HTML is inert.

Covered elsewhere: the dashboard listens on 127.0.0.1 unless told otherwise and prints no
password (test_dashboard.py::test_dashboard_flags_default_to_this_machine_only and
::test_dashboard_prints_url_first_and_no_password); errors hide the password
(test_dashboard.py::test_unreachable_storage_error_hides_password); wandb run configs carry
redacted URLs (test_tracking.py::test_offline_runs_per_trial_read_back_from_disk); the
study name is escaped in the HTML report (tests/reports/test_html.py).
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpsearch.cli import main
from hpsearch.export.model_file import load_model_dir
from hpsearch.paths import Workdir, safe_name
from hpsearch.trials.record import TrialRecord
from tests.hpsearch.conftest import ROOT, fake_env, run_cli
from tests.hpsearch.study_checks import (
    assert_one_line_error,
    random_study,
    require_postgres,
    run_args,
    study_names,
)
from tests.trainer.synthetic_tensors import synthetic_data
from trainer.config import TrainConfig
from trainer.errors import UserError
from trainer.inference import load_model
from trainer.model import build_model
from trainer.training import fit

# -- model and checkpoint files never run code ---------------------------------------------


class _Payload:
    """Unpickling this makes a folder: stands for any code an attacker would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def _malicious_file(path: Path, marker: Path) -> Path:
    """A file shaped like a saved model whose state_dict runs code when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = _Payload(marker)  # one object: pickled once, run once
    payload = {
        "state_dict": code,
        "model": code,
        "fingerprint": "x",
        "arch": "resnet18",
        "num_classes": 4,
        "in_chans": 1,
        "image_size": 16,
        "mean": 0.5,
        "std": 0.2,
    }
    torch.save(payload, path)
    # the file is live: a plain (unsafe) torch.load would run its code
    torch.load(path, weights_only=False)
    assert marker.is_dir()
    marker.rmdir()
    return path


def _load_best(path: Path) -> None:
    load_model(path)


def _load_export(path: Path) -> None:
    load_model_dir(path.parent)


def _resume(path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01, device="cpu", threads=1)
    fit(config, synthetic_data(n_train=16, n_val=8, size=16, seed=0), checkpoint_dir=path.parent)


def _imagenet_weights(path: Path) -> None:
    build_model("resnet18", pretrained=True, weights_path=path)


LOADERS = {
    "best.pt (trainer.inference.load_model)": ("best.pt", _load_best, "cannot read model file"),
    "model.pt (model_file.load_model_dir)": ("model.pt", _load_export, "cannot read model file"),
    "last.pt (fit resume)": ("last.pt", _resume, "cannot read checkpoint"),
    "ImageNet weights file": ("weights.pth", _imagenet_weights, "cannot read weights file"),
}


@pytest.mark.parametrize("case", sorted(LOADERS))
def test_malicious_pickle_does_not_run(case: str, tmp_path: Path) -> None:
    name, load, expected = LOADERS[case]
    marker = tmp_path / "pwned"
    path = _malicious_file(tmp_path / "files" / name, marker)
    with pytest.raises(UserError, match=expected):
        load(path)
    # refused by weights_only=True: the payload never ran
    assert not marker.exists()


def test_malicious_model_given_to_predict_is_one_line(tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    _malicious_file(tmp_path / "model" / "model.pt", marker)
    images = tmp_path / "images"
    images.mkdir()
    argv = ["predict", "--model", str(tmp_path / "model"), "--images", str(images)]
    code = main([*argv, "--out", str(tmp_path / "s.csv")])
    assert_one_line_error(code, capsys.readouterr().err, "cannot read model file")
    assert not marker.exists()


def _torch_load_calls(folder: Path) -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return calls


def test_every_torch_load_in_the_code_is_weights_only() -> None:
    calls = [c for pkg in ("trainer", "hpsearch", "reports") for c in _torch_load_calls(ROOT / pkg)]
    assert len(calls) >= 3  # the model, checkpoint and weights loaders are found
    unsafe = [
        where
        for where, call in calls
        if not any(
            kw.arg == "weights_only"
            and isinstance(kw.value, ast.Constant)
            and kw.value.value is True
            for kw in call.keywords
        )
    ]
    assert unsafe == []


# -- storage passwords ---------------------------------------------------------------------

SECRET = "Zq8-pw-r7XkT"


def _files_holding(folder: Path, text: str) -> list[Path]:
    needle = text.encode()
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.postgres
@pytest.mark.slow
def test_storage_password_never_shown_logged_or_stored(tmp_path: Path, study_name: str) -> None:
    url = require_postgres().replace("postgres@", f"postgres:{SECRET}@", 1)
    assert SECRET in url  # the test server trusts local users, so any password works
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0", WANDB_SILENT="true")
    env["BROWSER_PATH"] = str(tmp_path / "no-browser")  # report: skip the PNG figures
    study_file = random_study(tmp_path, 4, epochs=2)
    args = run_args(study_file, study_name, url, tmp_path, "--workers", "2", "--n-trials", "3")
    args[args.index("--wandb") + 1] = "offline"  # wandb records the command line too
    outputs = [run_cli(args, env)]
    assert outputs[0].returncode == 0, outputs[0].stderr[-3000:]
    report = tmp_path / "report"
    for command in (
        ["status", "--study", study_name, "--storage", url],
        ["status", "--study", study_name, "--storage", url, "--json"],
        ["best", "--study", study_name, "--storage", url, "--workdir", str(tmp_path / "work")],
        ["report", "--study", study_name, "--storage", url, "--out", str(report)],
    ):
        outputs.append(run_cli(command, env))
        assert outputs[-1].returncode == 0, outputs[-1].stderr[-3000:]
    # nowhere in what was printed, though the URL itself is shown (redacted)
    printed = "".join(r.stdout + r.stderr for r in outputs)
    assert SECRET not in printed and "postgres:***@" in printed
    # nor in any file written: workdir (checkpoints, artifacts, wandb runs), report
    assert (tmp_path / "work" / "wandb").is_dir()
    assert _files_holding(tmp_path / "work", SECRET) == []
    assert _files_holding(report, SECRET) == []
    # nor in the study's own records
    study = optuna.load_study(study_name=study_name, storage=require_postgres())
    recorded = repr((study.user_attrs, study._storage.get_study_system_attrs(study._study_id)))
    recorded += repr([(t.user_attrs, t.system_attrs, t.params) for t in study.trials])
    assert SECRET not in recorded


# -- names and paths stay inside the workdir ------------------------------------------------

ESCAPING_NAMES = ["../../x", "a/../../x", "/tmp/x", "..", ".", "x/y", "~x", "a b"]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_study_name_cannot_leave_the_workdir(name: str, tmp_path: Path, capsys) -> None:
    work = tmp_path / "inner" / "work"
    db = tmp_path / "study.db"
    argv = ["run", "--study", str(random_study(tmp_path, 2)), "--name", name]
    argv += ["--storage", f"sqlite:///{db}", "--workdir", str(work), "--data", str(tmp_path)]
    code = main(argv)
    assert_one_line_error(code, capsys.readouterr().err, "invalid study name")
    # nothing was created anywhere: not the workdir, not the database, not ../x
    assert not work.exists() and not db.exists()
    assert not (tmp_path / "x").exists() and not (tmp_path.parent / "x").exists()
    with pytest.raises(UserError):
        Workdir(work).trial_dir(name, 0)


def test_study_file_name_cannot_leave_the_workdir(tmp_path: Path, capsys) -> None:
    path = random_study(tmp_path, 2)
    path.write_text(path.read_text().replace("[study]\n", '[study]\nname = "../../x"\n'))
    db = tmp_path / "study.db"
    argv = ["run", "--study", str(path), "--storage", f"sqlite:///{db}"]
    code = main([*argv, "--workdir", str(tmp_path / "work")])
    assert_one_line_error(code, capsys.readouterr().err, "invalid study name '../../x'")
    assert not db.exists() and study_names(f"sqlite:///{db}") == []


def test_study_path_that_is_not_a_file_is_refused(tmp_path: Path, capsys) -> None:
    db = tmp_path / "study.db"
    argv = ["run", "--study", "../../x", "--storage", f"sqlite:///{db}"]
    code = main([*argv, "--workdir", str(tmp_path / "work")])
    assert_one_line_error(code, capsys.readouterr().err, "study file ../../x not found")
    assert not db.exists()


def test_trial_folders_stay_under_the_workdir(tmp_path: Path) -> None:
    root = Workdir(tmp_path / "work")
    for name in ("grid", "my-study_2.v1", "x" * 128):
        folder = root.trial_dir(safe_name(name), 7)
        assert folder.resolve().is_relative_to(root.root.resolve())
        assert folder.name == "slot-00007"


# -- the HTML report escapes what users typed ------------------------------------------------

EVIL = ("<script>alert(1)</script>", '"><img src=x onerror=alert(2)>')


@pytest.mark.slow
def test_report_escapes_parameter_values_and_attributes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "no-browser"))
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name=EVIL[0], storage=url, direction="maximize")
    study.set_user_attr(
        "hpsearch",
        {
            "spec_file": EVIL[1],
            "scale": "full",
            "sampler": "random",
            "pruner": "none",
            "metric": "val_accuracy",
            "direction": "maximize",
            "fixed": {"optimizer_note": EVIL[1]},
            "space": ["optimizer", "lr"],
            "data": {"root": f"/data/{EVIL[0]}", "image_size": 32, "synthetic": True},
            "workdir": str(tmp_path / "work"),
            "n_slots": 3,
        },
    )
    choices = [EVIL[0], EVIL[1], "sgd"]
    distributions = {
        "optimizer": CategoricalDistribution(choices),
        "lr": FloatDistribution(1e-4, 1.0, log=True),
    }
    for slot, choice in enumerate(choices):
        study.add_trial(
            create_trial(
                params={"optimizer": choice, "lr": 0.01 * (slot + 1)},
                distributions=distributions,
                value=0.5 + slot / 10,
                intermediate_values={1: 0.4, 2: 0.5 + slot / 10},
                user_attrs=TrialRecord(
                    slot=slot, config={"optimizer": choice}, error=EVIL[1]
                ).user_attrs(),
                state=TrialState.COMPLETE,
            )
        )
    out = tmp_path / "report"
    assert main(["report", "--study", EVIL[0], "--storage", url, "--out", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    # the values are there (as text in tables, as escaped JSON in figures), never as markup
    for raw in EVIL:
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
