"""``hpsearch confirm``: top configurations again with new seeds, exactly once; the ranking."""

from __future__ import annotations

import collections
import json
import math
import os
import signal
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats

from hpsearch.study.confirm import (
    ConfirmRun,
    confirm_seeds,
    confirm_study_name,
    extend_runs,
    plan_runs,
    top_configurations,
)
from hpsearch.study.ranking import INDISTINGUISHABLE, format_ranking, rank
from hpsearch.trials.record import TrialRecord
from tests.hpsearch.conftest import fake_env, run_cli
from tests.hpsearch.study_checks import start_cli, wait_for_lines
from trainer.errors import UserError

TOP, SEEDS = 2, 3


def _args(command: str, study_file: Path, name: str, url: str, tmp_path: Path) -> list[str]:
    common = ["--storage", url, "--workers", "2", "--workdir", str(tmp_path / "work")]
    common += ["--wandb", "off"]
    if command == "run":
        return ["run", "--study", str(study_file), "--name", name, "--data", str(tmp_path), *common]
    return ["confirm", "--study", name, "--top", str(TOP), "--seeds", str(SEEDS), *common]


def _confirm_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=confirm_study_name(name), storage=url)
    return study.get_trials(deepcopy=False)


def _search(tmp_path: Path, grid_file, url: str, name: str) -> list[str]:
    study_file = grid_file(epochs=2)
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0")
    assert run_cli(_args("run", study_file, name, url, tmp_path), env).returncode == 0
    return _args("confirm", study_file, name, url, tmp_path)


