"""``hpsearch run --from-study``: completed trials of another study as a TPE study's prior.

Only completed trials inside this study's space are copied, each once (reruns and
concurrent copiers included); copied trials show as such and never count as the
study's own (best trial, counts, figures); TPE's first proposals follow them.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.cli import main
from hpsearch.storage import open_storage
from hpsearch.study.load import load_study_file
from hpsearch.study.summary import best_trial, format_trials_table, study_status
from hpsearch.study.warmstart import copy_completed_trials
from hpsearch.trainer_api import TrainerAPI
from hpsearch.trials import search_trials
from hpsearch.trials.record import TrialRecord
from reports.study_figures import without_copied_trials
from tests.hpsearch import fake_trainer
from tests.hpsearch.study_checks import assert_one_line_error

TPE = """
[study]
sampler = "tpe"
seed = 7

[budget]
n_trials = 12

[tpe]
n_startup_trials = 10

[fixed]
momentum = 0.9

[space]
lr = { low = 0.00001, high = 0.1, log = true }
optimizer = ["sgd", "adam"]

[scale.full]
epochs = 1
image_size = 32
"""

FAKE = TrainerAPI(load_data=fake_trainer.load_data, fit=fake_trainer.fit)

#: The source's values peak at lr = 1e-2; every one is above what the stand-in trainer
#: reaches, so a copied trial would be the best if copies were counted as the study's own.
GOOD_LR = 1e-2


def _source_value(lr: float) -> float:
    return 0.99 - 0.1 * abs(math.log10(lr) - math.log10(GOOD_LR))


def make_source(url: str, name: str = "small", n: int = 24) -> optuna.Study:
    """A finished study: ``n`` complete trials over lr (log-spaced) and both optimizers,
    plus a pruned, a failed, a running trial and a complete one off this space."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    lr_dist = optuna.distributions.FloatDistribution(1e-6, 1.0, log=True)
    opt_dist = optuna.distributions.CategoricalDistribution(["sgd", "adam"])
    dists = {"lr": lr_dist, "optimizer": opt_dist}
    for i in range(n):
        lr = 10 ** (-5 + 4 * i / (n - 1))
        params = {"lr": lr, "optimizer": "sgd" if i % 2 else "adam"}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=dists, value=_source_value(lr))
        )
    off_space = {"lr": 0.5, "optimizer": "sgd"}  # above this study's lr range
    study.add_trial(optuna.trial.create_trial(params=off_space, distributions=dists, value=0.5))
    for state in (TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING):
        trial = optuna.trial.create_trial(
            params={"lr": 1e-3, "optimizer": "sgd"}, distributions=dists, state=state
        )
        study.add_trial(trial)
    return study


def run(tmp_path: Path, url: str, *flags: str, study: str = "tpe") -> int:
    study_file = tmp_path / f"{study}.toml"
    study_file.write_text(TPE)
    argv = ["run", "--study", str(study_file), "--storage", url, "--data", str(tmp_path)]
    argv += ["--workdir", str(tmp_path / "work"), "--wandb", "off", "--workers", "1", *flags]
    return main(argv, trainer=FAKE)


