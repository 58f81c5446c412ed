"""Study summaries shared by ``run`` (at the end) and ``status``."""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.study.ranking import companion_study
from hpsearch.study.record import StudyRecord
from hpsearch.trials import (
    best_search_trial,
    first_value,
    is_feasible,
    is_multi_objective,
    no_best_reason,
    pareto_front,
    search_trials,
    trial_rows,
    trial_seconds,
)
from hpsearch.trials.applicable import IGNORED_BY_OPTIMIZER, applies
from hpsearch.trials.constraints import broken, from_record
from hpsearch.trials.cost import StudyCost, format_cost, study_cost
from hpsearch.trials.expected_best import expected_best
from hpsearch.trials.record import START, TrialRecord
from hpsearch.trials.rows import shown_state

if TYPE_CHECKING:
    from hpsearch.study.ranking import Ranking


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    """One trial as plain JSON-able data."""
    first = first_value(t)  # a study of several objectives: the first (all in "values")
    value = first if first is not None and math.isfinite(first) else None
    record = TrialRecord.read(t)
    return {
        "number": t.number,
        "state": t.state.name.lower(),
        "params": t.params,
        "value": value,
        "values": t.values,
        "seconds": trial_seconds(t),
        "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "user_attrs": {k: v for k, v in t.user_attrs.items() if k != START},
        "slot": record.slot,
        "attempt": record.attempt,
        "config": record.config,
    }


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's best complete trial, copied trials (``--from-study``) apart."""
    return best_search_trial(study)


