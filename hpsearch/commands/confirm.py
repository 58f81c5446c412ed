"""``hpsearch confirm``: train the search's top configurations again with new seeds.

By default the configurations race (:mod:`hpsearch.study.race`): each round gives every
configuration still in the race the next seed of one shared list, and one the leader
beats on paired seeds leaves, until one is left or ``--max-seeds``. ``--seeds S`` is
the fixed design instead: every configuration S seeds.

The runs go to a companion study ``<name>.confirm`` on the same storage, with the same
claims, workers, heartbeats, checkpoints and resume as ``run``: each (configuration,
seed) is trained exactly once across workers and machines, and the same command again
resumes (a race where it stopped; when all is done it trains nothing); with a larger
``--seeds``, ``--max-seeds`` or ``--top`` it adds the missing runs and keeps those done.
``status`` and ``best`` then show the confirmed ranking, and ``best --export`` ships one
of the winner's confirmation runs.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.commands.options import add_storage_option, add_worker_options

if TYPE_CHECKING:
    import optuna

    from hpsearch.run.session import RunRequest
    from hpsearch.study.confirm import ConfirmRun
    from hpsearch.study.race import RaceState
    from hpsearch.study.record import StudyRecord
    from hpsearch.study.spec import StudySpec


EXAMPLES = """\
examples:
  hpsearch confirm --study grid                        # top 3 race, up to 8 seeds each
  hpsearch confirm --study grid --seeds 3 --workers 2  # fixed: top 3 x 3 seeds
  hpsearch confirm --study grid --storage postgresql://hp@db/studies   # on each machine
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--study", required=True, help="a study stored in the storage (the search to confirm)"
    )
    parser.add_argument(
        "--top", type=int, default=3, help="configurations to confirm, best first (default 3)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        help="fixed design: this many new seeds per configuration (default: race them)",
    )
    parser.add_argument(
        "--max-seeds",
        type=int,
        default=8,
        help="a race ends undecided after this many seeds per configuration (default 8)",
    )
    add_storage_option(parser)
    parser.add_argument(
        "--data", help="the dataset folder, where it is on this machine (default: as recorded)"
    )
    add_worker_options(parser, trials="runs")


def run(args: argparse.Namespace) -> int:
    """Load the search, plan the runs, prepare the data, launch, print the ranking."""
    import optuna

    from hpsearch.commands.options import check_worker_options
    from hpsearch.paths import Workdir
    from hpsearch.run.dataprep import prepare_data
    from hpsearch.run.kinds import Confirmation
    from hpsearch.run.plan import plan_devices
    from hpsearch.run.session import RunRequest, WorkerOptions
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study.confirm import confirm_study_name, plan_runs
    from hpsearch.study.stored import load_existing
    from hpsearch.trainer_api import default_trainer
    from trainer.errors import UserError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_worker_options(args)
    if args.max_seeds < 2:
        raise UserError(f"--max-seeds must be >= 2, not {args.max_seeds}")
    url = resolve_storage_url(args.storage)
    storage = open_storage(url, must_exist=True)
    search = load_existing(args.study, storage)
    record, spec = _search_settings(search)
    race = _race_state(search, storage, args)
    seeds = args.seeds if race is None else max(args.seeds or 0, race.seeds)
    if seeds is None:  # a fixed confirmation asked again without --seeds: as it was
        seeds = _stored(search, storage)["seeds"]
    runs = plan_runs(search, spec.seed, args.top, seeds)  # refuses bad values, writes nothing
    workdir = Workdir.resolve(args.workdir, args.artifacts).make()
    trainer = getattr(args, "trainer", None) or default_trainer()
    data = prepare_data(spec, record.scale, args.data or record.data.root, workdir, trainer)
    options = WorkerOptions.from_args(args, spec.timeout_s)
    request = RunRequest(
        search, storage, url, Confirmation(spec, record.scale), data, workdir, trainer,
        plan_devices(args.workers, args.devices), options,
    )  # fmt: skip
    if race is not None:
        return _race(request, record, spec, args, race)
    companion, runs = _companion(search, storage, spec, record, runs, args.top, seeds)
    n_configs = len({run.source_trial for run in runs})
    print(
        f"confirming the top {n_configs} configuration(s) of {search.study_name!r} with "
        f"{seeds} new seed(s) each, in study {confirm_study_name(search.study_name)!r}"
    )
    code = _train(request, companion, runs)
    _print_ranking(search, spec.metric, args.top)
    return code


def _train(request: RunRequest, companion: optuna.Study, runs: tuple[ConfirmRun, ...]) -> int:
    """Train the confirmation's runs that are not done yet (workers, claims, resume)."""
    from hpsearch.run.kinds import Confirmation
    from hpsearch.run.session import run_workers

    kind = Confirmation(request.kind.spec, request.kind.scale, runs=runs)
    return run_workers(dataclasses.replace(request, study=companion, kind=kind))


def _print_ranking(search: optuna.Study, metric: str, top: int, raced: bool = False) -> None:
    """The confirmed ranking, and how to go on when the top two are not told apart yet
    (a race goes on with a larger --max-seeds: it refuses --seeds)."""
    from hpsearch.study.ranking import confirmed_ranking, format_ranking

    ranking = confirmed_ranking(search)
    if ranking is None:
        return
    print(format_ranking(ranking, metric))
    if len(ranking.configs) > 1 and not ranking.top_two_distinguished:
        seeds = max(len(c.values) for c in ranking.configs[:2])
        more = f"--max-seeds {2 * seeds}" if raced else f"--top {top} --seeds {2 * seeds}"
        print(
            f"  more seeds narrow the paired interval: hpsearch confirm --study "
            f"{search.study_name} {more} adds runs and keeps those done"
        )


