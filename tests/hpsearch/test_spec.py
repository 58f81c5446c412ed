"""Study files: the shipped ones load, and every kind of mistake is one line naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpsearch.cli import main
from hpsearch.study.load import find_study_file, load_study_file, with_overrides, with_seed
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
    # the modest scale sits between them: fewer pixels and epochs than full, same space
    assert spec.scale_names == ("demo", "modest", "full")
    modest, full = spec.train_values("modest"), spec.train_values("full")
    assert spec.data_values("modest")["image_size"] == 128 < spec.data_values("full")["image_size"]
    assert modest["epochs"] == 12 < full["epochs"] and modest["pretrained"] is True
    assert spec.budget("modest") == spec.budget("full")
    assert spec.enqueued("modest") == spec.enqueued("full")


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
    from hpsearch.run.kinds import Search

    path = tmp_path / "g.toml"
    path.write_text(VALID.replace("lr = [0.01]", "lr = [0.001, 0.01, 0.1]"))
    spec = load_study_file(path)
    order = spec.grid_order("demo")
    assert sorted(order) == list(range(6))
    assert order == spec.grid_order("demo")  # same seed, same order
    assert order != list(range(6))  # not file order (true for seed 0)
    seeded = tmp_path / "s.toml"
    seeded.write_text(path.read_text().replace('sampler = "grid"', 'sampler = "grid"\nseed = 1'))
    assert sorted(load_study_file(seeded).grid_order("demo")) == list(range(6))
    assert load_study_file(seeded).grid_order("demo") != order
    points = spec.grid_points("demo")
    # slot k trains point order[k]: every point once, nothing off the grid
    fixed = [Search(spec, "demo").sampler(k)._fixed_params for k in range(6)]
    assert fixed == [points[i] for i in order]


def test_a_scale_can_replace_pruner_settings(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(VALID + "[scale.full.pruner]\nn_warmup_steps = 5\n")
    spec = load_study_file(path)
    assert spec.pruner_at("demo").settings == {"n_startup_trials": 2}
    assert spec.pruner_at("full").settings == {"n_startup_trials": 2, "n_warmup_steps": 5}
    assert spec.build_pruner("full")._n_warmup_steps == 5
    assert spec.build_pruner("demo")._n_warmup_steps == 0


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[scale.full.pruner]\nreduction_factor = 3\n", "scale.full.pruner.reduction_factor"),
        ("[scale.full.pruner]\nkind = 'nonesuch'\n", "scale.full.pruner.kind"),
        # another kind at a scale takes that kind's settings only
        (
            "[scale.full.pruner]\nkind = 'hyperband'\nn_warmup_steps = 2\n",
            "scale.full.pruner.n_warmup_steps",
        ),
        ("[scale.full.pruner]\nn_warmup_steps = -1\n", "scale.full.pruner.n_warmup_steps"),
    ],
)
def test_bad_scale_pruner_settings_name_the_key(tmp_path: Path, table: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(VALID + table)
    with pytest.raises(UserError, match=key.replace(".", r"\.")):
        load_study_file(path)


# -- validation gaps ---------------------------------------------------------------------


def _load(tmp_path: Path, text: str):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return load_study_file(path)


def _refused(tmp_path: Path, text: str, expected: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        load_study_file(path)
    message = str(err.value)
    # one line that names the file and the key
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message
    return message


RANDOM = VALID.replace('sampler = "grid"', 'sampler = "random"') + "[budget]\nn_trials = 4\n"

GAPS = {
    "infinite lr": (
        VALID.replace("lr = [0.001, 0.01]", "lr = [inf]"),
        "space.lr: must be a finite number",
    ),
    "infinite range end": (
        RANDOM.replace("lr = [0.001, 0.01]", "lr = { low = 0.001, high = inf }"),
        "space.lr.high: must be a finite number",
    ),
    "nan weight decay": (
        VALID.replace("lr = [0.001, 0.01]\n", "lr = [0.001]\nweight_decay = [nan]\n"),
        "space.weight_decay: must be a finite number",
    ),
    "nan fixed weight decay": (
        VALID.replace('arch = "resnet18"', 'arch = "resnet18"\nweight_decay = nan'),
        "fixed.weight_decay: must be a finite number",
    ),
    "3 demo images": (
        VALID.replace("[scale.demo]\n", "[scale.demo]\ndemo_images = 3\n"),
        "scale.demo.demo_images: must be >= 40",
    ),
    "demo images missing a split": (
        VALID.replace("[scale.demo]\n", "[scale.demo]\ndemo_images = 50\nval_fraction = 0.15\n"),
        "scale.demo.demo_images: 50 images give the validation split no Viral Pneumonia image",
    ),
    "zero demo epochs": (
        VALID.replace("epochs = 2", "epochs = 0"),
        "scale.demo.epochs: must be >= 1",
    ),
    "seed too large": (
        VALID.replace('sampler = "grid"', 'sampler = "grid"\nseed = 4294967296'),
        "study.seed: must be in [0, 2**32)",
    ),
    "negative seed": (
        VALID.replace('sampler = "grid"', 'sampler = "grid"\nseed = -1'),
        "study.seed: must be in [0, 2**32)",
    ),
    "bool for an integer": (
        VALID.replace("epochs = 2", "epochs = true"),
        "scale.demo.epochs: expected an integer, got True",
    ),
    "small image size": (
        VALID.replace("epochs = 5", "epochs = 5\nimage_size = 8"),
        "scale.full.image_size: must be >= 16",
    ),
}


@pytest.mark.parametrize("case", sorted(GAPS))
def test_validation_gaps_are_closed(tmp_path: Path, case: str) -> None:
    text, expected = GAPS[case]
    _refused(tmp_path, text, expected)


def test_demo_minimum_is_the_real_one() -> None:
    from trainer.config import DEMO_MIN_IMAGES
    from trainer.demo import class_counts

    # the fewest images that give every class one image in each of three splits
    assert min(class_counts(DEMO_MIN_IMAGES).values()) == 3
    assert min(class_counts(DEMO_MIN_IMAGES - 1).values()) < 3


def test_seed_override_is_checked_like_the_file(tmp_path: Path) -> None:
    from hpsearch.study.load import check_seed

    spec = _load(tmp_path, VALID)
    assert with_seed(spec, 7).seed == 7 and check_seed(2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32, True):
        with pytest.raises(UserError, match=r"^--seed: "):
            with_seed(spec, bad)


def test_spec_is_frozen_and_pickles(tmp_path: Path) -> None:
    import dataclasses
    import pickle

    spec = _load(tmp_path, RANDOM + "[stop]\npatience = 3\n")
    # it travels to spawned worker processes intact
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 3  # type: ignore[misc]  # the assignment a frozen dataclass refuses


def test_demo_config_has_one_set_of_defaults(tmp_path: Path) -> None:
    import inspect

    from trainer.config import DemoConfig
    from trainer.demo import write_demo_dataset

    spec = _load(tmp_path, VALID.replace("[scale.demo]\n", "[scale.demo]\ndemo_size = 96\n"))
    assert spec.demo_config() == DemoConfig(size=96)
    defaults = inspect.signature(write_demo_dataset).parameters
    assert (defaults["n"].default, defaults["size"].default, defaults["seed"].default) == (
        DemoConfig.images,
        DemoConfig.size,
        DemoConfig.seed,
    )


# -- scales ------------------------------------------------------------------------------


def test_scales_by_name(tmp_path: Path) -> None:
    text = VALID.replace('sampler = "grid"', 'sampler = "grid"\nscales = ["demo", "full", "mid"]')
    spec = _load(tmp_path, text + "[scale.mid]\nepochs = 9\nimage_size = 128\n")
    assert spec.scale_names == ("demo", "full", "mid")
    assert spec.train_values("mid")["epochs"] == 9
    assert spec.data_values("mid") == {"image_size": 128}
    # a scale asked for that the file does not define: one line listing those it does
    with pytest.raises(UserError, match=r"no scale 'huge' \(defined: demo, full, mid\)"):
        spec.train_values("huge")


def test_demo_settings_only_at_the_demo_scale(tmp_path: Path) -> None:
    text = VALID.replace("epochs = 5", "epochs = 5\ndemo_images = 100")
    _refused(tmp_path, text, "scale.full.demo_images: synthetic data settings belong to the demo")


# -- overrides ---------------------------------------------------------------------------


def test_overrides_replace_a_scales_values(tmp_path: Path) -> None:
    spec = _load(tmp_path, VALID)
    sets = ["epochs=10", "image_size=128", "pretrained=false", "weights_path=/x", "lr=1e-3"]
    with pytest.raises(UserError, match=r"^--set lr: is a search-space axis at scale full$"):
        with_overrides(spec, sets, "full")
    changed = with_overrides(spec, sets[:4], "full")
    assert changed.train_values("full")["epochs"] == 10
    assert changed.train_values("full")["pretrained"] is False
    assert changed.train_values("full")["weights_path"] == "/x"
    assert changed.data_values("full") == {"image_size": 128}
    # the record of what was set, and the other scale and the original untouched
    assert changed.overrides == {
        "epochs": 10,
        "image_size": 128,
        "pretrained": False,
        "weights_path": "/x",
    }
    assert changed.train_values("demo") == spec.train_values("demo")
    assert spec.train_values("full")["epochs"] == 5 and spec.overrides == {}


@pytest.mark.parametrize(
    ("item", "scale", "expected"),
    [
        ("epochs=0", "full", "--set epochs: must be >= 1 (got epochs=0)"),
        ("epochs=ten", "full", "--set epochs: expected an integer, got 'ten'"),
        ("epochs=true", "full", "--set epochs: expected an integer, got True"),
        ("lr=inf", "demo", "--set lr: is a search-space axis"),
        ("image_size=8", "full", "--set image_size: must be >= 16"),
        ("val_fraction=1.0", "full", "--set val_fraction: must be in [0, 1)"),
        ("demo_images=100", "full", "--set demo_images: synthetic data settings belong"),
        ("demo_images=3", "demo", "--set demo_images: must be >= 40"),
        ("speed=3", "full", "--set speed: not a training, data or demo setting"),
        ("epochs", "full", "--set epochs: expected KEY=VALUE"),
    ],
)
def test_bad_overrides_are_one_line(tmp_path: Path, item: str, scale: str, expected: str) -> None:
    spec = _load(tmp_path, VALID)
    with pytest.raises(UserError) as err:
        with_overrides(spec, [item], scale)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


# -- enqueued configurations ---------------------------------------------------------------

TEAM = "[[enqueue]]\nlr = 0.001\noptimizer = 'sgd'\n"


def test_enqueued_grid_point(tmp_path: Path) -> None:
    # the demo grid has no lr 0.001, so the demo scale gives its own (empty) list
    text = VALID.replace("epochs = 2\n", "epochs = 2\nenqueue = []\n") + TEAM
    spec = _load(tmp_path, text)
    assert spec.enqueued("full") == [{"lr": 0.001, "optimizer": "sgd"}]
    assert spec.enqueued("full")[0] in spec.grid_points("full")
    assert spec.enqueued("demo") == []


def test_scale_can_enqueue_its_own(tmp_path: Path) -> None:
    own = "[[scale.demo.enqueue]]\nlr = 0.01\noptimizer = 'adam'\n"
    spec = _load(tmp_path, VALID + TEAM + own)
    assert spec.enqueued("demo") == [{"lr": 0.01, "optimizer": "adam"}]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        # off the demo grid and no list of the demo scale's own
        (TEAM, "enqueue[0].lr: 0.001 is not one of 0.01 at scale demo"),
        ("[[enqueue]]\nlr = 0.01\n", "enqueue[0]: gives no optimizer"),
        ("[[enqueue]]\nlr = 0.01\noptimizer = 'sgd'\nepochs = 3\n", "enqueue[0].epochs: not one"),
        ("[[enqueue]]\nlr = '0.01'\noptimizer = 'sgd'\n", "enqueue[0].lr: expected a number"),
    ],
)
def test_bad_enqueued_configurations(tmp_path: Path, entry: str, expected: str) -> None:
    _refused(tmp_path, VALID + entry, expected)


def test_enqueued_range_values(tmp_path: Path) -> None:
    text = RANDOM.replace("lr = [0.001, 0.01]", "lr = { low = 0.001, high = 0.1, log = true }")
    text = text.replace("[scale.demo.space]\nlr = [0.01]\n", "")
    spec = _load(tmp_path, text + "[[enqueue]]\nlr = 0.01\noptimizer = 'adam'\n")
    assert spec.enqueued("full") == [{"lr": 0.01, "optimizer": "adam"}]
    entry = "[[enqueue]]\nlr = 0.5\noptimizer = 'adam'\n"
    _refused(tmp_path, text + entry, "enqueue[0].lr: 0.5 is outside [0.001, 0.1] at scale demo")


@pytest.mark.parametrize("name", ["grid", "random", "tpe"])
def test_shipped_studies_enqueue_the_teams_configuration(name: str) -> None:
    spec = load_study_file(ROOT / "studies" / f"{name}.toml")
    team = {"optimizer": "sgd", "lr": 1e-3, "momentum": 0.5, "weight_decay": 1e-2}
    assert spec.enqueued("full") == [{**team, "batch_size": 128}]


# -- early stopping and TPE settings ---------------------------------------------------------


def test_stop_table(tmp_path: Path) -> None:
    spec = _load(tmp_path, RANDOM + "[stop]\npatience = 3\nmin_delta = 'val_se'\n")
    assert (spec.stop.patience, spec.stop.min_delta) == (3, "val_se")
    spec = _load(tmp_path, RANDOM + "[stop]\npatience = 2\nmin_delta = 0\n")
    assert (spec.stop.patience, spec.stop.min_delta) == (2, 0.0)
    assert _load(tmp_path, RANDOM).stop is None


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ("[stop]\npatience = 0\n", "stop.patience: must be >= 1"),
        ("[stop]\npatience = 2\nmin_delta = -1\n", "stop.min_delta: expected a number >= 0"),
        ("[stop]\npatience = 2\nmin_delta = 'se'\n", "stop.min_delta: expected a number >= 0"),
        ("[stop]\nmin_delta = 0.1\n", "stop.patience: required"),
        ("[stop]\npatience = 2\nwait = 1\n", "stop.wait: unknown key"),
    ],
)
def test_bad_stop_table(tmp_path: Path, table: str, expected: str) -> None:
    _refused(tmp_path, RANDOM + table, expected)


def test_stop_is_refused_on_a_grid(tmp_path: Path) -> None:
    _refused(tmp_path, VALID + "[stop]\npatience = 2\n", "stop: a grid runs every point")


def test_tpe_table(tmp_path: Path) -> None:
    tpe = RANDOM.replace('sampler = "random"', 'sampler = "tpe"')
    assert _load(tmp_path, tpe).sampler_settings.constant_liar is True
    spec = _load(tmp_path, tpe + "[tpe]\nn_startup_trials = 0\nconstant_liar = false\n")
    assert (spec.sampler_settings.n_startup_trials, spec.sampler_settings.constant_liar) == (
        0,
        False,
    )
    _refused(tmp_path, tpe + "[tpe]\nn_startup_trials = -1\n", "tpe.n_startup_trials: must be >=")
    _refused(tmp_path, tpe + "[tpe]\nconstant_liar = 1\n", "tpe.constant_liar: expected true/false")
    _refused(tmp_path, RANDOM + "[tpe]\nn_startup_trials = 2\n", "tpe: settings of the tpe sampler")


MOMENTUM_GRID = """
[study]
sampler = "grid"
[fixed]
{fixed}
[space]
lr = [0.001, 0.01]
momentum = [0.5, 0.9]
{optimizer}
[scale.full]
epochs = 2
"""


def test_grid_points_that_would_train_alike_get_one_slot(tmp_path: Path) -> None:
    from hpsearch.run.kinds import Search

    path = tmp_path / "m.toml"
    path.write_text(MOMENTUM_GRID.format(fixed="", optimizer='optimizer = ["sgd", "adam"]'))
    spec = load_study_file(path)
    points = spec.grid_points("full")
    assert len(points) == 8
    # Adam ignores momentum: its two momentum values would train alike, so one of them,
    # the first in file order, is trained; SGD keeps both
    trained = [points[i] for i in spec.grid_indices("full")]
    assert spec.budget("full") == len(trained) == 6
    assert sorted((p["optimizer"], p["lr"], p["momentum"]) for p in trained) == [
        ("adam", 0.001, 0.5),
        ("adam", 0.01, 0.5),
        ("sgd", 0.001, 0.5),
        ("sgd", 0.001, 0.9),
        ("sgd", 0.01, 0.5),
        ("sgd", 0.01, 0.9),
    ]
    order = spec.grid_order("full")
    assert sorted(order) == spec.grid_indices("full")
    fixed = [Search(spec, "full").sampler(k)._fixed_params for k in range(6)]
    assert fixed == [points[i] for i in order]
    assert "2 grid point(s) skipped" in spec.grid_skipped("full")


def test_an_optimizer_fixed_outside_the_space_counts_too(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text(MOMENTUM_GRID.format(fixed='optimizer = "adam"', optimizer=""))
    assert load_study_file(path).budget("full") == 2  # momentum is no axis for Adam
    path.write_text(MOMENTUM_GRID.format(fixed='optimizer = "sgd"', optimizer=""))
    spec = load_study_file(path)
    assert spec.budget("full") == 4 and spec.grid_skipped("full") == ""


def test_the_team_grid_trains_36_distinct_configurations() -> None:
    spec = load_study_file(ROOT / "studies" / "grid.toml")
    points = spec.grid_points("full")
    order = spec.grid_order("full")
    assert len(points) == 48 and spec.budget("full") == len(order) == 36
    keys = {spec.training_key("full", points[i]) for i in order}
    assert len(keys) == 36  # no two slots train alike
    # and every one of the 48 points trains like one of them
    assert {spec.training_key("full", p) for p in points} == keys
    # the team's configuration still runs first
    assert points[order[0]] == spec.enqueued("full")[0]


def test_an_enqueued_point_that_is_skipped_runs_as_its_twin(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    text = MOMENTUM_GRID.format(fixed="", optimizer='optimizer = ["sgd", "adam"]')
    path.write_text(text + '[[enqueue]]\nlr = 0.01\nmomentum = 0.9\noptimizer = "adam"\n')
    spec = load_study_file(path)
    first = spec.grid_points("full")[spec.grid_order("full")[0]]
    assert first == {"lr": 0.01, "momentum": 0.5, "optimizer": "adam"}
