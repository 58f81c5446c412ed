"""``hpsearch report``: the study part of the report (history, importances, curves, trials).

Works at any time, also while the study runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", required=True, help="study name in the storage")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for report.html")
    parser.add_argument("--storage", help="storage URL (default: $HPSEARCH_STORAGE or sqlite)")


def run(args: argparse.Namespace) -> int:
    import optuna

    from hpsearch.record import StudyRecord
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study import load_existing
    from reports.report import REPORT_FILE, report_title, study_sections, write_report
    from reports.study import study_info, trials_table

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(resolve_storage_url(args.storage), must_exist=True)
    study = load_existing(args.study, storage)
    out = Path(args.out)
    record = StudyRecord.read(study)
    settings = record.to_dict() if record else {}
    synthetic = study_info(study, settings)["synthetic"]
    sections, figures = study_sections(study, settings)
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
    return 0
