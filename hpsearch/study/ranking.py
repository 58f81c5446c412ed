"""The confirmed ranking: each configuration's runs summarised with an interval, and the
leader compared with every other configuration seed by seed.

Per configuration: the mean of its runs' validation values, their standard deviation
(n - 1), and a 95 % confidence interval for the mean (:func:`mean_interval`: Student's t,
on the logit scale for a metric bounded to [0, 1]). Configurations are ordered by mean.

Every configuration of a confirmation trains with the same seeds
(:func:`hpsearch.study.confirm.confirm_seeds`), so the leader and another configuration
form pairs, one per shared seed: a seed fixes the initialisation and the data order, so
pairing removes that part of the run-to-run noise. The verdict on the top two rests on
the paired comparison (:func:`paired_comparison`), not on whether two unpaired
intervals overlap: two configurations whose every seed ranks them the same way are told
apart from fewer seeds than their separate intervals need.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch.storage.optuna_api import study_storage
from hpsearch.study.confirm import confirm_study_name
from hpsearch.study.record import StudyRecord
from hpsearch.trials.applicable import applicable
from hpsearch.trials.selection import trial_value
from trainer.config import UNIT_INTERVAL_MONITORS

#: Wording used wherever the top two cannot be told apart.
INDISTINGUISHABLE = "not distinguished yet"
#: Below this many pairs an exact test's p-value is given beside the paired t interval.
FEW_PAIRS = 6


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

    def by_seed(self) -> dict[int, float]:
        """Value per recorded seed; a seed run twice keeps its earliest run."""
        out: dict[int, float] = {}
        for seed, value in zip(self.seeds, self.values, strict=True):
            if seed >= 0:
                out.setdefault(seed, value)
        return out


@dataclass(frozen=True)
class PairedComparison:
    """The leader against another configuration on the seeds both ran.

    ``differences`` are leader minus other, in the metric's units, one per shared seed
    (ascending); ``mean``, ``std``, ``ci95``, ``t``, ``p_value`` and ``df`` are Student's
    paired t on them (the same numbers as ``scipy.stats.ttest_rel``); ``exact_test`` and
    ``exact_p`` are set below :data:`FEW_PAIRS` pairs (see :func:`paired_comparison`).
    """

    leader: int
    other: int
    """Search trials whose configurations are compared."""
    seeds: list[int]
    differences: list[float]
    mean: float
    std: float
    ci95: tuple[float, float]
    t: float
    p_value: float
    df: int
    exact_test: str | None = None
    exact_p: float | None = None

    @property
    def n(self) -> int:
        return len(self.differences)

    def excludes_zero(self) -> bool:
        """True when the 95 % interval of the mean difference lies on one side of 0."""
        lo, hi = self.ci95
        return self.n >= 2 and (lo > 0 or hi < 0)


@dataclass(frozen=True)
class Ranking:
    """Configurations ordered by mean, best first, and the leader's paired comparisons."""

    direction: str
    configs: list[ConfigSummary]

    @property
    def has_intervals(self) -> bool:
        """True when each of the top two configurations has an interval (2+ runs)."""
        return bool(self.configs) and all(not math.isnan(c.ci95[0]) for c in self.configs[:2])

    @property
    def top_two_overlap(self) -> bool:
        """Whether the top two's separate intervals overlap (shown; the verdict is paired)."""
        if len(self.configs) < 2 or not self.has_intervals:
            return False
        (lo1, hi1), (lo2, hi2) = self.configs[0].ci95, self.configs[1].ci95
        return max(lo1, lo2) <= min(hi1, hi2)

    def comparisons(self) -> list[PairedComparison]:
        """The leader paired with each other configuration, in ranking order."""
        return [paired_comparison(self.configs[0], c) for c in self.configs[1:]]

    @property
    def paired(self) -> PairedComparison | None:
        """The leader against the runner-up; None with one configuration."""
        return paired_comparison(*self.configs[:2]) if len(self.configs) > 1 else None

    @property
    def top_two_distinguished(self) -> bool:
        """True when the paired interval of the top two excludes 0 (2+ pairs)."""
        paired = self.paired
        return self.has_intervals and paired is not None and paired.excludes_zero()

    def verdict(self) -> str:
        """One sentence on the winner, from the paired comparison of the top two."""
        if not self.configs:
            return "no confirmed configuration yet"
        if not self.has_intervals:
            return "not decided: each of the top two needs 2 or more runs for an interval"
        paired = self.paired
        if paired is None:
            return "one configuration confirmed"
        if paired.n < 2:
            return (
                f"not decided: the top two share {paired.n} seed(s); a paired comparison "
                "needs 2 or more"
            )
        lo, hi = paired.ci95
        detail = (
            f"(mean difference {paired.mean:+.4f}, 95 % CI {lo:+.4f}..{hi:+.4f}, "
            f"{paired.n} pairs{_exact_note(paired)})"
        )
        if not paired.excludes_zero():
            return f"the top two configurations are {INDISTINGUISHABLE} on paired seeds {detail}"
        if (lo > 0) == (self.direction == "maximize"):
            return f"the winner is better than the runner-up on paired seeds {detail}"
        return f"on paired seeds the runner-up is better than the winner {detail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "configs": [asdict(c) for c in self.configs],
            "paired": [asdict(p) for p in self.comparisons()] if self.configs else [],
            "top_two_overlap": self.top_two_overlap,
            "top_two_distinguished": self.top_two_distinguished,
            "verdict": self.verdict(),
        }


