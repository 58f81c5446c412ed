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

The full grid (every axis of ``[space]``: 48 points) at a reduced scale, in two steps:

    python benchmarks/pruning.py record --epochs 12 --image-size 32 --workers 2 \
        --storage sqlite:///curves.db --workdir DIR
    python benchmarks/pruning.py replay --storage sqlite:///curves.db \
        --curves results/pruning_grid_curves.json --json results/pruning_grid_replay.json

``record`` runs the grid file's copy with the pruner off (``kind = "none"``) and the
demo scale's narrowed space dropped, on the demo scale's synthetic data, with ``--set``
overrides for the epochs and the image size; it resumes where it stopped when run
again. ``replay`` reads every finished trial's per-epoch validation accuracy back from
that study, in the grid's shuffled (slot) order, and feeds the curves to each pruner
hpsearch offers, the way Optuna sees them with 1, 4 and 8 workers: each worker trains
the lowest free slot, one epoch per time step, and a trial counts for the pruner once
it is complete. The promotion pruner (trials pause at rungs and the best go on) is
replayed with hpsearch's own rule, ``interleaved_promotion``. The shipped pruner's
``[scale.full.pruner]`` settings are scaled from the full scale's epochs to the recorded
ones. ``--orders N`` replays the shipped median pruner and the promotion pruner on N
shuffled orders of the slots too: how much the verdicts depend on the order.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's hpsearch and reports, not an installed one


def hpsearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "hpsearch.cli", *args]


def without_pruner(source: str) -> str:
    """The study file's text with its pruner switched off."""
    unpruned = re.sub(
        r'(\[pruner\]\n(?:#.*\n)*)kind = "[^"]+"\n(?:\w+ = .*\n)*',
        '[pruner]\nkind = "none"\n',
        source,
    )
    # Per-scale pruner settings belong to the pruner that is switched off.
    unpruned = re.sub(r"\[scale\.\w+\.pruner\]\n(?:#.*\n)*(?:\w+ = .*\n)*", "", unpruned)
    assert 'kind = "none"' in unpruned and ".pruner]" not in unpruned
    return unpruned


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
    if sys.argv[1:2] == ["record"]:
        return record_main(sys.argv[2:])
    if sys.argv[1:2] == ["replay"]:
        return replay_main(sys.argv[2:])
    demo_main()


