"""``hpsearch status``: trials by state, best so far, time per trial, ETA."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

#: Shown at the end of ``hpsearch status --help``.
EXAMPLES = """\
examples:
  hpsearch status                            # every study in ./hpsearch.db
  hpsearch status --study grid --storage sqlite:///runs/hpsearch.db
  hpsearch status --study grid --json
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from hpsearch.commands.options import add_stored_study_options

    add_stored_study_options(parser, "default: every study in the storage")
    parser.add_argument("--json", action="store_true", help="every trial as JSON")


def run(args: argparse.Namespace) -> int:
    import optuna

    from hpsearch.storage import open_storage, redact, resolve_storage_url
    from hpsearch.study.stored import load_existing
    from hpsearch.study.summary import trial_record

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_storage_url(args.storage)
    storage = open_storage(url, must_exist=True)
    if args.study:
        names = [args.study]
    else:
        names = optuna.get_all_study_names(storage)
        if not names:
            print("[]" if args.json else f"no studies in {redact(url)}")
            return 0
    out = []
    for name in names:
        study = load_existing(name, storage)
        status, ranking = _collect(study)
        if args.json:
            status["trials"] = [trial_record(t) for t in study.get_trials(deepcopy=False)]
            out.append(status)
        else:
            _print_all(status, study, ranking)
    if args.json:
        print(json.dumps(out if len(out) != 1 else out[0], indent=2, default=str))
    return 0


def _collect(study: optuna.Study) -> tuple[dict[str, Any], Any]:
    """Everything ``status`` says of one study (its ``--json`` object), and its confirmed
    ranking (None without one)."""
    from hpsearch.study.race import stored_race
    from hpsearch.study.ranking import confirmed_ranking
    from hpsearch.study.record import StudyRecord
    from hpsearch.study.stopping import STOP_ATTR
    from hpsearch.study.summary import (
        cost_summary,
        expected_best_summary,
        feasibility,
        front_summary,
        study_status,
    )

    record = StudyRecord.read(study)
    status = study_status(study, record.n_slots if record else None)
    status["metric"] = record.metric if record else None
    status["scale"] = record.scale if record else None
    status["synthetic"] = record.data.synthetic if record else None
    status["stopped"] = study.user_attrs.get(STOP_ATTR)
    ranking = confirmed_ranking(study)
    status["ranking"] = ranking.to_dict() if ranking else None
    status["expected_best"] = expected_best_summary(study, ranking)
    status["race"] = stored_race(study)
    status["constraints"] = feasibility(study, record)
    status["cost"] = cost_summary(study)
    status["pareto"] = front_summary(study, record)
    return status, ranking


def _print_all(status: dict[str, Any], study: optuna.Study, ranking: Any) -> None:
    from hpsearch.study.ranking import format_ranking
    from hpsearch.study.summary import (
        format_cost_summary,
        format_expected_best,
        format_feasibility,
        format_front,
        format_trials_table,
    )

    _print_status(status, study, format_trials_table)
    if status["stopped"]:
        print(f"  {status['stopped']} (hpsearch run --n-trials N starts more on purpose)")
    for line in [
        format_feasibility(status["constraints"]),
        *format_cost_summary(status["cost"]),
        *format_front(status["pareto"]),
        format_expected_best(status["expected_best"]),
    ]:
        if line is not None:
            print(line)
    if ranking is not None:
        print(format_ranking(ranking, status.get("metric") or "value"))


def _print_status(
    status: dict[str, Any],
    study: optuna.Study,
    format_trials_table: Callable[[optuna.Study, str], str],
) -> None:
    states = ", ".join(f"{k} {v}" for k, v in sorted(status["states"].items())) or "no trials"
    if status.get("copied"):
        states += f"; {status['copied']} copied from another study (--from-study), not counted"
    data = "SYNTHETIC demo data" if status.get("synthetic") else "real data"
    total = status["n_slots"] if status["n_slots"] is not None else "?"
    print(
        f"study {status['study']} ({status.get('scale')} scale, {data}): "
        f"{status['finished']}/{total} finished; {states}"
    )
    if status["mean_seconds_per_trial"] is not None:
        eta = status["eta_seconds"]
        print(
            f"  {status['mean_seconds_per_trial']:.1f} s per finished trial"
            + (f", ETA {eta / 60:.1f} min at {status['running']} running" if eta else "")
        )
    if status["remaining"] and not status.get("running"):
        print(
            f"  no trial is running: {status['remaining']} of {total} left; "
            "`hpsearch run` with the same arguments continues the study"
        )
    best = status["best"]
    if best:
        metric = status.get("metric") or "value"
        print(
            f"  best: trial {best['number']} {metric}={best['value']:.4f} "
            f"(validation) params {best['params']}"
        )
    print(format_trials_table(study, status.get("metric") or "value"))
