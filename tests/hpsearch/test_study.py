"""From a study file to an Optuna study: the record, creating and joining, samplers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest

from hpsearch.run.kinds import Search
from hpsearch.storage import open_storage
from hpsearch.study.load import load_study_file, with_seed
from hpsearch.study.record import ATTR, DataRecord, StudyRecord
from hpsearch.study.stored import build_record, create_or_load, load_existing
from trainer.errors import UserError

STUDY = """
[study]
sampler = "{sampler}"
seed = 3

[budget]
n_trials = 5

[space]
lr = [0.001, 0.01, 0.1]
optimizer = ["sgd", "adam"]

[scale.full]
epochs = 2
"""

DATA = DataRecord(root="/data/xray", image_size=64, val_fraction=0.1, synthetic=False)


def spec_of(tmp_path: Path, sampler: str = "grid"):
    path = tmp_path / f"{sampler}.toml"
    path.write_text(STUDY.format(sampler=sampler))
    return load_study_file(path)


def storage_in(tmp_path: Path):
    return open_storage(f"sqlite:///{tmp_path / 'study.db'}")


def test_the_record_round_trips_through_the_storage(tmp_path: Path) -> None:
    spec = spec_of(tmp_path)
    record = build_record(spec, "full", DATA, "/work")
    create_or_load("s", storage_in(tmp_path), spec, record)
    again = StudyRecord.read(optuna.load_study(study_name="s", storage=storage_in(tmp_path)))
    # What is read back equals what was written, data included.
    assert again == record
    # The grid's record holds the shuffled order of its 6 points.
    assert sorted(record.grid_order or []) == list(range(6)) and record.n_slots == 6


def test_an_older_record_without_newer_keys_still_reads(tmp_path: Path) -> None:
    study = optuna.create_study(storage=storage_in(tmp_path), study_name="old")
    study.set_user_attr(
        ATTR, {"scale": "demo", "sampler": "grid", "pruner": "none", "metric": "val_accuracy",
               "direction": "maximize", "n_slots": 4, "spec_file": "grid.toml",
               "data": {"root": "/d", "image_size": 64, "val_fraction": 0.1}, "gone": 1}
    )  # fmt: skip
    record = StudyRecord.read(study)
    # Missing keys take their defaults, unknown ones are ignored.
    assert record is not None and record.data.synthetic is False and record.grid_order is None


def test_a_study_not_made_by_hpsearch_has_no_record(tmp_path: Path) -> None:
    study = optuna.create_study(storage=storage_in(tmp_path), study_name="plain")
    assert StudyRecord.read(study) is None


def test_joining_the_same_search_is_allowed_and_another_is_refused(tmp_path: Path) -> None:
    spec = spec_of(tmp_path)
    record = build_record(spec, "full", DATA, "/work")
    first = create_or_load("s", storage_in(tmp_path), spec, record)
    second = create_or_load("s", storage_in(tmp_path), spec, record)
    # The same search joins the same study.
    assert first._study_id == second._study_id
    # Another seed shuffles the grid otherwise: refused, naming the key.
    other = build_record(with_seed(spec, 4), "full", DATA, "/work")
    with pytest.raises(UserError, match="different grid_order"):
        create_or_load("s", storage_in(tmp_path), spec, other)
    # Other data is refused too.
    moved = dataclasses.replace(record, data=dataclasses.replace(DATA, root="/elsewhere"))
    with pytest.raises(UserError, match="other data"):
        create_or_load("s", storage_in(tmp_path), spec, moved)


def test_loading_a_missing_study_names_those_present(tmp_path: Path) -> None:
    optuna.create_study(storage=storage_in(tmp_path), study_name="here")
    with pytest.raises(UserError, match=r"no study named 'gone'.*present: here"):
        load_existing("gone", storage_in(tmp_path))


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_slot_draws_the_same_parameters_whichever_worker_runs_it(
    tmp_path: Path, sampler: str
) -> None:
    spec = spec_of(tmp_path, sampler)
    drawn = []
    for name in ("a", "b"):
        study = optuna.create_study(storage=storage_in(tmp_path), study_name=f"{sampler}-{name}")
        study.sampler = Search(spec, "full").sampler(2)
        trial = study.ask()
        drawn.append(trial.suggest_categorical("lr", [0.001, 0.01, 0.1]))
    # The slot's seed, not the process, decides what is drawn.
    assert drawn[0] == drawn[1]


MOMENTUM = """
[study]
sampler = "grid"

[space]
lr = [0.001, 0.01]
momentum = [0.5, 0.9]
optimizer = ["sgd", "adam"]

[scale.full]
epochs = 2
"""


def test_a_grid_study_made_with_every_point_keeps_its_slots(tmp_path: Path) -> None:
    from hpsearch.study.stored import spec_for_existing

    path = tmp_path / "m.toml"
    path.write_text(MOMENTUM)
    spec = load_study_file(path)
    storage = storage_in(tmp_path)
    # made by an earlier version: a slot for each of the 8 points, Adam's twins included
    every = dataclasses.replace(spec, grid_every_point=True)
    old_record = build_record(every, "full", DATA, "/work")
    assert old_record.n_slots == 8 and sorted(old_record.grid_order or []) == list(range(8))
    create_or_load("old", storage, every, old_record)
    # a run today finds it and goes on with its 8 slots, in the same order
    joined = spec_for_existing("old", storage, spec, "full")
    assert joined.grid_every_point and joined.budget("full") == 8
    assert joined.grid_order("full") == old_record.grid_order
    create_or_load("old", storage, joined, build_record(joined, "full", DATA, "/work"))
    # a new study gets the 6 distinct trainings
    fresh = spec_for_existing("new", storage, spec, "full")
    assert not fresh.grid_every_point and fresh.budget("full") == 6
    record = build_record(fresh, "full", DATA, "/work")
    create_or_load("new", storage, fresh, record)
    assert spec_for_existing("new", storage, spec, "full").budget("full") == 6
