"""Pruning: the demo grid with its pruner against the same grid without one.

Runs ``hpsearch run --study grid`` (demo scale, SYNTHETIC data) twice on fresh
storages — as shipped, and with ``[pruner] kind = "none"`` — and prints the epochs
trained, the wall time and the summed trial time, the best validation accuracy and
whether the same grid point wins. The demo data and its cache are made once, before
either run, so neither run's time includes them.

Then, as a replay (no training): the unpruned run's per-epoch curves are fed, in the
order the grid ran them, to other Optuna pruners, to show what each would have pruned
and whether it would have kept the winner. Pruning decisions depend only on the curves
seen so far, so for one worker this is what those pruners would have done.

    python benchmarks/pruning.py [--study studies/grid.toml] [--workdir DIR] [--json FILE]
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
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hpsearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpsearch.cli", *args]


def run_study(study: Path, workdir: Path, db: Path) -> dict:
    import optuna

    cmd = hpsearch(
        "run", "--study", str(study), "--name", study.stem, "--storage", f"sqlite:///{db}",
        "--workdir", str(workdir), "--wandb", "off",
    )  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    study_obj = optuna.load_study(study_name=study.stem, storage=f"sqlite:///{db}")
    trials = [t for t in study_obj.trials if t.state.name in ("COMPLETE", "PRUNED")]
    best = study_obj.best_trial
    return {
        "wall_s": round(wall, 1),
        "trials_s": round(
            sum((t.datetime_complete - t.datetime_start).total_seconds() for t in trials), 1
        ),
        "trials": len(trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "epochs": sum(int(t.user_attrs.get("epochs_run", 0)) for t in trials),
        "best_value": round(best.value, 4),
        "best_params": best.params,
        "curves": [
            {
                "params": t.params,
                "values": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
                "state": t.state.name,
            }
            for t in sorted(trials, key=lambda t: t.number)
        ],
    }


def replay(curves: list[dict], pruners: dict) -> dict:
    """Epochs each pruner would have trained on these curves, and the best it would keep."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    total = sum(len(c["values"]) for c in curves)
    winner = max(curves, key=lambda c: max(c["values"]))["params"]
    out = {}
    for label, pruner in pruners.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(direction="maximize", pruner=pruner)
        epochs = 0
        for curve in curves:
            trial = study.ask()
            trial.set_user_attr("params", json.dumps(curve["params"], sort_keys=True))
            state = TrialState.COMPLETE
            for epoch, value in enumerate(curve["values"], 1):
                epochs += 1
                trial.report(value, epoch)
                if trial.should_prune():
                    state = TrialState.PRUNED
                    break
            if state is TrialState.PRUNED:
                study.tell(trial, state=state)
            else:
                study.tell(trial, max(curve["values"]))
        kept = study.best_trial.user_attrs["params"] == json.dumps(winner, sort_keys=True)
        out[label] = {"epochs": epochs, "share": round(epochs / total, 3), "same_best": kept}
    return out


def main() -> None:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "studies" / "grid.toml"))
    parser.add_argument("--workdir", help="shared workdir (demo data and cache are reused)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    source = Path(args.study).read_text()
    unpruned = re.sub(
        r'(\[pruner\]\n(?:#.*\n)*)kind = "[^"]+"\n(?:\w+ = .*\n)*',
        '[pruner]\nkind = "none"\n',
        source,
    )
    # Per-scale pruner settings belong to the pruner that is switched off.
    unpruned = re.sub(r"\[scale\.\w+\.pruner\]\n(?:#.*\n)*(?:\w+ = .*\n)*", "", unpruned)
    assert 'kind = "none"' in unpruned and ".pruner]" not in unpruned
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        workdir = Path(args.workdir) if args.workdir else tmp / "work"
        (tmp / "pruned.toml").write_text(source)
        (tmp / "unpruned.toml").write_text(unpruned)
        # Make the demo data and its cache first: a one-trial run of a throwaway study.
        warm = hpsearch(
            "run", "--study", str(tmp / "pruned.toml"), "--name", "warm-up", "--n-trials", "1",
            "--storage", f"sqlite:///{tmp / 'warm.db'}", "--workdir", str(workdir),
            "--wandb", "off",
        )  # fmt: skip
        subprocess.run(warm, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        results = {}
        for name in ("unpruned", "pruned"):
            results[name] = run_study(tmp / f"{name}.toml", workdir, tmp / f"{name}.db")
            shown = {k: v for k, v in results[name].items() if k != "curves"}
            print(name, json.dumps(shown), flush=True)
    pruned, full = results["pruned"], results["unpruned"]
    share = pruned["epochs"] / full["epochs"]
    same = pruned["best_params"] == full["best_params"]
    print(
        f"pruning trained {pruned['epochs']} of {full['epochs']} epochs ({share:.0%}), "
        f"wall {pruned['wall_s']} s vs {full['wall_s']} s (trials {pruned['trials_s']} s vs "
        f"{full['trials_s']} s); best {pruned['best_value']} vs {full['best_value']} "
        f"(validation accuracy, SYNTHETIC demo data); same best configuration: {same}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("unpruned curves (validation accuracy per epoch, in the order run):")
    for curve in full["curves"]:
        print(f"  {curve['params']}: {' '.join(f'{v:.3f}' for v in curve['values'])}")
    pruners = {
        "median, 2 startup, warm-up 1 (shipped)": optuna.pruners.MedianPruner(2, 1),
        "median, 3 startup, warm-up 1": optuna.pruners.MedianPruner(3, 1),
        "median, 1 startup, warm-up 1": optuna.pruners.MedianPruner(1, 1),
        "percentile 25, 2 startup, warm-up 1": optuna.pruners.PercentilePruner(25.0, 2, 1),
        "successive halving (min 1 epoch, factor 3)": optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3
        ),
        "hyperband (1 to 4 epochs, factor 3)": optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(len(c["values"]) for c in full["curves"])
        ),
    }
    replays = replay(full["curves"], pruners)
    print("replay of other pruners on those curves (no training):")
    for label, r in replays.items():
        print(f"  {label}: {r['epochs']} epochs ({r['share']:.0%}), same best: {r['same_best']}")
    if args.json:
        results["replay"] = replays
        results["load_average_end"] = os.getloadavg()[0]
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
