"""What ``hpsearch run`` records on each trial, and the one reader of it.

A trial's record is two Optuna user attributes, each one storage write (an RDB storage
commits every ``set_user_attr`` in its own transaction, so writing each value on its
own cost more than the rest of a no-op trial's orchestration):

- ``start`` — written when the trial starts: ``slot``, ``attempt`` and the training
  ``config``;
- ``result`` — written when training ends: best epoch, epochs run, timing, device,
  checkpoint, whether it resumed, and the best epoch's metrics (``val_*``...).

Two rare paths add their own attribute: ``interrupted`` (Ctrl-C) and ``error`` (the
reason a trial failed). A trial copied from another study by ``hpsearch run
--from-study`` carries ``copied_from`` (source study, trial number, scale) and nothing
else: it is prior knowledge for the sampler, not a trial this study ran. All of it is
plain JSON, so ``optuna trials`` and optuna-dashboard show it as it is. Everything else
reads it through :meth:`TrialRecord.read`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial

START = "start"
RESULT = "result"
COPIED = "copied_from"


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
            interrupted=bool(attrs.get("interrupted", False)),
            error=attrs.get("error"),
            copied_from=_copied(attrs.get(COPIED)),
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
            attrs["interrupted"] = True
        if self.error is not None:
            attrs["error"] = self.error
        if self.copied_from is not None:
            attrs[COPIED] = dict(self.copied_from)
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


def is_copied(trial: FrozenTrial) -> bool:
    """True for a trial copied in from another study (``hpsearch run --from-study``)."""
    return COPIED in trial.user_attrs


def copied_label(trial: FrozenTrial) -> str | None:
    """``copied from STUDY #N`` for a copied trial, else None."""
    source = TrialRecord.read(trial).copied_from
    if source is None:
        return None
    return f"copied from {source.get('study')} #{source.get('trial')}"


def _copied(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else ({} if value is not None else None)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