def _exact_note(paired: PairedComparison) -> str:
    if paired.exact_test is None or paired.exact_p is None:
        return ""
    return f"; exact {paired.exact_test} p = {paired.exact_p:.3g}"


def paired_comparison(leader: ConfigSummary, other: ConfigSummary) -> PairedComparison:
    """``leader`` against ``other`` on the seeds both ran, paired by seed.

    Student's paired t on the differences (leader minus other): their mean, the 95 %
    interval ``mean ± t(0.975, n - 1) · sd / √n``, the statistic and its two-sided
    p-value, equal to ``scipy.stats.ttest_rel`` (identical differences give an infinite
    statistic and p = 0, all-zero ones NaN, as there). With fewer than 2 pairs every
    number but the mean is NaN.

    Below :data:`FEW_PAIRS` pairs an exact test is added: Wilcoxon's signed-rank test,
    exact, when the differences are nonzero and their sizes distinct, else the exact
    sign test (a binomial test on the signs of the nonzero differences), which ties and
    zeros do not break. **The verdict uses the t interval**, not the exact test: the
    interval states the difference in the metric's own units, and below 6 pairs neither
    exact test can reach 5 % at all (its smallest two-sided p is 2 / 2**n, 0.0625 with
    5 pairs), so deciding by it would mean never deciding before 6 seeds whatever the
    data. The exact p-value is shown beside the interval as the check that assumes no
    normal noise: an interval that excludes 0 with a large exact p rests on that
    assumption.
    """
    from scipy import stats  # imported on use: status and best seldom need it

    mine, theirs = leader.by_seed(), other.by_seed()
    seeds = sorted(set(mine) & set(theirs))
    d = np.array([mine[s] - theirs[s] for s in seeds], dtype=float)
    n = len(d)
    mean = float(d.mean()) if n else math.nan
    std, ci, t, p = math.nan, (math.nan, math.nan), math.nan, math.nan
    if n >= 2:
        std = float(d.std(ddof=1))
        se = std / math.sqrt(n)
        half = float(stats.t.ppf(0.975, n - 1)) * se
        ci = (mean - half, mean + half)
        if se > 0:
            t = mean / se
        elif mean != 0:
            t = math.copysign(math.inf, mean)
        p = 2 * float(stats.t.sf(abs(t), n - 1)) if not math.isnan(t) else math.nan
    test, exact = _exact_test(d) if 2 <= n < FEW_PAIRS else (None, None)
    return PairedComparison(
        leader=leader.source_trial,
        other=other.source_trial,
        seeds=seeds,
        differences=[float(x) for x in d],
        mean=mean,
        std=std,
        ci95=ci,
        t=t,
        p_value=p,
        df=max(n - 1, 0),
        exact_test=test,
        exact_p=exact,
    )


