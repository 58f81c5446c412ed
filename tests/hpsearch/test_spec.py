"""Study files: the shipped ones load, and every kind of mistake is one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.cli import main
from hpsearch.spec import find_study_file, load_study_file
from trainer.errors import UserError

ROOT = Path(__file__).resolve().parents[2]

VALID = """
[study]
sampler = "grid"
[pruner]
kind = "median"
n_startup_trials = 2
[fixed]
arch = "resnet18"
[space]
lr = [0.001, 0.01]
optimizer = ["sgd", "adam"]
[scale.demo]
epochs = 2
[scale.demo.space]
lr = [0.01]
[scale.full]
epochs = 5
"""


@pytest.mark.parametrize("name", ["grid", "random", "tpe"])
def test_shipped_studies_load(name: str) -> None:
    spec = load_study_file(ROOT / "studies" / f"{name}.toml")
    assert spec.sampler == name
    # both scales are declared in the file and differ in image size
    assert spec.data_values("demo")["image_size"] < spec.data_values("full")["image_size"]
    assert spec.train_values("full")["pretrained"] is True
    assert spec.train_values("demo")["pretrained"] is False
    assert spec.budget("demo") >= 6


def test_grid_points_and_demo_narrowing(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(VALID)
    spec = load_study_file(path)
    # full scale: the product of the axes, first axis slowest
    assert spec.grid_points("full") == [
        {"lr": 0.001, "optimizer": "sgd"},
        {"lr": 0.001, "optimizer": "adam"},
        {"lr": 0.01, "optimizer": "sgd"},
        {"lr": 0.01, "optimizer": "adam"},
    ]
    # the demo scale narrows lr to one value
    assert spec.budget("demo") == 2
    assert spec.train_values("full")["epochs"] == 5


BAD = {
    "syntax": ("[study\nsampler = 'grid'", "TOML syntax error"),
    "unknown top key": (VALID + "\n[extra]\nx = 1\n", "extra: unknown section"),
    "unknown study key": (
        VALID.replace('sampler = "grid"', 'sampler = "grid"\nfoo = 1'),
        "study.foo: unknown key",
    ),
    "wrong type": (
        VALID.replace('arch = "resnet18"', "arch = 18"),
        "fixed.arch: expected a string",
    ),
    "bad arch": (VALID.replace('arch = "resnet18"', 'arch = "vgg"'), "arch='vgg'"),
    "empty grid axis": (VALID.replace("lr = [0.001, 0.01]\n", "lr = []\n"), "space.lr: empty list"),
    "empty space": (
        VALID.split("[space]")[0] + "[scale.full]\nepochs = 1\n",
        "space: the search space is empty",
    ),
    "lr zero": (VALID.replace("lr = [0.001, 0.01]\n", "lr = [0.0, 0.01]\n"), "lr"),
    "negative lr": (VALID.replace("lr = [0.001, 0.01]\n", "lr = [-0.1]\n"), "must be > 0"),
    "unknown sampler": (
        VALID.replace('sampler = "grid"', 'sampler = "cmaes"'),
        "study.sampler: 'cmaes' is not one of",
    ),
    "unknown pruner": (
        VALID.replace('kind = "median"', 'kind = "patient"'),
        "pruner.kind: 'patient' is not one of",
    ),
    "pruner setting": (
        VALID.replace("n_startup_trials = 2", "reduction_factor = 3"),
        "pruner.reduction_factor: not a median setting",
    ),
    "grid range": (
        VALID.replace("lr = [0.001, 0.01]\n", "lr = { low = 0.001, high = 0.1 }\n"),
        "space.lr: a grid axis must be a list",
    ),
    "unknown param": (
        VALID.replace("lr = [0.001, 0.01]\n", "learning_rate = [0.1]\n"),
        "space.learning_rate: not a training setting",
    ),
    "random without budget": (
        VALID.replace('sampler = "grid"', 'sampler = "random"'),
        "budget.n_trials: required",
    ),
    "bad range": (
        VALID.replace('sampler = "grid"', 'sampler = "random"').replace(
            "lr = [0.001, 0.01]\n", "lr = { low = 0.1, high = 0.01 }\n"
        )
        + "[budget]\nn_trials=3\n",
        "must be < high",
    ),
    "unknown scale": (VALID + "\n[scale.huge]\nepochs = 1\n", "scale.huge: unknown scale"),
    "fraction": (
        VALID.replace("[scale.full]\n", "[scale.full]\nval_fraction = 1.5\n"),
        "scale.full.val_fraction: must be in [0, 1)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_study_files_name_file_and_key(tmp_path: Path, case: str) -> None:
    text, expected = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_study_file(path)
    message = str(err.value)
    assert str(path) in message and expected in message
    assert "\n" not in message


def test_cli_bad_study_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD["empty grid axis"][0])
    code = main(
        [
            "run",
            "--study",
            str(path),
            "--storage",
            f"sqlite:///{tmp_path}/x.db",
            "--workdir",
            str(tmp_path / "w"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "space.lr" in err and "Traceback" not in err
    # nothing was written to a study storage
    assert not (tmp_path / "x.db").exists()


def test_unknown_study_name_lists_known_ones() -> None:
    with pytest.raises(UserError, match=r"known: .*grid"):
        find_study_file("nonexistent", [ROOT / "studies"])


def test_grid_order_is_a_seeded_shuffle_of_every_point(tmp_path: Path) -> None:
    from hpsearch.study import grid_order, sampler_for_slot

    path = tmp_path / "g.toml"
    path.write_text(VALID.replace("lr = [0.01]", "lr = [0.001, 0.01, 0.1]"))
    spec = load_study_file(path)
    order = grid_order(spec, "demo")
    assert sorted(order) == list(range(6))
    assert order == grid_order(spec, "demo")  # same seed, same order
    assert order != list(range(6))  # not file order (true for seed 0)
    seeded = tmp_path / "s.toml"
    seeded.write_text(path.read_text().replace('sampler = "grid"', 'sampler = "grid"\nseed = 1'))
    assert sorted(grid_order(load_study_file(seeded), "demo")) == list(range(6))
    assert grid_order(load_study_file(seeded), "demo") != order
    points = spec.grid_points("demo")
    # slot k trains point order[k]: every point once, nothing off the grid
    fixed = [sampler_for_slot(spec, "demo", k)._fixed_params for k in range(6)]
    assert fixed == [points[i] for i in order]


def test_a_scale_can_replace_pruner_settings(tmp_path: Path) -> None:
    from hpsearch.study import build_pruner

    path = tmp_path / "p.toml"
    path.write_text(VALID + "[scale.full.pruner]\nn_warmup_steps = 5\n")
    spec = load_study_file(path)
    assert spec.pruner_at("demo").settings == {"n_startup_trials": 2}
    assert spec.pruner_at("full").settings == {"n_startup_trials": 2, "n_warmup_steps": 5}
    assert build_pruner(spec, "full")._n_warmup_steps == 5
    assert build_pruner(spec, "demo")._n_warmup_steps == 0


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[scale.full.pruner]\nreduction_factor = 3\n", "scale.full.pruner.reduction_factor"),
        ("[scale.full.pruner]\nkind = 'hyperband'\n", "scale.full.pruner"),
        ("[scale.full.pruner]\nn_warmup_steps = -1\n", "scale.full.pruner.n_warmup_steps"),
    ],
)
def test_bad_scale_pruner_settings_name_the_key(tmp_path: Path, table: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(VALID + table)
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_study_file(path)
