"""``hpsearch report``: the study part of the report (history, importances, curves, trials).

Works at any time, also while the study runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hpsearch.commands.options import add_artifacts_option

#: Shown at the end of ``hpsearch report --help``.
EXAMPLES = """\
examples:
  hpsearch report --out report/              # the storage's only study
  hpsearch report --study tpe --out report/ --storage postgresql://me@db/studies
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from hpsearch.commands.options import add_stored_study_options

    add_stored_study_options(parser, "may be left out when the storage holds one study")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for report.html")
    add_artifacts_option(parser)


def run(args: argparse.Namespace) -> int:
    import optuna

    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.storage.optuna_api import sharing_trials
    from hpsearch.study.ranking import confirmed_seed_sd
    from hpsearch.study.record import StudyRecord
    from hpsearch.study.stored import load_existing, resolve_study_name
    from reports.report import REPORT_FILE, report_title, study_sections, write_report
    from reports.study import is_synthetic, trials_table

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(resolve_storage_url(args.storage), must_exist=True)
    # The report reads trials only: Optuna's figures get them without a deep copy each.
    study = load_existing(resolve_study_name(storage, args.study), sharing_trials(storage))
    out = Path(args.out)
    record = StudyRecord.read(study)
    settings = record.to_dict() if record else {}
    synthetic = is_synthetic(settings)
    sections, figures = study_sections(study, settings, confirmed_seed_sd(study))
    png = write_report(
        out,
        report_title(study.study_name, synthetic, "Search report"),
        sections,
        figures,
        synthetic=synthetic,
    )
    trials_table(study).to_csv(out / "trials.csv", index=False)
    if png.message():
        print(png.message(), file=sys.stderr)
    pngs = f", {len(png.written)} PNG figure(s)" if png.written else ""
    print(f"wrote {out / REPORT_FILE}, {out / 'trials.csv'}{pngs}")
    _store(study, [out / REPORT_FILE, out / "trials.csv"], args.artifacts)
    return 0


def _store(study: object, files: list[Path], flag: str | None) -> None:
    """With an artifact location, the report is also stored there, as study artifacts."""
    from hpsearch.paths import ArtifactLocation
    from hpsearch.storage.artifacts import open_artifact_store, store_files

    location = ArtifactLocation.resolve(flag)
    if location is None:
        return
    store = open_artifact_store(location.store)
    store_files(study, files, store)
    print(f"stored {', '.join(f.name for f in files)} in {location.root}")