def _exact_test(d: np.ndarray) -> tuple[str | None, float | None]:
    """(name, two-sided p) of the exact test :func:`paired_comparison` describes."""
    from scipy import stats

    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return None, None
    sizes = np.abs(nonzero)
    if len(nonzero) == len(d) and len(np.unique(sizes)) == len(sizes):
        return "Wilcoxon signed-rank", float(stats.wilcoxon(d, method="exact").pvalue)
    positive = int((nonzero > 0).sum())
    return "sign test", float(stats.binomtest(positive, len(nonzero), 0.5).pvalue)


def mean_interval(
    values: list[float], bounded: bool = False
) -> tuple[float, float, tuple[float, float]]:
    """Mean, sample standard deviation and a 95 % interval of the mean.

    Unbounded (a loss): Student's t interval ``mean ± t(0.975, n - 1) · sd / √n``.

    ``bounded`` (a metric in [0, 1]: accuracy, F1, AUC): the same t interval built on
    the logit scale and carried back, so it stays inside (0, 1) by construction and
    never needs clipping. It is centred on ``logit(mean)`` with the standard error
    carried over by the delta method, ``sd / √n / (mean · (1 - mean))``, so it always
    contains the mean; for a mean away from 0 and 1 and a narrow spread it is close to
    the plain t interval, and near a bound it is asymmetric as the metric is. Logits of
    the runs themselves are not used, so a run at exactly 0 or 1 is no problem. When the
    mean is 0 or 1 every run is, and the interval is that point.
    """
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan, (math.nan, math.nan)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    if not bounded:
        return mean, std, (mean - half, mean + half)
    if mean <= 0 or mean >= 1 or std == 0:
        return mean, std, (mean, mean)
    centre = math.log(mean / (1 - mean))
    spread = half / (mean * (1 - mean))
    return mean, std, (_expit(centre - spread), _expit(centre + spread))


def _expit(x: float) -> float:
    """1 / (1 + e^-x), without overflow for large |x|."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    z = math.exp(x)
    return z / (1 + z)


def is_unit_interval(metric: str | None) -> bool:
    """Whether a study's metric lies in [0, 1] (its intervals then stay there)."""
    return metric in UNIT_INTERVAL_MONITORS


def rank(trials: list[FrozenTrial], direction: str, metric: str | None = None) -> Ranking:
    """The ranking of complete confirmation trials, grouped by ``confirm_of``; ``metric``
    (the study's) picks the interval (:func:`mean_interval`), a t interval when None."""
    groups: dict[int, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        if t.state == TrialState.COMPLETE and t.value is not None and "confirm_of" in t.user_attrs:
            groups[int(t.user_attrs["confirm_of"])].append(t)
    configs = []
    for source, runs in groups.items():
        runs.sort(key=lambda t: t.number)
        values = [trial_value(t) for t in runs]
        mean, std, ci = mean_interval(values, bounded=is_unit_interval(metric))
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


def companion_study(study: optuna.Study) -> optuna.Study | None:
    """The study's companion ``<name>.confirm`` study (its confirmation), if there is one."""
    try:
        return optuna.load_study(
            study_name=confirm_study_name(study.study_name), storage=study_storage(study)
        )
    except KeyError:
        return None


def confirmed_ranking(study: optuna.Study) -> Ranking | None:
    """The ranking from the study's companion ``<name>.confirm`` study, if it has runs."""
    companion = companion_study(study)
    if companion is None:
        return None
    record = StudyRecord.read(study)
    metric = record.metric if record is not None else None
    direction = study.direction.name.lower()
    ranking = rank(companion.get_trials(deepcopy=False), direction, metric)
    return ranking if ranking.configs else None


def confirmed_seed_sd(study: optuna.Study) -> float | None:
    """The standard deviation over the seeds of the confirmed leader (the run-to-run
    spread that the expected-best read-out compares with); None without a confirmation
    of 2 or more runs of it."""
    ranking = confirmed_ranking(study)
    if ranking is None or math.isnan(ranking.configs[0].std):
        return None
    return ranking.configs[0].std


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
