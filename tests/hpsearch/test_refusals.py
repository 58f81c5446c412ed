"""Bad input to data demo, data check, predict, run, status and best: exit 2, one line on
stderr, no traceback, nothing created or changed in the working folder or the storage.

Each table holds a command's bad inputs as :class:`~tests.hpsearch.refusals.Refusal`
cases; add a row to cover another input, or a table (and a test like these) to cover
another command. The checks themselves are in ``tests/hpsearch/refusals.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hpsearch.conftest import PG_URL
from tests.hpsearch.refusals import Refusal, assert_refused, in_process, in_subprocess
from tests.hpsearch.study_checks import require_postgres
from tests.hpsearch.test_model_file_checks import (
    BAD_ENTRIES,
    BAD_FORMATS,
    Change,
    write_model_dir,
)
from tests.trainer._imagefiles import make_folder_per_class, write_image

Setup = Callable[[Path], Any]


def _file(name: str, data: bytes = b"not what it should be") -> Setup:
    def setup(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return setup


def _folder(name: str) -> Setup:
    return lambda folder: (folder / name).mkdir(parents=True)


def _link(name: str, target: str) -> Setup:
    return lambda folder: os.symlink(target, folder / name)


def _all(*setups: Setup) -> Setup:
    def setup(folder: Path) -> None:
        for step in setups:
            step(folder)

    return setup


@pytest.fixture
def run_here(capsys) -> Callable[..., str]:
    """``run_here(case, folder, **values)``: the case checked in this process."""
    runner = in_process(capsys)
    return lambda case, folder, **values: assert_refused(case, folder, runner, **values)


# -- hpsearch data demo -------------------------------------------------------------------

DEMO = ("data", "demo", "--out", "{dir}/demo")

DATA_DEMO = {
    "n 0": Refusal((*DEMO, "--n", "0"), "--n 0: the demo needs at least 4 images"),
    "n -3": Refusal((*DEMO, "--n", "-3"), "--n -3: "),
    "size 0": Refusal((*DEMO, "--size", "0"), "--size 0: must be between 32 and 1024 pixels"),
    "size 100000": Refusal((*DEMO, "--size", "100000"), "--size 100000: "),
    "seed -1": Refusal((*DEMO, "--seed", "-1"), "--seed -1: must be in [0, 2**32)"),
    "seed 2**32": Refusal((*DEMO, "--seed", str(2**32)), "--seed 4294967296: "),
    "workers 0": Refusal((*DEMO, "--workers", "0"), "--workers 0: must be at least 1"),
    "out under a file": Refusal(
        ("data", "demo", "--out", "{dir}/f/sub"),
        "--out {dir}/f/sub: cannot be made: {dir}/f is not a folder",
        setup=_file("f"),
    ),
    "out a file": Refusal(
        ("data", "demo", "--out", "{dir}/f"), "exists and is not a folder", setup=_file("f")
    ),
    "out a link loop": Refusal(
        ("data", "demo", "--out", "{dir}/loop"),
        "exists and is not a folder",
        setup=_link("loop", "loop"),
    ),
    "out a folder of other files": Refusal(
        ("data", "demo", "--out", "{dir}/mine"),
        "is not empty and holds no SYNTHETIC.txt",
        setup=_file("mine/keep.txt"),
    ),
    "out under /proc": Refusal(
        ("data", "demo", "--out", "/proc/hpsearch-demo/x", "--n", "40", "--size", "32"),
        "cannot write the demo dataset",
    ),
}


@pytest.mark.parametrize("case", sorted(DATA_DEMO))
def test_data_demo_refuses(case: str, tmp_path: Path, run_here) -> None:
    run_here(DATA_DEMO[case], tmp_path)


# -- hpsearch data check ------------------------------------------------------------------


def _dataset(extra: str | None = None, without: str | None = None) -> Setup:
    def setup(folder: Path) -> None:
        root = make_folder_per_class(folder / "data", per_class=1)
        if extra:
            write_image(root / extra / "x.png")
        if without:
            for path in (root / without).iterdir():
                path.unlink()
            (root / without).rmdir()

    return setup


DATA_CHECK = {
    "missing": Refusal(("data", "check", "{dir}/nope"), "does not exist"),
    "missing, json": Refusal(("data", "check", "{dir}/nope", "--json"), "does not exist"),
    "a file": Refusal(("data", "check", "{dir}/f.png"), "is not a folder", setup=_file("f.png")),
    "empty folder": Refusal(
        ("data", "check", "{dir}/empty"), "no dataset layout recognised", setup=_folder("empty")
    ),
    "link loop": Refusal(
        ("data", "check", "{dir}/loop"), "symbolic link loop", setup=_link("loop", "loop")
    ),
    "dangling link": Refusal(
        ("data", "check", "{dir}/gone"),
        "symbolic link to a missing",
        setup=_link("gone", "/nonexistent-hpsearch-data"),
    ),
    "unknown class folder": Refusal(
        ("data", "check", "{dir}/data"), "maps to no class", setup=_dataset(extra="tuberculosis")
    ),
    "class missing": Refusal(
        ("data", "check", "{dir}/data", "--decode"),
        "no images for class(es) normal",
        setup=_dataset(without="normal"),
    ),
}


@pytest.mark.parametrize("case", sorted(DATA_CHECK))
def test_data_check_refuses(case: str, tmp_path: Path, run_here) -> None:
    run_here(DATA_CHECK[case], tmp_path)


# -- hpsearch predict ---------------------------------------------------------------------

PREDICT = ("predict", "--model", "{dir}/model", "--images", "{dir}/test")
PREDICT_ARGV = (*PREDICT, "--out", "{dir}/submission.csv", "--device", "cpu")


def _images(folder: Path) -> None:
    write_image(folder / "test" / "test_0.png", (32, 32))


def _model(change: Change | None = None) -> Setup:
    return lambda folder: write_model_dir(folder / "model", change)


PREDICT_CASES = {
    **{
        f"model: {name}": Refusal(PREDICT_ARGV, expected, setup=_all(_model(change), _images))
        for name, (change, expected) in {**BAD_ENTRIES, **BAD_FORMATS}.items()
    },
    "model folder missing": Refusal(PREDICT_ARGV, "does not exist", setup=_images),
    "model folder without model.pt": Refusal(
        PREDICT_ARGV, "has no model.pt", setup=_all(_file("model/model.onnx"), _images)
    ),
    "images missing": Refusal(PREDICT_ARGV, "image folder", setup=_model()),
    "no readable image": Refusal(
        PREDICT_ARGV, "no readable image", setup=_all(_model(), _file("test/test_0.png"))
    ),
    "out a folder": Refusal(
        PREDICT_ARGV, "is a folder", setup=_all(_model(), _images, _folder("submission.csv"))
    ),
    "out a link loop": Refusal(
        PREDICT_ARGV,
        "is a symbolic link that leads nowhere",
        setup=_all(_model(), _images, _link("submission.csv", "submission.csv")),
    ),
    "out under a file": Refusal(
        (*PREDICT, "--out", "{dir}/f/s.csv"), "which is a file", setup=_all(_model(), _images)
    ),
    "out in a missing folder": Refusal(
        (*PREDICT, "--out", "{dir}/no/s.csv"), "does not exist", setup=_all(_model(), _images)
    ),
    "batch size 0": Refusal(
        (*PREDICT_ARGV, "--batch-size", "0"), "--batch-size 0", setup=_all(_model(), _images)
    ),
}
PREDICT_CASES["out under a file"] = Refusal(
    (*PREDICT, "--out", "{dir}/f/s.csv"),
    "which is a file",
    setup=_all(_model(), _images, _file("f")),
)


@pytest.mark.parametrize("case", sorted(PREDICT_CASES))
def test_predict_refuses(case: str, tmp_path: Path, run_here) -> None:
    run_here(PREDICT_CASES[case], tmp_path)


# -- hpsearch run, status and best on a bad storage URL ----------------------------------

#: Secrets the URLs below carry; none may show.
SECRETS = ("Hk3userpw", "Hk3sslpw", "Hk3querypw", "Hk3tail")
#: The PostgreSQL database the ``pg`` cases point at; its content must not change.
PG_STORAGE = "postgresql://postgres@{pg}/{db}"

#: case -> (URL, text of the error line, setup, what the case needs)
STORAGE_URLS: dict[str, tuple[str, str, Setup | None, tuple[str, ...]]] = {
    "malformed": ("not a url", "malformed storage URL", None, ()),
    "unsupported backend": ("mongodb://hp:Hk3userpw@db.example/x", "unsupported storage", None, ()),
    "sqlite folder missing": ("sqlite:///{dir}/no/such/s.db", "does not exist", None, ()),
    "sqlite in memory": ("sqlite://", "is in memory", None, ()),
    "sqlite a folder": ("sqlite:///{dir}/adir", "is a folder", _folder("adir"), ()),
    "sqlite not a database": (
        "sqlite:///{dir}/junk.db",
        "is not a SQLite database",
        _file("junk.db"),
        (),
    ),
    "unparseable with a password": (
        "postgresql://hp:Hk3userpw@h:notaport/x",
        "malformed storage URL",
        None,
        (),
    ),
    "connection string": (
        "host=127.0.0.1 password=Hk3userpw dbname=test",
        "malformed storage URL",
        None,
        (),
    ),
    "refused": (
        "postgresql://hp:Hk3userpw@127.0.0.1:1/x?sslpassword=Hk3sslpw",
        "cannot open storage",
        None,
        (),
    ),
    "unknown host": (
        "postgres://hp@no-such-host.invalid/x?password=Hk3querypw",
        "cannot open storage",
        None,
        (),
    ),
    "raw @ in the password": (
        "postgresql://postgres:Hk3userpw@Hk3tail@{pg}/{db}",
        "write each '@' of the password as %40",
        None,
        ("pg",),
    ),
    "unknown option": (
        "postgresql://postgres@{pg}/{db}?password=Hk3querypw&bogus_option=1",
        'invalid connection option "bogus_option"',
        None,
        ("pg",),
    ),
    "bad sslmode": (
        "postgresql+psycopg://postgres@{pg}/{db}?sslmode=bogus&password=Hk3querypw",
        "invalid sslmode value",
        None,
        ("pg",),
    ),
    "port not a number": (
        "postgres://postgres@{pg}/{db}?port=x&password=Hk3querypw",
        "non-integer port",
        None,
        ("pg",),
    ),
    "database missing": (
        "postgresql://postgres:Hk3userpw@{pg}/hpsearch_no_such_database",
        "does not exist",
        None,
        ("pg",),
    ),
}
#: The read-only commands also refuse a SQLite file that is not there (a typo).
READ_ONLY_URLS = {
    "sqlite file missing": ("sqlite:///{dir}/typo.db", "no study storage at", None, ()),
}
COMMANDS = {
    "run": ("run", "--study", "grid", "--wandb", "off", "--storage"),
    "status": ("status", "--storage"),
    # (--export DIR is checked before the storage, and made to check it: see
    # test_reliability_commands.py::test_bad_export_destination_is_one_line_before_any_work)
    "best": ("best", "--storage"),
}


def _storage_case(command: str, case: str) -> Refusal:
    url, expected, setup, needs = {**STORAGE_URLS, **READ_ONLY_URLS}[case]
    return Refusal(
        (*COMMANDS[command], url),
        expected,
        setup=setup,
        hidden=SECRETS,
        storage=PG_STORAGE if "pg" in needs else None,
        needs=needs,
    )


STORAGE_CASES = [(command, case) for command in COMMANDS for case in STORAGE_URLS] + [
    (command, case) for command in ("status", "best") for case in READ_ONLY_URLS
]


@pytest.fixture(scope="module")
def pg_study() -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database holding one study, dropped afterwards: the ``pg`` and
    ``db`` placeholders. Empty when the server is down (those cases are then skipped)."""
    try:
        require_postgres()
    except pytest.skip.Exception:
        yield {}
        return
    import optuna
    import psycopg

    name = f"hpsearch_refusals_{uuid.uuid4().hex[:8]}"
    host = PG_URL.split("@", 1)[1].rsplit("/", 1)[0]
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql+psycopg://postgres@{host}/{name}"
        study = optuna.create_study(study_name="kept", storage=url)
        study.set_user_attr("note", "must stay as it is")
        study.add_trial(optuna.trial.create_trial(value=1.0))
        yield {"pg": host, "db": name}
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.parametrize(("command", "case"), STORAGE_CASES)
def test_bad_storage_url_is_refused(
    command: str, case: str, tmp_path: Path, run_here, pg_study: dict[str, str]
) -> None:
    run_here(_storage_case(command, case), tmp_path, **pg_study)


# -- the real command line, in a subprocess, one case of each command ------------------------

SUBPROCESS_CASES = {
    "data demo, seed -1": DATA_DEMO["seed -1"],
    "data check, link loop": DATA_CHECK["link loop"],
    "predict, mean nan": PREDICT_CASES["model: mean nan"],
    "run, refused": _storage_case("run", "refused"),
    "status, unknown host": _storage_case("status", "unknown host"),
    "best, sqlite file missing": _storage_case("best", "sqlite file missing"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SUBPROCESS_CASES))
def test_the_command_line_refuses_in_one_line(case: str, tmp_path: Path) -> None:
    assert_refused(SUBPROCESS_CASES[case], tmp_path, in_subprocess())
