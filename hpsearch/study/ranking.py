"""The confirmed ranking: each configuration's runs summarised with an interval.

Per configuration: the mean of its runs' validation values, their standard deviation
(n - 1), and a 95 % confidence interval for the mean from Student's t distribution
(the runs are few; t is exact for normal run-to-run noise). Configurations are ordered
by mean; when the intervals of the first two overlap, the data cannot tell them apart.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from scipy import stats

from hpsearch.storage.optuna_api import study_storage
from hpsearch.study.confirm import confirm_study_name
from hpsearch.trials.applicable import applicable
from hpsearch.trials.selection import trial_value

#: Wording used wherever the top two cannot be told apart.
INDISTINGUISHABLE = "indistinguishable at this validation size and seed count"


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration's confirmation runs."""

    params: dict[str, Any]
    source_trial: int
    """The search trial whose configuration was repeated."""
    values: list[float]
    trials: list[int]
    """Confirmation trial numbers, in the order of ``values``."""
    seeds: list[int]
    mean: float
    std: float
    ci95: tuple[float, float]

    def representative(self) -> tuple[int, int]:
        """(trial, seed) of the run closest to the mean: the one an export ships."""
        i = min(range(len(self.values)), key=lambda j: (abs(self.values[j] - self.mean), j))
        return self.trials[i], self.seeds[i]


@dataclass(frozen=True)
class Ranking:
    """Configurations ordered by mean, best first, and whether the top two overlap."""

    direction: str
    configs: list[ConfigSummary]

    @property
    def has_intervals(self) -> bool:
        """True when each of the top two configurations has an interval (2+ runs)."""
        return bool(self.configs) and all(not math.isnan(c.ci95[0]) for c in self.configs[:2])

    @property
    def top_two_overlap(self) -> bool:
        if len(self.configs) < 2 or not self.has_intervals:
            return False
        (lo1, hi1), (lo2, hi2) = self.configs[0].ci95, self.configs[1].ci95
        return max(lo1, lo2) <= min(hi1, hi2)

    def verdict(self) -> str:
        """One sentence on the winner; no overlap is stated that was not computed."""
        if not self.configs:
            return "no confirmed configuration yet"
        if not self.has_intervals:
            return "not decided: each of the top two needs 2 or more runs for an interval"
        if self.top_two_overlap:
            return f"the top two configurations are {INDISTINGUISHABLE}"
        if len(self.configs) == 1:
            return "one configuration confirmed"
        return "the winner's interval does not overlap the runner-up's"

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "configs": [asdict(c) for c in self.configs],
            "top_two_overlap": self.top_two_overlap,
            "verdict": self.verdict(),
        }


def mean_interval(values: list[float]) -> tuple[float, float, tuple[float, float]]:
    """Mean, sample standard deviation and the 95 % t interval of the mean."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan, (math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return mean, std, (mean - half, mean + half)


def rank(trials: list[FrozenTrial], direction: str) -> Ranking:
    """The ranking of complete confirmation trials, grouped by ``confirm_of``."""
    groups: dict[int, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        if t.state == TrialState.COMPLETE and t.value is not None and "confirm_of" in t.user_attrs:
            groups[int(t.user_attrs["confirm_of"])].append(t)
    configs = []
    for source, runs in groups.items():
        runs.sort(key=lambda t: t.number)
        values = [trial_value(t) for t in runs]
        mean, std, ci = mean_interval(values)
        configs.append(
            ConfigSummary(
                params=dict(runs[0].params),
                source_trial=source,
                values=values,
                trials=[t.number for t in runs],
                seeds=[int(t.user_attrs.get("seed", -1)) for t in runs],
                mean=mean,
                std=std,
                ci95=ci,
            )
        )
    configs.sort(key=lambda c: c.mean, reverse=direction == "maximize")
    return Ranking(direction=direction, configs=configs)


def confirmed_ranking(study: optuna.Study) -> Ranking | None:
    """The ranking from the study's companion ``<name>.confirm`` study, if it has runs."""
    try:
        companion = optuna.load_study(
            study_name=confirm_study_name(study.study_name), storage=study_storage(study)
        )
    except KeyError:
        return None
    ranking = rank(companion.get_trials(deepcopy=False), study.direction.name.lower())
    return ranking if ranking.configs else None


def format_ranking(ranking: Ranking, metric: str) -> str:
    """The ranking as a small text table with its verdict."""
    lines = [f"confirmed ranking ({metric}, validation; mean of seeds, 95 % CI):"]
    for i, c in enumerate(ranking.configs, 1):
        # values the optimizer ignores (an Adam run's momentum) are left out, as in status
        params = ", ".join(f"{k}={v}" for k, v in sorted(applicable(c.params).items()))
        ci = "n/a" if math.isnan(c.ci95[0]) else f"{c.ci95[0]:.4f}-{c.ci95[1]:.4f}"
        std = "n/a" if math.isnan(c.std) else f"{c.std:.4f}"
        lines.append(
            f"  {i}. {c.mean:.4f} ± sd {std} (CI {ci}, {len(c.values)} seed(s)) "
            f"[search trial {c.source_trial}] {params}"
        )
    lines.append(f"  {ranking.verdict()}")
    return "\n".join(lines)
