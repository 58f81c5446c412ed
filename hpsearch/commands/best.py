"""``hpsearch best``: the best trial; with ``--export DIR``, the final model and its report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpsearch.commands.options import add_artifacts_option

if TYPE_CHECKING:
    import optuna

    from hpsearch.study.ranking import Ranking

#: Shown at the end of ``hpsearch best --help``.
EXAMPLES = """\
examples:
  hpsearch best                              # the storage's only study
  hpsearch best --study grid --export final/ --retrain
  hpsearch best --study front --export final/ --trial 7   # a point of a Pareto front
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from hpsearch.commands.options import add_stored_study_options

    add_stored_study_options(parser, "may be left out when the storage holds one study")
    parser.add_argument(
        "--workdir", help="the search's working directory (default: ./hpsearch-work)"
    )
    add_artifacts_option(parser)
    parser.add_argument(
        "--data",
        help="this machine's copy of the study's dataset, when it is not at the path the "
        "study recorded (checked by content)",
    )
    parser.add_argument("--json", action="store_true", help="print the best trial as JSON")
    parser.add_argument(
        "--trial",
        type=int,
        metavar="N",
        help="this search trial instead of the best (a point of a Pareto front, say)",
    )
    parser.add_argument(
        "--export",
        metavar="DIR",
        help="write the final model (model.pt, model.onnx), predictions, metrics, report "
        "and model card into DIR",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="with --export: train again on train+validation with the best parameters for "
        "the best epoch count, instead of using the trial's checkpoint",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="with --export: replace the files of an export folder that is not empty",
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N"
    )


def run(args: argparse.Namespace) -> int:
    import optuna

    from hpsearch.export import best_summary
    from hpsearch.paths import Workdir
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study.ranking import format_ranking
    from hpsearch.study.stored import load_existing, resolve_study_name

    _check_flags(args)
    replaced = check_export_folder(Path(args.export), force=args.force) if args.export else []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(resolve_storage_url(args.storage), must_exist=True)
    study = load_existing(resolve_study_name(storage, args.study), storage)
    workdir = Workdir.resolve(args.workdir, args.artifacts)
    if args.trial is None and _front_only(study, args):
        return 0
    summary = best_summary(study, workdir, args.trial)
    ranking = _confirmation(study, summary)
    if args.export is None:
        if args.json:
            print(json.dumps(summary, indent=2, default=str))
        else:
            _print_summary(summary)
            print(f"  {summary['selection']}")
            if ranking is not None:
                print(format_ranking(ranking, summary["metric"] or "value"))
        return 0

    from hpsearch.export.pipeline import export_best  # imports torch: only to export

    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    if replaced:
        log(_force_line(args.export, replaced))
    result = export_best(
        study,
        Path(args.export),
        workdir,
        retrain=args.retrain,
        device=args.device,
        data=_relocated_data(study, workdir, args.data),
        log=log,
        chosen=args.trial,
    )
    if result.png_message:
        print(result.png_message, file=sys.stderr)
    stored = _store_export(study, result.files, workdir) if workdir.shared else None
    if args.json:
        print(
            json.dumps(
                {**summary, "export": str(result.out_dir), "metrics": result.metrics},
                indent=2,
                default=str,
            )
        )
        return 0
    _print_export(summary, result)
    if stored:
        print(stored)
    return 0


def _print_export(summary: dict[str, Any], result: Any) -> None:
    m = result.metrics
    low, high = m["accuracy_ci95"]
    print(f"exported trial {summary['trial']} of study {summary['study']} to {result.out_dir}")
    print(f"  files: {', '.join(p.name for p in result.files)}")
    print(
        f"  {m['split']} split ({m['n']} images): accuracy {m['accuracy']:.4f} "
        f"(95 % CI {low:.4f}-{high:.4f}), macro AUC {_fmt(m['roc_auc']['macro'])}"
    )
    print(f"  ONNX vs PyTorch: max |dp| {m['onnx']['max_abs_prob_diff']:.2e}")
    for note in m.get("notes", []):
        print(f"  NOTE: {note}")


def _relocated_data(study: Any, workdir: Any, data_flag: str | None) -> Any:
    """The study's data read from ``--data`` (None: from the recorded path)."""
    if not data_flag:
        return None
    from hpsearch.export import data_config
    from hpsearch.run.dataprep import relocate_data
    from hpsearch.study.record import StudyRecord
    from trainer.data import load_data

    record = StudyRecord.read(study)
    config = data_config(study, workdir)  # a study without a record is a UserError here
    assert record is not None
    return load_data(relocate_data(config, record.data, data_flag))


