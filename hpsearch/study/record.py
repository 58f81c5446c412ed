"""What a study records about itself: one typed record, read and written here only.

``hpsearch run`` writes it once, when it creates the study, as the Optuna study user
attribute ``hpsearch``; ``status``, ``best``, ``report``, the export and the wandb study
table read it back. It is plain JSON in the storage, so ``optuna`` and
optuna-dashboard show it as it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import optuna

#: Name of the study user attribute that holds the record.
ATTR = "hpsearch"


@dataclass(frozen=True)
class DataRecord:
    """The data a study trains on, as the run prepared it."""

    root: str
    """Dataset folder as given (absolute) on the machine that created the study; other
    machines may mount the same data elsewhere."""
    image_size: int
    val_fraction: float
    test_fraction: float = 0.0
    split_seed: int = 0
    synthetic: bool = False
    """True for the generated demo data: every output then says SYNTHETIC."""
    fingerprint: str = ""
    """Digest of the images' relative paths, sizes and classes (``trainer.fingerprint``);
    empty in studies recorded before it existed, or for data no layout describes."""
    class_counts: dict[str, int] = field(default_factory=dict)
    """Labelled images per class, shown when another dataset is refused."""

    def difference(self, other: DataRecord) -> str | None:
        """Why ``other`` is not the same dataset as this one (one line), or None.

        Datasets are compared by fingerprint, so the same images at another path are the
        same data; a record without one (an older study) is compared by its path.
        """
        if not (self.fingerprint and other.fingerprint):
            return None if self.root == other.root else f"{self.root} there, {other.root} now"
        if self.fingerprint == other.fingerprint:
            return None
        counts = [
            f"{name} {self.class_counts.get(name, 0)} there, {other.class_counts.get(name, 0)} now"
            for name in dict.fromkeys([*self.class_counts, *other.class_counts])
            if self.class_counts.get(name, 0) != other.class_counts.get(name, 0)
        ]
        if counts:
            return "images per class differ: " + "; ".join(counts)
        return (
            "same images per class, but other files or file sizes "
            f"(fingerprint {self.fingerprint} there, {other.fingerprint} now)"
        )


#: The data settings a record shares with ``trainer.config.DataConfig``.
SPLIT_SETTINGS = ("image_size", "val_fraction", "test_fraction", "split_seed")


@dataclass(frozen=True)
class StudyRecord:
    """A study's settings as ``hpsearch run`` created it (the study user attr ``hpsearch``)."""

    data: DataRecord
    spec_file: str = ""
    scale: str = ""
    sampler: str = ""
    pruner: str = "none"
    metric: str = "val_accuracy"
    direction: str = "maximize"
    n_slots: int = 0
    """Trials that complete the study: grid points, or the random/TPE budget."""
    seed: int = 0
    """The study's seed (the file's, or ``--seed``'s)."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Training values shared by every trial at this scale."""
    space: list[str] = field(default_factory=list)
    """Names of the search-space axes."""
    axes: dict[str, Any] = field(default_factory=dict)
    """Each axis as searched: its values, or its range (low, high, log, step)."""
    pruner_settings: dict[str, Any] = field(default_factory=dict)
    grid_order: list[int] | None = None
    """Grid point (file order) that each slot trains; None for random and TPE."""
    workdir: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Values given with ``--set`` when the study was created."""
    objectives: list[str] = field(default_factory=list)
    """Two or more objectives (``metric`` first) of a study with a Pareto front; [] for one."""
    uid: str = ""
    """A random id given when the study is made; its checkpoints live under it, so a study
    deleted and made again under the same name, or one of that name in another storage
    sharing the workdir, never resumes (or overwrites) another's checkpoints. Empty for
    studies made before it existed (their checkpoints stay where they were)."""
    constraints: dict[str, dict[str, float]] = field(default_factory=dict)
    """``[constraints]``: each measure's bounds (``{"recall.covid": {"min": 0.9}}``)."""
    confirm: dict[str, Any] | None = None
    """For a ``<name>.confirm`` study: the search it confirms, ``top``, ``seeds`` and
    each slot's run (params, seed, source trial)."""

    #: Keys that must match when a run joins an existing study: everything that changes
    #: what a trial means (its training values, the space, the budget, the pruner).
    #: The scale and ``--set`` come first: they are what a user changes, and they change
    #: ``fixed``, so naming them says which flag to give back.
    IDENTITY = (
        "scale",
        "overrides",
        "sampler",
        "metric",
        "direction",
        "space",
        "axes",
        "fixed",
        "n_slots",
        "grid_order",
        "seed",
        "pruner",
        "pruner_settings",
        "constraints",
        "objectives",
        "confirm",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudyRecord:
        """Build from stored JSON; keys this version does not know are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if isinstance(values.get("fixed"), dict) and values["fixed"]:
            # Studies made before the monitor followed the metric trained with the
            # trainer's default monitor, whatever their metric.
            values["fixed"] = {"monitor": "val_accuracy", **values["fixed"]}
        data_known = {f.name for f in dataclasses.fields(DataRecord)}
        data = {k: v for k, v in (raw.get("data") or {}).items() if k in data_known}
        data.setdefault("root", "")
        data.setdefault("image_size", 0)
        data.setdefault("val_fraction", 0.0)
        values["data"] = DataRecord(**data)
        return cls(**values)

    @classmethod
    def read(cls, study: optuna.Study) -> StudyRecord | None:
        """The study's record, or None for a study not created by ``hpsearch run``."""
        raw = stored_record(study)
        return None if raw is None else cls.from_dict(raw)

    def write(self, study: optuna.Study) -> None:
        study.set_user_attr(ATTR, self.to_dict())

    def differences(
        self, other: StudyRecord, recorded: set[str] | None = None
    ) -> list[tuple[str, Any, Any]]:
        """(key, this, other) for each identity key on which the two disagree; with
        ``recorded``, only keys this record was stored with (a study made by an older
        hpsearch lacks the newer ones). A key of a table is named down to its first
        differing entry (``fixed.epochs``)."""
        mine, theirs = self.to_dict(), other.to_dict()
        keys = [k for k in self.IDENTITY if recorded is None or k in recorded]
        return [_first_difference(k, mine[k], theirs[k]) for k in keys if mine[k] != theirs[k]]


def stored_record(study: optuna.Study) -> dict[str, Any] | None:
    """The study's record as stored (a JSON object), or None for a study not made by
    ``hpsearch run``."""
    raw = study.user_attrs.get(ATTR)
    return raw if isinstance(raw, dict) and "data" in raw else None


def _first_difference(key: str, there: Any, now: Any) -> tuple[str, Any, Any]:
    """``(key, there, now)``, or for two tables the first entry in which they differ."""
    if isinstance(there, dict) and isinstance(now, dict):
        for name in sorted(set(there) | set(now)):
            if there.get(name) != now.get(name):
                return _first_difference(f"{key}.{name}", there.get(name), now.get(name))
    return key, there, now
