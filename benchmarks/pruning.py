"""Pruning: the demo grid with its pruner against the same grid without one.

Runs ``hpsearch run --study grid`` (demo scale, SYNTHETIC data) twice on fresh
storages — as shipped, and with ``[pruner] kind = "none"`` — and prints the epochs
trained, the wall time, the best validation accuracy and whether the same grid point
wins.

    python benchmarks/pruning.py [--study studies/grid.toml] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_study(study: Path, workdir: Path, db: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "hpsearch.cli",
        "run",
        "--study",
        str(study),
        "--name",
        study.stem,
        "--storage",
        f"sqlite:///{db}",
        "--workdir",
        str(workdir),
        "--wandb",
        "off",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    import optuna

    study_obj = optuna.load_study(study_name=study.stem, storage=f"sqlite:///{db}")
    trials = [t for t in study_obj.trials if t.state.name in ("COMPLETE", "PRUNED")]
    best = study_obj.best_trial
    return {
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "epochs": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
        "best_value": round(best.value, 4),
        "best_params": best.params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "studies" / "grid.toml"))
    parser.add_argument("--workdir", help="shared workdir (demo data and cache are reused)")
    args = parser.parse_args()
    source = Path(args.study).read_text()
    unpruned = re.sub(
        r'(\[pruner\]\n(?:#.*\n)*)kind = "[^"]+"\n(?:\w+ = .*\n)*',
        '[pruner]\nkind = "none"\n',
        source,
    )
    assert 'kind = "none"' in unpruned
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        workdir = Path(args.workdir) if args.workdir else tmp / "work"
        (tmp / "pruned.toml").write_text(source)
        (tmp / "unpruned.toml").write_text(unpruned)
        results = {}
        for name in ("unpruned", "pruned"):
            results[name] = run_study(tmp / f"{name}.toml", workdir, tmp / f"{name}.db")
            print(name, json.dumps(results[name]), flush=True)
    pruned, full = results["pruned"], results["unpruned"]
    share = pruned["epochs"] / full["epochs"]
    same = pruned["best_params"] == full["best_params"]
    print(
        f"pruning trained {pruned['epochs']} of {full['epochs']} epochs ({share:.0%}), "
        f"wall {pruned['wall_s']} s vs {full['wall_s']} s; best {pruned['best_value']} vs "
        f"{full['best_value']} (validation accuracy, SYNTHETIC demo data); "
        f"same best configuration: {same}; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
