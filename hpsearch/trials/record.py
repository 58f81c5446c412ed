"""What ``hpsearch run`` records on each trial, and the one reader of it.

A trial's record is two Optuna user attributes, each one storage write (an RDB storage
commits every ``set_user_attr`` in its own transaction, so writing each value on its
own cost more than the rest of a no-op trial's orchestration):

- ``start`` — written when the trial starts: ``slot``, ``attempt`` and the training
  ``config``;
- ``result`` — written when training ends: best epoch, epochs run, timing, device,
  checkpoint, whether it resumed, and the best epoch's metrics (``val_*``...).

Two rare paths add their own attribute: ``interrupted`` (Ctrl-C) and ``error`` (the
reason a trial failed). A confirmation run (``hpsearch confirm``) carries ``confirm_of``
(the search trial whose configuration it repeats) and ``seed``. A trial copied from
another study by ``hpsearch run --from-study`` carries ``copied_from`` (source study,
trial number, scale) and nothing else: it is prior knowledge for the sampler, not a
trial this study ran. All of it is plain JSON, so ``optuna trials`` and optuna-dashboard
show it as it is. Everything else reads it through :meth:`TrialRecord.read`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial

START = "start"
RESULT = "result"
COPIED = "copied_from"
INTERRUPTED = "interrupted"
ERROR = "error"
CONFIRM_OF = "confirm_of"
SEED = "seed"
ENQUEUED = "enqueued"
WANDB_RUN_ID = "wandb_run_id"
PRECISION_CHOICE = "precision_choice"
PAUSED_AT = "paused_at"
"""The epoch a trial waits at for a promotion (the promotion pruner); None once it goes on."""


def _from_result(key: str, doc: str) -> Any:
    """A read-only property of :class:`TrialRecord` giving ``result[key]`` (None if absent)."""
    return property(lambda self: self.result.get(key), doc=doc)


@dataclass(frozen=True)
class TrialRecord:
    """One trial's record (the user attributes ``start``, ``result``, and the rare ones)."""

    slot: int | None = None
    attempt: int | None = None
    config: dict[str, Any] | None = None
    """The training config (``TrainConfig.to_dict()``) the trial ran with."""
    result: dict[str, Any] = field(default_factory=dict)
    """What the finished fit returned; empty until training ends."""
    interrupted: bool = False
    error: str | None = None
    copied_from: dict[str, Any] | None = None
    """Where a trial copied in by ``--from-study`` came from (study, trial, scale)."""
    confirm_of: int | None = None
    """For a confirmation run: the number of the search trial it repeats."""
    seed: int | None = None
    """For a confirmation run: its training seed."""

    @classmethod
    def read(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of ``trial``; an empty one for a trial ``hpsearch run`` did not make."""
        attrs = trial.user_attrs
        start = attrs.get(START)
        start = start if isinstance(start, dict) else {}
        result = attrs.get(RESULT)
        return cls(
            slot=start.get("slot"),
            attempt=start.get("attempt"),
            config=start.get("config"),
            result=dict(result) if isinstance(result, dict) else {},
            interrupted=bool(attrs.get(INTERRUPTED, False)),
            error=attrs.get(ERROR),
            copied_from=_copied(attrs.get(COPIED)),
            confirm_of=_int_or_none(attrs.get(CONFIRM_OF)),
            seed=_int_or_none(attrs.get(SEED)),
        )

    def start_attr(self) -> dict[str, Any]:
        """The value of the ``start`` attribute."""
        return {"slot": self.slot, "attempt": self.attempt, "config": self.config}

    def user_attrs(self) -> dict[str, Any]:
        """Every attribute of this record as stored (for building trials by hand)."""
        attrs: dict[str, Any] = {START: self.start_attr()}
        if self.result:
            attrs[RESULT] = dict(self.result)
        if self.interrupted:
            attrs[INTERRUPTED] = True
        if self.error is not None:
            attrs[ERROR] = self.error
        if self.copied_from is not None:
            attrs[COPIED] = dict(self.copied_from)
        if self.confirm_of is not None:
            attrs[CONFIRM_OF] = self.confirm_of
        if self.seed is not None:
            attrs[SEED] = self.seed
        return attrs

    best_epoch = _from_result("best_epoch", "The epoch whose metrics the trial keeps.")
    epochs_run = _from_result("epochs_run", "Epochs trained, resumed ones included.")
    wall_seconds = _from_result(
        "wall_seconds", "Seconds the training took (the recorded figure, not start to end)."
    )
    checkpoint = _from_result("checkpoint", "Path of the best epoch's checkpoint, as recorded.")

    @property
    def resumed(self) -> bool:
        return bool(self.result.get("resumed", False))

    def validation_metrics(self) -> dict[str, Any]:
        """The best epoch's validation metrics (``val_*``), by name."""
        return {k: v for k, v in sorted(self.result.items()) if k.startswith("val_")}

    def numbers(self) -> dict[str, int | float]:
        """The numeric values of the result (metrics, timing, epochs), by name."""
        return {k: v for k, v in self.result.items() if _is_number(v)}

    @property
    def training_seed(self) -> int | None:
        """The seed the trial trained with: a confirmation run's own, else its config's."""
        if self.seed is not None:
            return self.seed
        seed = (self.config or {}).get("seed")
        return int(seed) if isinstance(seed, int) else None


def is_copied(trial: FrozenTrial) -> bool:
    """True for a trial copied in from another study (``hpsearch run --from-study``)."""
    return COPIED in trial.user_attrs


def _copied(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else ({} if value is not None else None)


def is_confirmation_run(trial: FrozenTrial) -> bool:
    """True for a run of ``hpsearch confirm`` (a configuration trained again with a seed)."""
    return CONFIRM_OF in trial.user_attrs


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