def _store_export(study: Any, files: tuple[Path, ...], workdir: Any) -> str:
    """Store the exported files as artifacts of the best trial in the shared location."""
    from hpsearch.storage.artifacts import open_artifact_store, store_files
    from hpsearch.trials import best_search_trial

    best = best_search_trial(study)
    store_files(study, list(files), open_artifact_store(workdir), trial=best)
    number = best.number if best is not None else None
    return f"stored the exported files as artifacts of trial {number} in {workdir.shared}"


def check_export_folder(folder: Path, *, force: bool) -> list[str]:
    """Check ``--export DIR`` before any work: a folder that can be made and written, and
    empty unless ``force``. Returns the names already in it (those ``force`` replaces)."""
    from trainer.errors import UserError

    where = f"--export {folder}"
    for parent in [folder, *folder.parents]:
        if parent.exists():
            if not parent.is_dir():
                what = "is" if parent == folder else f"is under {parent}, which is"
                raise UserError(f"{where} {what} a file, not a folder")
            break
    # The folders made for this check are removed again (the export makes them anew), so
    # an export that fails later, e.g. on a bad checkpoint, leaves nothing behind.
    made = [p for p in [folder, *folder.parents] if not os.path.lexists(p)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".hpsearch-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"{where}: cannot write there ({err.strerror or err})") from None
    finally:
        for path in made:  # deepest first
            with contextlib.suppress(OSError):
                path.rmdir()
    existing = [] if made else sorted(p.name for p in folder.iterdir())
    if existing and not force:
        raise UserError(
            f"{where} already holds {len(existing)} file(s) ({_names(existing)}); "
            "pass --force to replace them, or choose an empty folder"
        )
    return existing


def _force_line(folder: str, names: list[str]) -> str:
    """What ``--force`` does to the files already in the export folder: those an export
    writes are replaced, any other is kept."""
    from hpsearch.export.files import written_by_export

    replaced = [n for n in names if written_by_export(n)]
    kept = [n for n in names if not written_by_export(n)]
    parts = [f"replacing {_names(replaced)}"] if replaced else []
    parts += [f"keeping {_names(kept)} (not files an export writes)"] if kept else []
    return f"--force: in {folder}, " + "; ".join(parts)


def _names(names: list[str], shown: int = 5) -> str:
    more = f", and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _print_summary(s: dict[str, Any]) -> None:
    data = "SYNTHETIC demo data" if s["synthetic"] else "real data"
    print(f"study {s['study']} ({data}): best trial {s['trial']}")
    print(f"  {s['metric']} (validation) = {_fmt(s['value'])}, {s['direction']}")
    params = ", ".join(f"{k}={v}" for k, v in sorted(s["params"].items()))
    print(f"  params: {params or '(none)'}")
    print(f"  best epoch {s['best_epoch']} of {s['epochs_run']} run")
    for key, value in s["validation_metrics"].items():
        print(f"  {key:<28} {_fmt(value) if isinstance(value, float) else value}")
    state = "" if s["checkpoint_exists"] else "  (missing: use --export DIR --retrain)"
    print(f"  checkpoint: {s['checkpoint']}{state}")


def _check_flags(args: argparse.Namespace) -> None:
    from trainer.errors import UserError

    if args.retrain and not args.export:
        raise UserError("--retrain needs --export DIR (it trains the model to export)")
    if args.data and not args.export:
        raise UserError("--data needs --export DIR (it is the data the export evaluates on)")


def _front_only(study: optuna.Study, args: argparse.Namespace) -> bool:
    """A study of several objectives has a Pareto front, not one best: list it (True), or
    refuse an export that names no point of it. False for a study of one objective."""
    from hpsearch.study.record import StudyRecord
    from hpsearch.study.summary import format_front, front_summary
    from trainer.errors import UserError

    front = front_summary(study, StudyRecord.read(study))
    if front is None:
        return False
    if args.export:
        raise UserError(
            f"study {study.study_name!r} has several objectives: name the point of its "
            "Pareto front to export with --trial N (`hpsearch best` without --export lists it)"
        )
    print(json.dumps(front, indent=2, default=str) if args.json else "\n".join(
        [f"study {study.study_name}", *format_front(front)]
    ))  # fmt: skip
    return True


def _confirmation(study: optuna.Study, summary: dict[str, Any]) -> Ranking | None:
    """The confirmed ranking (None without one), added to ``summary`` with the race and
    the expected-best curve."""
    from hpsearch.study.race import stored_race
    from hpsearch.study.ranking import confirmed_ranking
    from hpsearch.study.summary import expected_best_summary

    ranking = confirmed_ranking(study)
    summary["ranking"] = ranking.to_dict() if ranking else None
    summary["race"] = stored_race(study)
    summary["expected_best"] = expected_best_summary(study, ranking)
    return ranking