def test_only_completed_trials_in_the_space_are_copied_once(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_source(url)
    assert run(tmp_path, url, "--from-study", "small", "--n-trials", "2") == 0
    out = capsys.readouterr().out
    assert "warm start: 24 completed trial(s) copied from study 'small'" in out
    assert "1 left out (lr outside this study's space)" in out

    study = optuna.load_study(study_name="tpe", storage=url)
    copies = [t for t in study.get_trials() if TrialRecord.read(t).copied_from is not None]
    assert len(copies) == 24
    assert all(t.state == TrialState.COMPLETE for t in copies)
    assert all(t.intermediate_values == {} for t in copies)  # the pruner sees none
    assert sorted(TrialRecord.read(t).copied_from["trial"] for t in copies) == list(range(24))
    source = {t.number: t for t in optuna.load_study(study_name="small", storage=url).trials}
    for t in copies:
        origin = source[TrialRecord.read(t).copied_from["trial"]]
        assert t.params == origin.params and t.value == origin.value

    # The study's own trials are the two it ran; the best is one of them, not a copy.
    own = search_trials(study)
    assert len(own) == 2
    assert best_trial(study) in own
    assert max(t.value for t in copies) > max(t.value for t in own)
    status = study_status(study, n_slots=12)
    assert status["copied"] == 24 and status["finished"] == 2
    assert status["best"]["number"] in {t.number for t in own}
    table = format_trials_table(study, "val_accuracy")
    assert sum(" copied " in line for line in table.splitlines()) == 24
    assert len(without_copied_trials(study).trials) == 2  # the figures' view

    # The same command again copies nothing twice and runs on.
    assert run(tmp_path, url, "--from-study", "small", "--n-trials", "1") == 0
    assert "0 completed trial(s) copied" in capsys.readouterr().out
    study = optuna.load_study(study_name="tpe", storage=url)
    assert len(study.trials) == 24 + 3


def test_tpe_proposes_from_the_copied_trials(tmp_path: Path) -> None:
    """With the copies, TPE's first own proposals come from its model of them (lr near
    1e-2); without, they are start-up draws over the whole log range."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_source(url)
    assert run(tmp_path, url, "--from-study", "small", "--n-trials", "6") == 0
    assert run(tmp_path, url, "--name", "cold", "--n-trials", "6") == 0

    def own_lrs(name: str) -> list[float]:
        trials = search_trials(optuna.load_study(study_name=name, storage=url))
        return [math.log10(t.params["lr"]) for t in trials]

    warm, cold = own_lrs("tpe"), own_lrs("cold")
    assert len(warm) == len(cold) == 6
    distance = [abs(x - math.log10(GOOD_LR)) for x in warm]
    # Every informed proposal lies within a decade of the good learning rate ...
    assert max(distance) < 1.0, warm
    # ... which the uninformed start-up draws (over four decades) do not.
    assert max(abs(x - math.log10(GOOD_LR)) for x in cold) >= 1.0, cold


def test_the_copy_is_exactly_once_under_concurrent_copiers(
    tmp_path: Path, storage_url: str, study_name: str
) -> None:
    make_source(storage_url, name=f"{study_name}-src", n=16)
    spec = load_study_file(_study_file(tmp_path, study_name))
    target = optuna.create_study(study_name=study_name, storage=storage_url, direction="maximize")
    errors: list[BaseException] = []

    def copier() -> None:
        try:
            storage = open_storage(storage_url)
            source = optuna.load_study(study_name=f"{study_name}-src", storage=storage)
            mine = optuna.load_study(study_name=study_name, storage=storage)
            copy_completed_trials(source, mine, storage, spec, "full", "src")
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=copier) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    origins = [TrialRecord.read(t).copied_from["trial"] for t in target.get_trials()]
    assert sorted(origins) == list(range(16))


def _study_file(folder: Path, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(TPE)
    return path


def test_a_grid_or_a_second_source_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    make_source(url)
    make_source(url, name="other")
    grid = tmp_path / "grid.toml"
    grid.write_text(
        '[study]\nsampler = "grid"\n[space]\nlr = [0.01, 0.1]\n'
        "[scale.full]\nepochs = 1\nimage_size = 32\n"
    )
    argv = ["run", "--study", str(grid), "--storage", url, "--data", str(tmp_path)]
    argv += ["--workdir", str(tmp_path / "w"), "--wandb", "off", "--from-study", "small"]
    assert_one_line_error(main(argv, trainer=FAKE), capsys.readouterr().err, "is a grid")

    assert run(tmp_path, url, "--from-study", "small", "--n-trials", "1") == 0
    capsys.readouterr()
    code = run(tmp_path, url, "--from-study", "other", "--n-trials", "1")
    assert_one_line_error(code, capsys.readouterr().err, "already holds trials copied", "--name")

    code = run(tmp_path, url, "--from-study", "tpe", "--n-trials", "1")
    assert_one_line_error(code, capsys.readouterr().err, "is the study being run")

    code = run(tmp_path, url, "--name", "x", "--from-storage", url)
    assert_one_line_error(code, capsys.readouterr().err, "give --from-study")

    code = run(tmp_path, url, "--name", "y", "--from-study", "missing")
    assert_one_line_error(code, capsys.readouterr().err, "no study named 'missing'")
    # Refused before the new study was created.
    assert "y" not in {s.study_name for s in optuna.get_all_study_summaries(url)}


@pytest.mark.parametrize("where", ["same", "other"])
def test_from_storage_reads_the_source_elsewhere(tmp_path: Path, where: str, capsys) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    source_url = url if where == "same" else f"sqlite:///{tmp_path / 'small.db'}"
    make_source(source_url, n=5)
    flags = ["--from-study", "small", "--from-storage", source_url, "--n-trials", "1"]
    assert run(tmp_path, url, *flags) == 0
    assert "5 completed trial(s) copied" in capsys.readouterr().out