def _stored(search: optuna.Study, storage: Any) -> dict[str, Any]:
    """The plan of the search's confirmation ({} when there is none yet)."""
    from hpsearch.study.confirm import confirm_study_name
    from hpsearch.study.stored import existing_record

    existing = existing_record(confirm_study_name(search.study_name), storage)
    return dict(existing.confirm or {}) if existing is not None else {}


def _race_state(search: optuna.Study, storage: Any, args: argparse.Namespace) -> RaceState | None:
    """The race to run or continue; None for the fixed design. A confirmation keeps the
    design it was started with."""
    from hpsearch.study.confirm import top_configurations
    from hpsearch.study.race import RaceState
    from trainer.errors import UserError

    plan = _stored(search, storage)
    if plan.get("race") is not None:
        if args.seeds is not None:
            raise UserError(
                f"the confirmation of {search.study_name!r} is a race: run it again without "
                "--seeds (a larger --max-seeds lets it go on)"
            )
        race = RaceState.from_dict(plan["race"])
        race.max_seeds = max(race.max_seeds, args.max_seeds)
        return race
    if args.seeds is not None or plan:
        return None
    if args.top < 1:
        raise UserError(f"--top must be >= 1, not {args.top}")
    contenders = [t.number for t in top_configurations(search, args.top)]
    return RaceState(max_seeds=args.max_seeds, contenders=contenders)


def _race(
    request: RunRequest,
    record: StudyRecord,
    spec: StudySpec,
    args: argparse.Namespace,
    race: RaceState,
) -> int:
    """Round after round: train the next seed of each contender, judge, record."""
    from hpsearch.study.confirm import plan_runs
    from hpsearch.study.race import describe_round
    from hpsearch.study.ranking import confirmed_ranking

    search, storage = request.study, request.storage
    print(
        f"racing {len(race.contenders)} configuration(s) of {search.study_name!r} on paired "
        f"seeds, up to {race.max_seeds} seed(s) each"
    )
    while not race.finished:
        seeds = race.seeds
        wanted = tuple(
            r
            for r in plan_runs(search, spec.seed, args.top, seeds)
            if r.source_trial in race.contenders
        )
        companion, runs = _companion(search, storage, spec, record, wanted, args.top, seeds, race)
        code = _train(request, companion, runs)
        ranking = confirmed_ranking(search)
        if code != 0 or ranking is None:
            return code or 1
        print(describe_round(race.judge(ranking, seeds)))
        _companion(search, storage, spec, record, runs, args.top, seeds, race)
    print(race.summary())
    _print_ranking(search, spec.metric, args.top, raced=True)
    return 0


def _search_settings(search: optuna.Study) -> tuple[StudyRecord, StudySpec]:
    """The searched study's record and its study file, as that run used them."""
    from hpsearch.study.load import load_study_file, with_overrides, with_seed
    from hpsearch.study.record import StudyRecord
    from trainer.errors import UserError

    record = StudyRecord.read(search)
    if record is None or record.confirm is not None:
        raise UserError(f"study {search.study_name!r} is not a search made by hpsearch run")
    path = Path(record.spec_file)
    if not path.is_file():
        raise UserError(
            f"study file {path} of {search.study_name!r} is not on this machine: "
            "confirm needs it (its search space and settings)"
        )
    spec = with_seed(load_study_file(path), record.seed)
    if record.overrides:
        items = [f"{k}={_toml(v)}" for k, v in record.overrides.items()]
        spec = with_overrides(spec, items, record.scale)
    return record, spec


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _companion(
    search: optuna.Study,
    storage: Any,
    spec: StudySpec,
    record: StudyRecord,
    runs: tuple[ConfirmRun, ...],
    top: int,
    seeds: int,
    race: RaceState | None = None,
) -> tuple[optuna.Study, tuple[ConfirmRun, ...]]:
    """The ``<name>.confirm`` study, created or joined, and its runs (slot k trains run k).

    A confirmation asked again with more seeds or a larger top grows: its runs keep their
    slots and the missing (configuration, seed) pairs are added after them. A race's
    state is part of the plan, so the same command continues it.
    """
    from hpsearch.study.confirm import ConfirmRun, confirm_study_name, extend_runs
    from hpsearch.study.stored import create_or_load, existing_record

    name = confirm_study_name(search.study_name)
    existing = existing_record(name, storage)
    if existing is not None and existing.confirm is not None:
        done = tuple(ConfirmRun(**r) for r in existing.confirm["runs"])
        grown = extend_runs(done, runs)
        top = max(top, existing.confirm["top"])
        seeds = max(seeds, existing.confirm["seeds"])
        if len(grown) > len(done):
            print(
                f"adding {len(grown) - len(done)} run(s) to the {len(done)} of {name!r} "
                "(those done are kept)"
            )
        runs = grown
    plan = {
        "search": search.study_name,
        "top": top,
        "seeds": seeds,
        "runs": [dataclasses.asdict(r) for r in runs],
        "race": race.to_dict() if race is not None else None,
    }
    companion = dataclasses.replace(
        record, n_slots=len(runs), grid_order=None, pruner="none", confirm=plan
    )
    if existing is not None and existing.confirm is not None and existing.confirm != plan:
        # The grown plan replaces the stored one; everything else of the record is kept,
        # so joining still checks the data and settings as for any rerun. Grow from one
        # machine, then start the others with the same command.
        import optuna

        grown_record = dataclasses.replace(existing, n_slots=len(runs), confirm=plan)
        grown_record.write(optuna.load_study(study_name=name, storage=storage))
    return create_or_load(name, storage, spec, companion), runs