def demo_main() -> None:
    import optuna

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "studies" / "grid.toml"))
    parser.add_argument("--workdir", help="shared workdir (demo data and cache are reused)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    source = Path(args.study).read_text()
    unpruned = without_pruner(source)
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


# -- the full grid at a reduced scale: record once, replay ---------------------------------

FULL_EPOCHS = 40
"""The full scale's epochs, against which ``[scale.full.pruner]`` settings are scaled."""


def grid_copy(source: str) -> str:
    """The grid file without pruner and without the demo scale's narrowed space."""
    text = without_pruner(source)
    text = re.sub(r"\[scale\.demo\.space\]\n(?:#.*\n)*(?:\w+ = .*\n)*", "", text)
    assert "[scale.demo.space]" not in text
    return text


def record_main(argv: list[str]) -> None:
    """Run (or resume) the full grid, pruner off, at the demo scale with overrides."""
    parser = argparse.ArgumentParser(prog="pruning.py record")
    parser.add_argument("--study", default=str(ROOT / "studies" / "grid.toml"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--name", default="grid-curves")
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args(argv)
    copy = Path(args.workdir) / "grid-curves.toml"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(grid_copy(Path(args.study).read_text()))
    cmd = hpsearch(
        "run", "--study", str(copy), "--name", args.name, "--scale", "demo",
        "--set", f"epochs={args.epochs}", "--set", f"image_size={args.image_size}",
        "--workers", str(args.workers), "--storage", args.storage,
        "--workdir", args.workdir, "--wandb", "off",
    )  # fmt: skip
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def read_curves(storage: str, name: str) -> list[dict]:
    """Every complete trial's curve, in slot (the grid's shuffled) order."""
    import optuna

    from hpsearch.trials.record import TrialRecord

    study = optuna.load_study(study_name=name, storage=storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    curves = [
        {
            "slot": TrialRecord.read(t).slot,
            "params": t.params,
            "values": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
        }
        for t in done
    ]
    return sorted(curves, key=lambda c: c["slot"])


def interleaved(curves: list[dict], pruner, workers: int) -> dict:
    """Epochs trained and the best kept when ``workers`` run the curves in slot order.

    Each time step every busy worker trains one epoch of its trial, reports it and asks
    the pruner; a finished or pruned trial is told at once and its worker takes the
    lowest slot not yet started. The pruner sees what Optuna's storage would hold then.
    """
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Hyperband picks a trial's bracket from a hash of the study name: fix the name.
        study = optuna.create_study(study_name="replay", direction="maximize", pruner=pruner)
    queue = list(range(len(curves)))
    running: list[tuple[optuna.Trial, int, int]] = []  # (trial, curve index, epochs done)
    epochs = 0
    while queue or running:
        while queue and len(running) < workers:
            trial = study.ask()
            trial.set_user_attr("index", queue[0])
            running.append((trial, queue.pop(0), 0))
        still = []
        for trial, index, done in running:
            values = curves[index]["values"]
            trial.report(values[done], done + 1)
            epochs, done = epochs + 1, done + 1
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
            elif done == len(values):
                study.tell(trial, max(values))
            else:
                still.append((trial, index, done))
        running = still
    best = study.best_trial
    return {"epochs": epochs, "best_index": best.user_attrs["index"], "best_value": best.value}


def interleaved_promotion(curves: list[dict], rungs, workers: int) -> dict:
    """Epochs trained and the best kept by the promotion pruner with ``workers`` workers.

    The rule is hpsearch's own (``hpsearch.study.promotion.promotable``). Each time step a
    free worker first promotes a paused trial the rule lets go on, else starts the lowest
    slot not yet started, else waits; a busy worker trains one epoch. A trial stops at its
    next rung (paused, its value there recorded) or at its last epoch (complete). When no
    worker is busy and nothing can start, the trials still paused are pruned.
    """
    from hpsearch.study.promotion import promotable

    epochs_each = max(len(c["values"]) for c in curves)
    stops = [*rungs.epochs_of(epochs_each), epochs_each]
    at_rung: list[dict[int, float]] = [{} for _ in stops[:-1]]
    paused: dict[int, int] = {}
    done = [0] * len(curves)
    busy: list[tuple[int, int] | None] = [None] * workers  # (curve index, stop epoch)
    started, epochs, complete = 0, 0, {}

    def next_job() -> tuple[int, int] | None:
        nonlocal started
        order = promotable(at_rung, paused, rungs.reduction_factor)
        if order:
            index = order[0]
            return index, stops[paused.pop(index) + 1]
        if started < len(curves):
            started += 1
            return started - 1, stops[0]
        return None

    while True:
        for w in range(workers):
            if busy[w] is None:
                busy[w] = next_job()
        if all(job is None for job in busy):
            break
        for w, job in enumerate(busy):
            if job is None:
                continue
            index, stop = job
            done[index] += 1
            epochs += 1
            if done[index] < stop:
                continue
            busy[w] = None
            values = curves[index]["values"]
            if stop == len(values):
                complete[index] = max(values)
            else:
                k = stops.index(stop)
                at_rung[k][index] = values[stop - 1]
                paused[index] = k
    best = max(complete, key=lambda i: (complete[i], -i))
    return {"epochs": epochs, "best_index": best, "best_value": complete[best]}


PROMOTIONS = ((1, 3), (1, 2), (1, 4), (2, 3))
"""(min_resource, reduction_factor) of the promotion pruner rows the replay shows."""


def grid_pruners(epochs: int, shipped: dict) -> dict:
    """The shipped pruner (its full-scale settings scaled to ``epochs``) and the others."""
    import optuna

    def scaled(steps: int) -> int:
        return max(1, math.ceil(steps * epochs / FULL_EPOCHS))

    warm = scaled(shipped["n_warmup_steps"])
    start = shipped["n_startup_trials"]
    third = max(1, epochs // 3)
    return {
        f"median, {start} start-up, warm-up {warm} (shipped, scaled)": (
            optuna.pruners.MedianPruner(start, warm)
        ),
        f"median, 5 start-up, warm-up {warm}": optuna.pruners.MedianPruner(5, warm),
        f"median, 5 start-up, warm-up {third}": optuna.pruners.MedianPruner(5, third),
        f"percentile 25, 5 start-up, warm-up {warm}": optuna.pruners.PercentilePruner(
            25.0, 5, warm
        ),
        f"percentile 40, 5 start-up, warm-up {third}": optuna.pruners.PercentilePruner(
            40.0, 5, third
        ),
        "successive halving (min 1 epoch, factor 3)": optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=3
        ),
        f"successive halving (min {third} epochs, factor 3)": (
            optuna.pruners.SuccessiveHalvingPruner(min_resource=third, reduction_factor=3)
        ),
        f"hyperband (1 to {epochs} epochs, factor 3)": optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=epochs, reduction_factor=3
        ),
    }


def replay_main(argv: list[str]) -> None:
    """Replay the recorded grid's curves through each pruner, with 1, 4 and 8 workers."""
    import optuna

    parser = argparse.ArgumentParser(prog="pruning.py replay")
    parser.add_argument("--storage", help="the recording's storage (else --curves is read)")
    parser.add_argument("--name", default="grid-curves")
    parser.add_argument("--curves", type=Path, required=True, help="curves JSON (written)")
    parser.add_argument("--json", type=Path, help="also write the replay's figures here")
    parser.add_argument("--n-val", type=int, default=121, help="validation images")
    parser.add_argument("--study", default=str(ROOT / "studies" / "grid.toml"))
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="replay only the points the grid trains today (one of each pair that would "
        "train alike, e.g. Adam's two momentum values), in the same slot order",
    )
    parser.add_argument("--orders", type=int, default=0, help="also replay N shuffled orders")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if args.storage:
        curves = read_curves(args.storage, args.name)
        args.curves.write_text(json.dumps(curves, indent=1) + "\n")
    curves = json.loads(args.curves.read_text())
    if args.distinct:
        from hpsearch.study.load import load_study_file

        spec = load_study_file(Path(args.study))
        points = spec.grid_points("full")
        trained = [points[i] for i in spec.grid_indices("full")]
        curves = [c for c in curves if c["params"] in trained]
    epochs = max(len(c["values"]) for c in curves)
    total = sum(len(c["values"]) for c in curves)
    tops = [max(c["values"]) for c in curves]
    winner = max(range(len(curves)), key=tops.__getitem__)
    # A kept best within one binomial standard error of the winner's accuracy is as good.
    p = tops[winner]
    se = math.sqrt(p * (1 - p) / args.n_val)
    print(
        f"{len(curves)} points x {epochs} epochs = {total} epochs; winner slot "
        f"{curves[winner]['slot']} {curves[winner]['params']} at {p:.4f} (SE {se:.4f})"
    )
    shipped = shipped_full(Path(args.study))
    rows = []
    from hpsearch.study.promotion import Rungs

    for workers in (1, 4, 8):
        runs = {
            label: (lambda pruner=pruner, workers=workers: interleaved(curves, pruner, workers))
            for label, pruner in grid_pruners(epochs, shipped).items()
        }
        for low, factor in PROMOTIONS:
            rungs = Rungs(low, factor)
            label = (
                f"promotion (min {low} epoch(s), factor {factor}: rungs "
                f"{', '.join(map(str, rungs.epochs_of(epochs)))})"
            )
            runs[label] = lambda rungs=rungs, workers=workers: interleaved_promotion(
                curves, rungs, workers
            )
        for label, replayed in runs.items():
            r = replayed()
            row = {
                "pruner": label,
                "workers": workers,
                "epochs": r["epochs"],
                "share": round(r["epochs"] / total, 3),
                "same_best": r["best_index"] == winner,
                "best_value": round(r["best_value"], 4),
                "within_se": p - r["best_value"] <= se,
            }
            rows.append(row)
            print(
                f"  {workers} worker(s)  {label}: {row['epochs']} epochs ({row['share']:.0%})"
                f", best {row['best_value']:.4f}, same: {row['same_best']}, "
                f"within SE: {row['within_se']}"
            )
    orders = shuffled_orders(curves, args.orders, epochs, shipped) if args.orders else []
    if args.json:
        figures = {
            "orders": orders,
            "points": len(curves),
            "epochs_each": epochs,
            "total_epochs": total,
            "winner": curves[winner],
            "winner_value": p,
            "standard_error": se,
            "shipped_full_settings": shipped,
            "rows": rows,
            "load_average_end": os.getloadavg()[0],
        }
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


def shuffled_orders(curves: list[dict], n: int, epochs: int, shipped: dict) -> list[dict]:
    """The shipped median pruner and the promotion pruner (min 1 epoch, factor 3) on ``n``
    random orders of the slots (seeds 0..n-1), with 1, 4 and 8 workers: the range of
    their shares, and in how many orders the winner's value was kept."""
    import random

    from hpsearch.study.promotion import Rungs

    total = sum(len(c["values"]) for c in curves)
    top = max(max(c["values"]) for c in curves)
    median_label, median = next(iter(grid_pruners(epochs, shipped).items()))
    replays = {
        median_label: lambda order, w: interleaved(order, median, w),
        "promotion (min 1 epoch, factor 3)": lambda order, w: interleaved_promotion(
            order, Rungs(1, 3), w
        ),
    }
    rows = []
    for label, replay_one in replays.items():
        for workers in (1, 4, 8):
            shares, kept = [], 0
            for seed in range(n):
                order = list(curves)
                random.Random(seed).shuffle(order)
                r = replay_one(order, workers)
                shares.append(r["epochs"] / total)
                kept += r["best_value"] >= top - 1e-12
            row = {"pruner": label, "workers": workers, "orders": n, "kept": kept,
                   "share_min": round(min(shares), 3), "share_max": round(max(shares), 3),
                   "share_mean": round(sum(shares) / n, 3)}  # fmt: skip
            rows.append(row)
            print(
                f"  {n} shuffled orders, {workers} worker(s)  {label}: "
                f"{min(shares):.0%}-{max(shares):.0%} of the epochs (mean "
                f"{row['share_mean']:.0%}), the winner's value kept in {kept} of {n}"
            )
    return rows


def shipped_full(study: Path) -> dict:
    """The study file's median pruner settings at the full scale."""
    from hpsearch.study.load import load_study_file

    pruner = load_study_file(study).pruner_at("full")
    assert pruner.kind == "median", pruner.kind
    return {"n_startup_trials": 5, "n_warmup_steps": 0, **pruner.settings}


if __name__ == "__main__":
    main()