@pytest.mark.slow
def test_confirm_runs_each_configuration_and_seed_once(
    tmp_path: Path, grid_file, storage_url: str, study_name: str
) -> None:
    confirm = _search(tmp_path, grid_file, storage_url, study_name)
    best = ["best", "--study", study_name, "--storage", storage_url, "--json"]
    before = json.loads(run_cli(best, fake_env(tmp_path)).stdout)
    # Before confirm: the winner is said to be unconfirmed, and there is no ranking.
    assert before["selection"].startswith("unconfirmed") and before["ranking"] is None
    log = tmp_path / "epochs.log"
    searched = len(log.read_text().splitlines())
    result = run_cli(confirm, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.05"))
    assert result.returncode == 0, result.stderr[-3000:]
    trials = _confirm_trials(storage_url, study_name)
    # K x S runs, all complete, no stray trial.
    assert len(trials) == TOP * SEEDS
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    # Each (configuration, seed) exactly once, with the derived seeds, never the study's.
    pairs = collections.Counter((t.user_attrs["confirm_of"], t.user_attrs["seed"]) for t in trials)
    assert max(pairs.values()) == 1 and len(pairs) == TOP * SEEDS
    assert {t.user_attrs["seed"] for t in trials} == set(confirm_seeds(0, SEEDS))
    # The runs trained to the budget (no pruning) with their seed in the config.
    records = [TrialRecord.read(t) for t in trials]
    assert all(r.epochs_run == 2 for r in records)
    assert all(
        r.config["seed"] == t.user_attrs["seed"] for r, t in zip(records, trials, strict=True)
    )
    # The ranking is printed, and best uses it: the winner is a confirmation run.
    assert "confirmed ranking" in result.stdout
    after = json.loads(run_cli(best, fake_env(tmp_path)).stdout)
    assert after["selection"].startswith("confirmed winner")
    assert len(after["ranking"]["configs"]) == TOP
    assert after["study"] == confirm_study_name(study_name)
    assert after["seed"] in confirm_seeds(0, SEEDS)
    # A rerun with the same K and S trains nothing.
    trained = len(log.read_text().splitlines())
    assert trained - searched == TOP * SEEDS * 2
    again = run_cli(confirm, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(log.read_text().splitlines()) == trained
    # More seeds grow the confirmation: the runs done keep their slots and results, and
    # only the new seed of each configuration is trained (before: refused, pointing to a
    # --name that confirm does not have).
    kept = {t.number: (t.user_attrs["seed"], t.value) for t in trials}
    more = list(confirm)
    more[more.index("--seeds") + 1] = str(SEEDS + 1)
    grown = run_cli(more, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert grown.returncode == 0, grown.stderr[-2000:]
    assert f"adding {TOP} run(s) to the {TOP * SEEDS}" in grown.stdout
    assert len(log.read_text().splitlines()) == trained + TOP * 2
    trials = _confirm_trials(storage_url, study_name)
    assert len(trials) == TOP * (SEEDS + 1)
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    pairs = collections.Counter((t.user_attrs["confirm_of"], t.user_attrs["seed"]) for t in trials)
    assert max(pairs.values()) == 1 and len(pairs) == TOP * (SEEDS + 1)
    assert {t.user_attrs["seed"] for t in trials} == set(confirm_seeds(0, SEEDS + 1))
    now = {t.number: (t.user_attrs["seed"], t.value) for t in trials}
    assert all(now[number] == before for number, before in kept.items())
    after = json.loads(run_cli(best, fake_env(tmp_path)).stdout)
    assert {len(c["values"]) for c in after["ranking"]["configs"]} == {SEEDS + 1}
    # Asking for fewer again trains nothing.
    again = run_cli(confirm, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(log.read_text().splitlines()) == trained + TOP * 2


@pytest.mark.slow
def test_confirm_races_by_default_and_a_rerun_trains_nothing(
    tmp_path: Path, grid_file, storage_url: str, study_name: str
) -> None:
    fixed = _search(tmp_path, grid_file, storage_url, study_name)
    at = fixed.index("--seeds")
    race = [*fixed[:at], *fixed[at + 2 :], "--max-seeds", "3"]
    result = run_cli(race, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"racing {TOP} configuration(s)" in result.stdout
    search = optuna.load_study(study_name=study_name, storage=storage_url)
    top = top_configurations(search, TOP)
    trials = _confirm_trials(storage_url, study_name)
    # The stand-in trainer's value does not depend on the seed: the paired differences
    # are constant, so the runner-up leaves at the first judged round (2 seeds) unless it
    # ties with the leader, and then the race runs to --max-seeds undecided.
    tied = top[0].value == top[1].value
    runs = 2 * 3 if tied else 2 * 2
    assert len(trials) == runs and {t.state for t in trials} == {TrialState.COMPLETE}
    pairs = {(t.user_attrs["confirm_of"], t.user_attrs["seed"]) for t in trials}
    assert len(pairs) == runs  # each (configuration, seed) once
    seeds = confirm_seeds(0, 3 if tied else 2)
    assert {t.user_attrs["seed"] for t in trials} == set(seeds)  # one list for all
    summary = "race undecided at --max-seeds 3" if tied else "race decided after 2 seed(s)"
    assert summary in result.stdout
    # an undecided race is told to go on with --max-seeds (it refuses --seeds)
    assert ("--max-seeds 6 adds runs" in result.stdout) is tied
    assert "--seeds" not in result.stdout.split(summary, 1)[1]
    # The same command again: the race is over, nothing is trained, the verdict stays.
    again = run_cli(race, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert again.returncode == 0 and summary in again.stdout
    assert len(_confirm_trials(storage_url, study_name)) == runs
    # best --json holds the race: its rounds, who left on what evidence, the verdict.
    best = ["best", "--study", study_name, "--storage", storage_url, "--json"]
    shown = json.loads(run_cli(best, fake_env(tmp_path)).stdout)["race"]
    assert shown["decided"] is not tied and summary in shown["summary"]
    assert [r["seeds"] for r in shown["rounds"]] == ([2, 3] if tied else [2])
    if not tied:
        assert [d["trial"] for d in shown["rounds"][0]["left"]] == [top[1].number]
    # A race is not turned into the fixed design by accident.
    refused = run_cli(fixed, fake_env(tmp_path))
    assert refused.returncode == 2 and "is a race: run it again without --seeds" in refused.stderr


@pytest.mark.slow
def test_sigkill_mid_confirm_then_rerun_loses_and_repeats_nothing(
    tmp_path: Path, grid_file, study_name: str
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    confirm = _search(tmp_path, grid_file, url, study_name)
    log = tmp_path / "epochs.log"
    searched = len(log.read_text().splitlines())
    stall = str(searched + 3)  # the run cannot end before the kill
    env = fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0.3", FAKE_TRAINER_STALL_AFTER=stall)
    proc = start_cli(confirm, env)
    try:
        wait_for_lines(log, searched + 3)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rerun = run_cli(confirm, fake_env(tmp_path, FAKE_TRAINER_EPOCH_S="0"))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = _confirm_trials(url, study_name)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # Every (configuration, seed) complete exactly once.
    pairs = collections.Counter(
        (t.user_attrs["confirm_of"], t.user_attrs["seed"]) for t in complete
    )
    assert len(pairs) == TOP * SEEDS and max(pairs.values()) == 1
    # No epoch of a confirmation run trained twice: killed runs resumed their checkpoint.
    lines = log.read_text().splitlines()[searched:]
    per_epoch = collections.Counter((line.split()[1], line.split()[-1]) for line in lines)
    assert max(per_epoch.values()) == 1 and len(per_epoch) <= TOP * SEEDS * 2


def _confirm_trial(source: int, seed: int, value: float, lr: float) -> optuna.trial.FrozenTrial:
    return create_trial(
        params={"lr": lr},
        distributions={"lr": CategoricalDistribution([0.001, 0.01, 0.1])},
        value=value,
        user_attrs={"confirm_of": source, "seed": seed},
    )


def test_the_ranking_equals_a_direct_computation() -> None:
    values = {0: [0.81, 0.84, 0.79, 0.83], 5: [0.86, 0.80, 0.85], 2: [0.70, 0.72]}
    lrs = {0: 0.01, 5: 0.001, 2: 0.1}
    trials = [
        _confirm_trial(src, seed, v, lrs[src])
        for src, vs in values.items()
        for seed, v in enumerate(vs)
    ]
    ranking = rank(trials, "maximize")
    # Ordered by mean, best first.
    assert [c.source_trial for c in ranking.configs] == [5, 0, 2]
    for config in ranking.configs:
        vs = np.array(values[config.source_trial])
        n = len(vs)
        half = stats.t.ppf(0.975, n - 1) * vs.std(ddof=1) / math.sqrt(n)
        # Mean, sample standard deviation and the t interval, as numpy and scipy give them.
        assert config.mean == pytest.approx(vs.mean(), abs=1e-12)
        assert config.std == pytest.approx(vs.std(ddof=1), abs=1e-12)
        assert config.ci95 == pytest.approx((vs.mean() - half, vs.mean() + half), abs=1e-12)
        low, high = stats.t.interval(0.95, n - 1, loc=vs.mean(), scale=stats.sem(vs))
        assert config.ci95 == pytest.approx((low, high), abs=1e-12)
    # The top two overlap: said in plain words.
    assert ranking.top_two_overlap and INDISTINGUISHABLE in ranking.verdict()
    # Minimising orders the other way.
    assert [c.source_trial for c in rank(trials, "minimize").configs] == [2, 0, 5]


def test_a_clear_winner_is_not_called_indistinguishable() -> None:
    trials = [_confirm_trial(0, s, v, 0.01) for s, v in enumerate([0.90, 0.91, 0.92])]
    trials += [_confirm_trial(1, s, v, 0.1) for s, v in enumerate([0.50, 0.51, 0.52])]
    ranking = rank(trials, "maximize")
    assert not ranking.top_two_overlap
    assert INDISTINGUISHABLE not in ranking.verdict()
    # The representative run is the one closest to the mean.
    assert ranking.configs[0].representative() == (ranking.configs[0].trials[1], 1)


def test_one_run_per_configuration_decides_nothing() -> None:
    # One seed each: no interval, so no overlap is stated either way, and nothing is
    # called confirmed (before: "the winner's interval does not overlap the runner-up's"
    # with every interval n/a).
    trials = [_confirm_trial(0, 0, 0.90, 0.01), _confirm_trial(1, 0, 0.50, 0.1)]
    ranking = rank(trials, "maximize")
    assert not ranking.has_intervals and not ranking.top_two_overlap
    assert ranking.verdict().startswith("not decided")
    assert "overlap" not in ranking.verdict()
    text = format_ranking(ranking, "val_accuracy")
    assert "CI n/a, 1 seed(s)" in text and "does not overlap" not in text
    # A second run of the winner alone is not enough: the runner-up has no interval yet.
    ranking = rank([*trials, _confirm_trial(0, 1, 0.91, 0.01)], "maximize")
    assert not ranking.has_intervals and ranking.verdict().startswith("not decided")


def test_confirm_refuses_one_seed_before_writing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--seeds must be >= 2, not 1: one seed"):
        plan_runs(optuna.create_study(), 0, 3, 1)
    with pytest.raises(UserError, match=r"--top must be >= 1, not 0"):
        plan_runs(optuna.create_study(), 0, 0, 3)


def test_seeds_are_derived_from_the_study_seed() -> None:
    # The same study seed gives the same seeds; none is the study seed itself.
    assert confirm_seeds(7, 3) == confirm_seeds(7, 3)
    # asking for more seeds keeps the first ones (so a confirmation can grow)
    assert confirm_seeds(7, 5)[:3] == confirm_seeds(7, 3)
    assert 7 not in confirm_seeds(7, 5) and len(set(confirm_seeds(7, 5))) == 5
    assert confirm_seeds(7, 3) != confirm_seeds(8, 3)


def test_a_confirmation_grows_without_moving_its_runs() -> None:
    a, b = {"lr": 0.01}, {"lr": 0.1}
    done = tuple(ConfirmRun(params=a, seed=s, source_trial=3, rank=0) for s in (1, 2))
    # more seeds, and a second configuration; the search's trial numbers may differ now
    wanted = tuple(
        ConfirmRun(params=p, seed=s, source_trial=n, rank=r)
        for (p, n, r) in ((a, 5, 0), (b, 7, 1))
        for s in (1, 2, 3)
    )
    grown = extend_runs(done, wanted)
    assert grown[:2] == done  # the runs done keep their slots
    assert [(r.params, r.seed) for r in grown[2:]] == [(a, 3), (b, 1), (b, 2), (b, 3)]
    assert extend_runs(grown, done) == grown  # fewer adds nothing


def test_the_ranking_leaves_out_what_the_optimizer_ignores() -> None:
    from hpsearch.study.ranking import format_ranking

    def run(optimizer: str, seed: int, value: float) -> optuna.trial.FrozenTrial:
        return create_trial(
            params={"optimizer": optimizer, "momentum": 0.9},
            distributions={
                "optimizer": CategoricalDistribution(["sgd", "adam"]),
                "momentum": CategoricalDistribution([0.5, 0.9]),
            },
            value=value,
            user_attrs={"confirm_of": 0 if optimizer == "adam" else 1, "seed": seed},
        )

    trials = [run("adam", 1, 0.9), run("adam", 2, 0.92), run("sgd", 1, 0.7), run("sgd", 2, 0.72)]
    adam_line, sgd_line = format_ranking(rank(trials, "maximize"), "val_accuracy").splitlines()[1:3]
    # Adam does not use momentum: its line does not show one, as status' table does not
    assert "optimizer=adam" in adam_line and "momentum" not in adam_line
    assert "momentum=0.9" in sgd_line
