"""``run`` and ``confirm`` refuse what is not theirs, and check before they write.

- A study of the same name that hpsearch did not make (plain Optuna's) is refused, not
  taken over; ``--adopt`` takes it over when it fits.
- A study made from a study file with another training budget (any fixed or scale value,
  the space, the pruner) is refused naming the first key that differs, not joined.
- Every refusal of ``run`` comes before anything is written: no workdir, no demo data,
  no storage file, the storage's content unchanged (:mod:`tests.hpsearch.refusals`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest

from hpsearch.cli import main
from hpsearch.storage import open_storage
from hpsearch.study.load import load_study_file
from hpsearch.study.record import DataRecord
from hpsearch.study.stored import build_record, create_or_load
from tests.hpsearch.conftest import PG_URL
from tests.hpsearch.refusals import Refusal, assert_refused, in_process, storage_dump
from tests.hpsearch.study_checks import require_postgres

STUDY = """
[study]
sampler = "random"
seed = 1
[budget]
n_trials = 4
[space]
lr = {{ low = 0.0001, high = 0.1, log = true }}
[scale.demo]
epochs = {epochs}
image_size = 16
demo_images = 200
demo_size = 32
"""

DATA = DataRecord(root="/data", image_size=16, val_fraction=0.1)


def _study_file(folder: Path, epochs: int = 1, name: str = "base") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(STUDY.format(epochs=epochs))
    return path


def _made_by_hpsearch(url: str, folder: Path, epochs: int = 1) -> None:
    """A study 'base' made as ``hpsearch run`` makes it, from a file of ``epochs``."""
    spec = load_study_file(_file(folder, epochs))
    create_or_load("base", open_storage(url), spec, build_record(spec, "demo", DATA, "/w"))


def _file(folder: Path, epochs: int) -> Path:
    made = folder / "made"
    made.mkdir(exist_ok=True)
    return _study_file(made, epochs)


def _made_by_optuna(url: str) -> None:
    """A study 'base' made with Optuna itself: minimize, one parameter x, 3 trials."""
    study = optuna.create_study(study_name="base", storage=url, direction="minimize")
    study.optimize(lambda t: (t.suggest_float("x", -10, 10) - 2) ** 2, n_trials=3)


def _run(folder: Path, url: str, *extra: str) -> list[str]:
    study = _study_file(folder, epochs=2)
    return ["run", "--study", str(study), "--name", "base", "--storage", url,
            "--workdir", str(folder / "work"), "--wandb", "off", *extra]  # fmt: skip


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database of its own (its whole content is compared)."""
    require_postgres()
    import psycopg

    name = f"hpsearch_join_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'study.db'}"
        return
    yield request.getfixturevalue("pg_database")


def _refused(folder: Path, url: str, argv: list[str], expect: str, capsys) -> None:
    """``argv`` refused in one line, nothing in the folder or the storage changed."""
    case = Refusal(tuple(argv), expect, storage=url)
    assert_refused(case, folder, in_process(capsys))


def test_a_study_plain_optuna_made_is_not_taken_over(tmp_path: Path, fresh_url: str, capsys):
    _made_by_optuna(fresh_url)
    # before: exit 0, the foreign trials printed as the study's own, trained into it
    _refused(tmp_path, fresh_url, _run(tmp_path, fresh_url), "not made by hpsearch run", capsys)


def test_adopt_refuses_a_study_whose_trials_do_not_fit(tmp_path: Path, fresh_url: str, capsys):
    _made_by_optuna(fresh_url)
    # minimize with a parameter x: not this search, even asked to adopt it
    argv = _run(tmp_path, fresh_url, "--adopt")
    _refused(tmp_path, fresh_url, argv, "--adopt: study 'base' is minimized", capsys)


def test_adopt_takes_over_a_study_that_fits(tmp_path: Path, fresh_url: str) -> None:
    study = optuna.create_study(study_name="base", storage=fresh_url, direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.01},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 0.1, log=True)},
            value=0.5,
        )
    )
    spec = load_study_file(_study_file(tmp_path))
    record = build_record(spec, "demo", DATA, "/w")
    storage = open_storage(fresh_url)
    with pytest.raises(Exception, match="not made by hpsearch run"):
        create_or_load("base", storage, spec, record)
    adopted = create_or_load("base", storage, spec, record, adopt=True)
    # the study is this search now, its trial kept
    assert adopted.user_attrs["hpsearch"]["n_slots"] == 4 and len(adopted.trials) == 1


def test_a_study_of_another_training_budget_is_not_joined(
    tmp_path: Path, fresh_url: str, capsys
) -> None:
    _made_by_hpsearch(fresh_url, tmp_path, epochs=1)
    # before: exit 0, trials of 1 and 2 epochs ranked together
    argv = _run(tmp_path, fresh_url)
    _refused(tmp_path, fresh_url, argv, "different fixed.epochs (1 there, 2 now)", capsys)


Setup = Callable[[Path], object]


def _file_at(folder: Path) -> None:
    (folder / "afile").write_text("not a folder")


RUN_CASES = {
    "heartbeat -1": (("--heartbeat", "-1"), "--heartbeat must be >= 1", None),
    # before: 0 silently meant the default
    "heartbeat 0": (("--heartbeat", "0"), "--heartbeat must be >= 1", None),
    "data missing": (("--data", "{dir}/nowhere"), "nowhere", None),
    "data a file": (("--data", "{dir}/afile"), "afile", _file_at),
    "name .": (("--name", "."), "must start with a letter or a digit", None),
    "name ..": (("--name", ".."), "must start with a letter or a digit", None),
    "name -rf": (("--name=-rf",), "must start with a letter or a digit", None),
    "workdir under a file": (("--workdir", "{dir}/afile/work"), "is not a folder", _file_at),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_refuses_before_it_writes(case: str, tmp_path: Path, capsys) -> None:
    extra, expect, setup = RUN_CASES[case]
    _study_file(tmp_path)
    argv = ("run", "--study", "{dir}/base.toml", "--storage", "sqlite:///{dir}/s.db",
            "--workdir", "{dir}/work", "--wandb", "off")  # fmt: skip
    flag = extra[0].split("=")[0]
    if flag in argv:  # the case's own flag replaces the default
        at = argv.index(flag)
        argv = argv[:at] + argv[at + 2 :]
    # before: every refusal left an empty workdir, some the demo data too
    assert_refused(Refusal((*argv, *extra), expect, setup=setup), tmp_path, in_process(capsys))


def test_confirm_on_a_missing_storage_creates_nothing(tmp_path: Path, capsys) -> None:
    argv = ("confirm", "--study", "grid", "--storage", "sqlite:///{dir}/none.db")
    # before: the SQLite file was created
    assert_refused(Refusal(argv, "no study storage at"), tmp_path, in_process(capsys))


def test_bench_refuses_a_huge_image_size_at_once(tmp_path: Path, capsys) -> None:
    argv = ("bench", "--data", "demo", "--image-size", "100000")
    # before: not refused within 60 s (it generated and decoded images first)
    assert_refused(Refusal(argv, "--image-size"), tmp_path, in_process(capsys))


def test_the_storage_of_a_refused_join_is_compared_before_the_data(tmp_path: Path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    _made_by_hpsearch(url, tmp_path, epochs=1)
    before = storage_dump(url)
    code = main(_run(tmp_path, url))
    assert code == 2 and "different fixed.epochs" in capsys.readouterr().err
    # no demo data was generated for a run that is refused
    assert not (tmp_path / "work").exists() and storage_dump(url) == before
