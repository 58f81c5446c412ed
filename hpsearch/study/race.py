"""Racing a confirmation: as few runs as the data allow to name a winner.

A fixed confirmation trains every one of the top configurations with the same number of
seeds. A race trains them in rounds instead: every configuration still in the race runs
the next seed of one shared list (so seed k of each configuration shares its
initialisation and batch order, and they compare pair by pair); after each round, a
configuration that the leader beats on paired seeds (the 95 % paired t interval of
leader minus it lies wholly on the leader's side of 0, :mod:`hpsearch.study.ranking`)
leaves the race. The race ends decided when one configuration is left, or undecided at
``max_seeds``, with the contenders that remain. The first round that is judged has
:data:`FIRST_SEEDS` seeds: a paired interval needs two pairs.

The state (rounds judged, who left on what evidence) lives in the confirmation's plan,
so a rerun of the same command continues the race where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

from hpsearch.study.ranking import PairedComparison, Ranking, paired_comparison

#: Seeds each contender has when the race is first judged.
FIRST_SEEDS = 2


@dataclass(frozen=True)
class Departure:
    """A configuration that left the race, and the evidence."""

    trial: int
    """The search trial whose configuration left."""
    leader: int
    mean_difference: float
    """Leader minus it, in the metric's units (its sign favours the leader)."""
    ci95: tuple[float, float]
    pairs: int


@dataclass(frozen=True)
class RaceRound:
    """One judged round: the seeds every contender had, who was in, who left."""

    seeds: int
    contenders: list[int]
    left: list[Departure]


@dataclass
class RaceState:
    """Where a race stands: its limit, its judged rounds and who is still in."""

    max_seeds: int
    contenders: list[int]
    rounds: list[RaceRound] = field(default_factory=list)

    @property
    def seeds(self) -> int:
        """Seeds each contender needs before the next judgement."""
        return self.rounds[-1].seeds + 1 if self.rounds else FIRST_SEEDS

    @property
    def decided(self) -> bool:
        return len(self.contenders) == 1

    @property
    def finished(self) -> bool:
        return self.decided or (bool(self.rounds) and self.rounds[-1].seeds >= self.max_seeds)

    def judge(self, ranking: Ranking, seeds: int) -> RaceRound:
        """Judge the round in which each contender has ``seeds`` runs, and record it."""
        left = [_departure(p) for p in leavers(ranking, self.contenders)]
        gone = {d.trial for d in left}
        judged = RaceRound(seeds=seeds, contenders=list(self.contenders), left=left)
        self.rounds.append(judged)
        self.contenders = [c for c in self.contenders if c not in gone]
        return judged

    def summary(self) -> str:
        """One line: decided (who, after how many seeds) or not (who remains)."""
        last = self.rounds[-1].seeds if self.rounds else 0
        if self.decided:
            return f"race decided after {last} seed(s): search trial {self.contenders[0]} wins"
        if self.finished:
            return (
                f"race undecided at --max-seeds {self.max_seeds}: search trials "
                f"{', '.join(map(str, self.contenders))} remain, not distinguished on paired seeds"
            )
        return (
            f"race in progress: {len(self.contenders)} configuration(s) in, {last} seed(s) judged"
        )

    def to_dict(self) -> dict[str, Any]:
        """As JSON holds it (tuples as lists), so a stored plan compares equal."""
        as_json: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return as_json

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RaceState:
        rounds = [
            RaceRound(
                seeds=int(r["seeds"]),
                contenders=[int(c) for c in r["contenders"]],
                left=[
                    Departure(**{**d, "ci95": (float(d["ci95"][0]), float(d["ci95"][1]))})
                    for d in r["left"]
                ],
            )
            for r in data.get("rounds", [])
        ]
        return cls(int(data["max_seeds"]), [int(c) for c in data["contenders"]], rounds)


def leavers(ranking: Ranking, contenders: list[int]) -> list[PairedComparison]:
    """The contenders the leader (the best mean among them) beats on paired seeds."""
    in_race = [c for c in ranking.configs if c.source_trial in contenders]
    if len(in_race) < 2:
        return []
    leader, maximize = in_race[0], ranking.direction == "maximize"
    out = []
    for other in in_race[1:]:
        paired = paired_comparison(leader, other)
        low, high = paired.ci95
        # the leader's advantage, at the unfavourable end of its interval, is above 0
        # (NaN with fewer than 2 pairs: nobody leaves)
        if (low if maximize else -high) > 0:
            out.append(paired)
    return out


def _departure(paired: PairedComparison) -> Departure:
    return Departure(
        trial=paired.other,
        leader=paired.leader,
        mean_difference=paired.mean,
        ci95=paired.ci95,
        pairs=paired.n,
    )


def describe_round(judged: RaceRound) -> str:
    """A round as the terminal shows it."""
    head = f"race round with {judged.seeds} seed(s): {len(judged.contenders)} in"
    if not judged.left:
        return f"{head}; none left (not distinguished on paired seeds yet)"
    parts = [
        f"trial {d.trial} (leader {d.leader} better by {d.mean_difference:+.4f}, "
        f"95 % CI {d.ci95[0]:+.4f}..{d.ci95[1]:+.4f}, {d.pairs} pairs)"
        for d in judged.left
    ]
    return f"{head}; left: {'; '.join(parts)}"


def stored_race(study: optuna.Study) -> dict[str, Any] | None:
    """The race of the study's confirmation, as stored (rounds, departures, who is
    still in); None without a confirmation or for a fixed one."""
    from hpsearch.storage.optuna_api import study_storage
    from hpsearch.study.confirm import confirm_study_name
    from hpsearch.study.stored import existing_record

    record = existing_record(confirm_study_name(study.study_name), study_storage(study))
    if record is None or not record.confirm:
        return None
    race: dict[str, Any] | None = record.confirm.get("race")
    if race is not None:
        state = RaceState.from_dict(race)
        race = {**race, "decided": state.decided, "summary": state.summary()}
    return race
