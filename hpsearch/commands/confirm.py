"""``hpsearch confirm``: train the search's top configurations again with new seeds.

The runs go to a companion study ``<name>.confirm`` on the same storage, with the same
claims, workers, heartbeats, checkpoints and resume as ``run``: each (configuration,
seed) is trained exactly once across workers and machines, and the same command again
resumes (or, when all are done, trains nothing); with a larger ``--seeds`` or ``--top``
it adds the missing runs and keeps those done. ``status`` and ``best`` then show the
confirmed ranking, and ``best --export`` ships one of the winner's confirmation runs.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.commands.options import add_storage_option, add_worker_options

if TYPE_CHECKING:
    import optuna

    from hpsearch.study.confirm import ConfirmRun
    from hpsearch.study.record import StudyRecord
    from hpsearch.study.spec import StudySpec


EXAMPLES = """\
examples:
  hpsearch confirm --study grid                        # top 3 configurations x 3 seeds
  hpsearch confirm --study grid --seeds 6 --workers 2  # later: 3 more seeds, runs kept
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
        "--seeds", type=int, default=3, help="new seeds per configuration (default 3)"
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
    from hpsearch.run.session import RunRequest, WorkerOptions, run_workers
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study.confirm import confirm_study_name, plan_runs
    from hpsearch.study.ranking import confirmed_ranking, format_ranking
    from hpsearch.study.stored import load_existing
    from hpsearch.trainer_api import default_trainer

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    check_worker_options(args)
    url = resolve_storage_url(args.storage)
    storage = open_storage(url, must_exist=True)
    search = load_existing(args.study, storage)
    record, spec = _search_settings(search)
    runs = plan_runs(search, spec.seed, args.top, args.seeds)
    workdir = Workdir.resolve(args.workdir, args.artifacts).make()
    plan = plan_devices(args.workers, args.devices)
    trainer = getattr(args, "trainer", None) or default_trainer()
    data_flag = args.data or record.data.root
    data = prepare_data(spec, record.scale, data_flag, workdir, trainer)
    companion, runs = _companion(search, storage, spec, record, runs, args)
    n_configs = len({run.source_trial for run in runs})
    print(
        f"confirming the top {n_configs} configuration(s) of {search.study_name!r} with "
        f"{args.seeds} new seed(s) each, in study {confirm_study_name(search.study_name)!r}"
    )
    kind = Confirmation(spec, record.scale, runs=runs)
    options = WorkerOptions.from_args(args, spec.timeout_s)
    code = run_workers(
        RunRequest(companion, storage, url, kind, data, workdir, trainer, plan, options)
    )
    ranking = confirmed_ranking(search)
    if ranking is not None:
        print(format_ranking(ranking, spec.metric))
        if len(ranking.configs) > 1 and not ranking.top_two_distinguished:
            seeds = max(len(c.values) for c in ranking.configs[:2])
            print(
                f"  more seeds narrow the paired interval: hpsearch confirm --study "
                f"{search.study_name} --top {args.top} --seeds {2 * seeds} adds runs and "
                "keeps those done"
            )
    return code


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
    args: argparse.Namespace,
) -> tuple[optuna.Study, tuple[ConfirmRun, ...]]:
    """The ``<name>.confirm`` study, created or joined, and its runs (slot k trains run k).

    A confirmation asked again with more seeds or a larger top grows: its runs keep their
    slots and the missing (configuration, seed) pairs are added after them.
    """
    from hpsearch.study.confirm import ConfirmRun, confirm_study_name, extend_runs
    from hpsearch.study.stored import create_or_load, existing_record

    name = confirm_study_name(search.study_name)
    top, seeds = args.top, args.seeds
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