def study_status(study: optuna.Study, n_slots: int | None = None) -> dict[str, Any]:
    """Counts by state, best trial, mean seconds per finished trial, ETA; trials copied
    from another study (``--from-study``) are counted apart, under ``copied``.

    The ETA (None when no trial is running, none has finished, or none is left) shares
    the trials left among the running ones, each taking the finished trials' mean.
    """
    trials = search_trials(study)
    states = Counter(shown_state(t).lower() for t in trials)
    copied = len(study.get_trials(deepcopy=False)) - len(trials)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    durations = [s for s in map(trial_seconds, finished) if s is not None]
    mean_s = sum(durations) / len(durations) if durations else None
    remaining = None if n_slots is None else max(0, n_slots - len(finished))
    running = states.get("running", 0)
    eta = None
    if mean_s is not None and remaining and running:
        eta = mean_s * remaining / running
    best = best_trial(study)
    return {
        "study": study.study_name,
        "direction": ", ".join(d.name.lower() for d in study.directions),
        "n_slots": n_slots,
        "states": dict(states),
        "copied": copied,
        "finished": len(finished),
        "remaining": remaining,
        "running": running,
        "mean_seconds_per_trial": mean_s,
        "eta_seconds": eta,
        "best": trial_record(best) if best else None,
        "checked_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def cost_summary(study: optuna.Study) -> dict[str, Any]:
    """What the search cost and what pruning saved (:mod:`hpsearch.trials.cost`), and
    what its confirmation (``<name>.confirm``) cost, None without one."""
    companion = companion_study(study)
    confirmation = study_cost(companion.get_trials(deepcopy=False)) if companion else None
    return {
        "search": study_cost(search_trials(study)).to_dict(),
        "confirmation": confirmation.to_dict() if confirmation and confirmation.trials else None,
    }


def format_cost_summary(summary: dict[str, Any]) -> list[str]:
    """The cost lines of ``status`` and the report."""
    lines = format_cost(StudyCost.from_dict(summary["search"]), "search")
    if summary.get("confirmation"):
        lines += format_cost(StudyCost.from_dict(summary["confirmation"]), "confirmation")
    return lines


def feasibility(study: optuna.Study, record: StudyRecord | None) -> dict[str, Any] | None:
    """The study's ``[constraints]`` and which complete trials keep them (validation
    split, at each trial's selected epoch); None for a study without constraints."""
    constraints = from_record(record.constraints) if record is not None else ()
    if not constraints:
        return None
    complete = search_trials(study, (TrialState.COMPLETE,))
    return {
        "constraints": [c.describe() for c in constraints],
        "feasible": [t.number for t in complete if is_feasible(t)],
        "infeasible": {t.number: broken(t) for t in complete if not is_feasible(t)},
    }


def front_summary(study: optuna.Study, record: StudyRecord | None) -> dict[str, Any] | None:
    """A study of several objectives: its objectives and directions, and its Pareto
    front (validation split), one entry per trial; None for a study of one."""
    if not is_multi_objective(study):
        return None
    names = list(record.objectives) if record is not None else []
    if len(names) != len(study.directions) or not all(isinstance(n, str) for n in names):
        names = [f"objective {i}" for i in range(len(study.directions))]
    return {
        "objectives": names,
        "directions": [d.name.lower() for d in study.directions],
        "front": [
            {"number": t.number, "values": dict(zip(names, t.values, strict=True)),
             "params": t.params}
            for t in pareto_front(study)
        ],
    }  # fmt: skip


def format_front(summary: dict[str, Any] | None) -> list[str]:
    """The lines of the Pareto front (empty for a study of one objective)."""
    if summary is None:
        return []
    how = ", ".join(
        f"{n} ({'up' if d == 'maximize' else 'down'})"
        for n, d in zip(summary["objectives"], summary["directions"], strict=True)
    )
    lines = [
        f"  Pareto front ({how}; validation split; pruning is off for several "
        f"objectives): {len(summary['front'])} trial(s)"
    ]
    for point in summary["front"]:
        values = ", ".join(f"{k}={_short(v)}" for k, v in point["values"].items())
        lines.append(f"    trial {point['number']}: {values}  {point['params']}")
    return lines


def format_feasibility(summary: dict[str, Any] | None) -> str | None:
    """One line: the constraints and the complete trials that keep them."""
    if summary is None:
        return None
    rules = "; ".join(summary["constraints"])
    feasible, infeasible = summary["feasible"], summary["infeasible"]
    total = len(feasible) + len(infeasible)
    if total and not feasible:
        return f"  constraints ({rules}, validation): no feasible trial among {total} complete"
    listed = ", ".join(map(str, feasible[:12])) + (" ..." if len(feasible) > 12 else "")
    which = f" (trials {listed})" if feasible else ""
    count = f"{len(feasible)} of {total} complete trials feasible"
    return f"  constraints ({rules}, validation): {count}{which}"


def expected_best_summary(study: optuna.Study, ranking: Ranking | None) -> dict[str, Any] | None:
    """The expected best value against the number of trials
    (:mod:`hpsearch.trials.expected_best`) over the study's own complete trials with a
    finite value; None without one. The standard error of its read-out is the standard
    deviation over the seeds of the confirmed leader when the study has a confirmation
    with 2 or more runs of it, else that of the search's top values. None for a study of
    several objectives (its trials have no one value to take the best of)."""
    if is_multi_objective(study):
        return None
    values = [
        float(t.value)
        for t in search_trials(study, (TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    seed_sd = ranking.configs[0].std if ranking is not None and ranking.configs else None
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    curve = expected_best(values, maximize, seed_sd=seed_sd)
    return curve.to_dict() if curve is not None else None


def format_expected_best(summary: dict[str, Any] | None) -> str | None:
    """One line of the read-out, or None when there is nothing to say."""
    if summary is None or summary["within_one_se_at"] is None:
        return None
    n = summary["n"][-1]  # the curve's last point is the study's number of trials
    return (
        f"  expected best: {summary['within_one_se_at']} of these {n} trials reach within "
        f"one standard error ({summary['se']:.4f}, {summary['se_source']}) of the best"
    )


def format_trials_table(study: optuna.Study, metric: str) -> str:
    """A fixed-width table of every trial, and a note on parameters shown as ``-``.

    A trial without an objective value shows the ``metric`` it recorded (a pruned one)
    or its last epoch's value (a running one). A parameter the trial's optimizer does
    not use (momentum on an Adam trial) shows as ``-``.
    """
    table = trial_rows(study, user_attrs=True)
    trials = study.get_trials(deepcopy=False)
    last = {t.number: _last_value(t) for t in trials}
    header = ["#", "state", *table.params, metric, "best epoch", "epochs", "seconds"]
    # With [constraints]: which trials keep them (the constraints each breaks).
    kept = {t.number: _kept(t) for t in trials} if any(t.constraints for t in trials) else {}
    header += ["feasible"] if kept else []
    # A study of several objectives: the others after the metric's own column.
    others = _other_objectives(study)
    at = len(header) - 3 - bool(kept)  # after the metric, before "best epoch"
    header[at:at] = others
    values_of = {t.number: t.values or [] for t in trials}
    rows, unused = [], set()
    for row in table.rows:
        params = {n: row[n] for n in table.params}
        unused |= {n for n in table.params if not applies(n, params)}
        value = next((v for v in (row["value"], row.get(metric)) if v is not None), None)
        if value is None and row["state"] == "RUNNING":
            value = last.get(row["number"])
        rows.append(
            [
                str(row["number"]),
                row["state"].lower(),
                *[_short(row[n]) if applies(n, params) else "-" for n in table.params],
                _short(value),
                *[_short(v) for v in (values_of[row["number"]][1:] or [None] * len(others))],
                _short(row["best_epoch"]),
                _short(row["epochs_run"]),
                _short(row["seconds"], 1),
                *([kept[row["number"]]] if kept else []),
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    lines += [_unused_note(name) for name in sorted(unused)]
    return "\n".join(lines)


def _other_objectives(study: optuna.Study) -> list[str]:
    """The objectives after the first of a study of several ([] for a study of one)."""
    if not is_multi_objective(study):
        return []
    record = StudyRecord.read(study)
    names = record.objectives if record is not None else []
    return names[1:] if names else [f"objective {i}" for i in range(1, len(study.directions))]


def _kept(t: FrozenTrial) -> str:
    """``yes``, ``no (names broken)``, or ``-`` for a trial not measured (yet)."""
    if not t.constraints:
        return "-"
    names = broken(t)
    return f"no ({', '.join(names)})" if names else "yes"


def _last_value(t: FrozenTrial) -> float | None:
    """The value a trial reported for its latest epoch, if any."""
    if not t.intermediate_values:
        return None
    return t.intermediate_values[max(t.intermediate_values)]


def _unused_note(name: str) -> str:
    optimizers = ", ".join(sorted(IGNORED_BY_OPTIMIZER[name]))
    return f"{name} '-': not used by {optimizers} trials (the grid still gives them a value)"


def _short(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"
    return str(value)


def print_summary(study: optuna.Study, metric: str, name: str) -> None:
    """The end-of-run table and the best trial."""
    print(format_trials_table(study, metric))
    record = StudyRecord.read(study)
    for line in [
        format_feasibility(feasibility(study, record)),
        *format_cost_summary(cost_summary(study)),
        *format_front(front_summary(study, record)),
    ]:
        if line is not None:
            print(line)
    if is_multi_objective(study):
        return
    best = best_trial(study)
    if best is None:
        print(f"study {name!r}: {no_best_reason(study)}")
        return
    params = ", ".join(f"{k}={v}" for k, v in best.params.items())
    feasible = " feasible" if record is not None and record.constraints else ""
    print(
        f"best{feasible} trial of {name!r}: #{best.number} {metric}={best.value:.4f} "
        f"(validation, epoch {TrialRecord.read(best).best_epoch}) with {params}"
    )
