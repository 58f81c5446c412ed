"""``hpsearch run``: run (or resume) a study with N workers on one storage."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.commands.options import add_storage_option, add_worker_options

if TYPE_CHECKING:
    from hpsearch.study.spec import StudySpec

#: Shown at the end of ``hpsearch run --help``.
EXAMPLES = """\
examples:
  hpsearch run --study grid --n-trials 2     # two demo trials now; the same command goes on
  hpsearch run --study tpe --data ~/data/xray-data --scale modest --devices 0,1
  hpsearch run --study tpe --data ~/data/xray-data --name tpe-full --from-study tpe
"""


def configure(parser: argparse.ArgumentParser) -> None:
    _study_options(parser)
    _warm_start_options(parser)
    add_worker_options(parser)


def _study_options(parser: argparse.ArgumentParser) -> None:
    """The study file, its name in the storage, the data, and changes to the file."""
    parser.add_argument(
        "--study",
        required=True,
        metavar="FILE",
        help="the study FILE to run: grid, random or tpe (shipped in studies/) or a path to a "
        ".toml; the study it makes in the storage takes the file's name (or --name), which "
        "status, best and report then take as their --study",
    )
    parser.add_argument("--name", help="study name in the storage (default: the file's name)")
    add_storage_option(parser)
    parser.add_argument(
        "--data", help="dataset folder (real data, full scale); default: synthetic demo data"
    )
    parser.add_argument(
        "--scale",
        help="a scale the study file defines (default: demo without --data, full with it)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="replace a fixed or scale value, e.g. --set epochs=10 --set pretrained=false "
        "(repeatable; recorded in the study)",
    )
    parser.add_argument("--seed", type=int, help="override the study file's seed")


def _warm_start_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-study",
        metavar="NAME",
        help="copy the completed trials of study NAME (same storage, or --from-storage) into "
        "this random or TPE study before it starts, as prior knowledge for its sampler; "
        "copied trials show as 'copied' and are never this study's best",
    )
    parser.add_argument(
        "--from-storage",
        metavar="URL",
        help="the storage holding --from-study's study (default: this study's storage)",
    )
    parser.add_argument(
        "--adopt",
        action="store_true",
        help="take over a study of --name that hpsearch did not make (made with Optuna "
        "itself, say): it becomes this search, its trials kept, if its direction and every "
        "trial's parameters fit; without --adopt such a study is refused",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="give trials that failed on every attempt their attempts back, and run them",
    )


def run(args: argparse.Namespace) -> int:
    """Parse, load the study, prepare the data, launch the workers, summarise."""
    import optuna

    from hpsearch.commands.options import check_worker_options
    from hpsearch.paths import Workdir, removed_if_refused, safe_name
    from hpsearch.run.dataprep import prepare_data
    from hpsearch.run.kinds import Search
    from hpsearch.run.plan import plan_devices
    from hpsearch.run.preflight import check_setup
    from hpsearch.run.session import RunRequest, WorkerOptions, run_workers
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study.stored import (
        build_record,
        check_joinable,
        create_or_load,
        spec_for_existing,
    )
    from hpsearch.study.warmstart import check_can_warm_start
    from hpsearch.trainer_api import default_trainer
    from trainer.errors import UserError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.from_storage and not args.from_study:
        raise UserError("--from-storage names where --from-study's study is: give --from-study")
    check_worker_options(args)
    spec, scale = _load_spec(args)
    name = safe_name(args.name or spec.name)
    url = resolve_storage_url(args.storage)
    workdir = Workdir.resolve(args.workdir, args.artifacts)
    plan = plan_devices(args.workers, args.devices)
    trainer = getattr(args, "trainer", None) or default_trainer()
    # Everything that can be checked is checked before anything is written: a server is
    # opened now (an unreachable one fails before the data is prepared), an existing
    # study is compared with this search, and a SQLite file is created only once the
    # data has loaded. Folders made for the data are removed if it is refused.
    storage = _open_server_storage(url)
    if args.from_study:
        check_can_warm_start(spec)
    check_setup(spec, scale, workdir)
    if args.data and trainer.check_data is not None:
        trainer.check_data(Path(args.data).absolute())
    check_joinable(name, storage or _existing_sqlite(url), spec, scale, adopt=args.adopt)
    with removed_if_refused(workdir.root, *([workdir.shared] if workdir.shared else [])):
        data = prepare_data(spec, scale, args.data, workdir.make(), trainer)
    storage = storage or open_storage(url)
    spec = spec_for_existing(name, storage, spec, scale)
    if spec.grid_every_point:
        print(
            f"study {name!r} was made with a slot for every grid point, also those that "
            "train like another: it keeps them"
        )
    record = build_record(spec, scale, data.record(), str(workdir.root))
    source = _warm_start_source(args, storage, name, url)  # found before the study is made
    study = create_or_load(name, storage, spec, record, adopt=args.adopt)
    if source is not None:
        _copy_trials(source, study, storage, spec, scale)
    kind = Search(spec, scale, data.counts.get("val", 0), follow_stop_rule=args.n_trials is None)
    options = WorkerOptions.from_args(args, spec.timeout_s)
    return run_workers(RunRequest(study, storage, url, kind, data, workdir, trainer, plan, options))


def _load_spec(args: argparse.Namespace) -> tuple[StudySpec, str]:
    """The study file with ``--seed`` and ``--set`` applied, and the scale to run."""
    from hpsearch.study.load import find_study_file, load_study_file, with_overrides, with_seed

    spec = load_study_file(find_study_file(args.study))
    scale = args.scale or ("full" if args.data else "demo")
    spec.ensure_scale(scale)
    if args.seed is not None:
        spec = with_seed(spec, args.seed)
    if args.overrides:
        spec = with_overrides(spec, args.overrides, scale)
    return spec, scale


def _warm_start_source(args: argparse.Namespace, storage: Any, name: str, url: str) -> Any:
    """The study ``--from-study`` names (and how to call it), or None without the flag."""
    if not args.from_study:
        return None
    from hpsearch.study.warmstart import open_source

    return open_source(args.from_study, storage, args.from_storage, target=name, target_url=url)


def _copy_trials(source: Any, study: Any, storage: Any, spec: StudySpec, scale: str) -> None:
    from hpsearch.study.warmstart import copy_completed_trials

    study_from, label = source
    print(copy_completed_trials(study_from, study, storage, spec, scale, label).describe())


def _existing_sqlite(url: str) -> Any:
    """The storage of a SQLite URL whose file exists already (to compare a study there
    with this search before the data is prepared); None when there is no file yet."""
    from sqlalchemy.engine import make_url

    from hpsearch.storage import normalize_url, open_storage

    database = make_url(normalize_url(url)).database or ""
    return open_storage(url, inspect_only=True) if Path(database).is_file() else None


def _open_server_storage(url: str) -> Any:
    """The storage when it is a database server; None for SQLite, after checking its folder
    (the file itself is created only once the data has loaded)."""
    from sqlalchemy.engine import make_url

    from hpsearch.storage import check_sqlite_file, normalize_url, open_storage

    normalized = normalize_url(url)
    if make_url(normalized).get_backend_name() == "sqlite":
        check_sqlite_file(normalized)
        return None
    return open_storage(url)
