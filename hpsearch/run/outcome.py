"""How one run of a trial ended, and what that leaves its slot."""

from __future__ import annotations

import enum

from optuna.trial import TrialState

from hpsearch.run.claims import SlotStatus
from hpsearch.storage.resilience import is_disk_full, is_storage_outage, recurring_error


class TrialOutcome(enum.Enum):
    """How one run of the objective ended."""

    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    """The training raised: the slot spends one of its attempts."""
    INTERRUPTED = "interrupted"
    """Ctrl-C or a scheduler's stop: the slot is released, to resume later."""
    DISK_FULL = "disk_full"
    """Not the trial's fault: released without spending an attempt; the run stops."""
    OUTAGE = "outage"
    """The storage went away: released without spending an attempt, to run again."""
    PAUSED = "paused"
    """Stopped at a rung of the promotion pruner: waits to be promoted, or pruned at the end."""
    SETUP_ERROR = "setup_error"
    """An error every attempt would meet (missing weights, an unwritable folder): the
    trial is failed with its reason, the slot released unspent, and the run stops."""

    @classmethod
    def of_error(cls, err: BaseException) -> TrialOutcome:
        """The one place where an error in a trial is told apart from the trial's fault."""
        if is_disk_full(err):
            return cls.DISK_FULL
        if is_storage_outage(err):
            return cls.OUTAGE
        if recurring_error(err) is not None:
            return cls.SETUP_ERROR
        return cls.FAILED

    @classmethod
    def of_finished(cls, state: TrialState | None) -> TrialOutcome | None:
        """COMPLETE or PRUNED for a trial Optuna recorded so, else None."""
        return _FINISHED.get(state) if state is not None else None

    @property
    def spends_attempt(self) -> bool:
        """Only a trial's own failure counts towards its slot's attempts."""
        return self is TrialOutcome.FAILED

    @property
    def refunds_attempt(self) -> bool:
        """An ending that is nobody's fault gives the slot its attempt back."""
        kept = (
            TrialOutcome.COMPLETE,
            TrialOutcome.PRUNED,
            TrialOutcome.FAILED,
            TrialOutcome.PAUSED,
        )
        return self not in kept

    @property
    def slot_status(self) -> SlotStatus:
        """The status this ending leaves the trial's slot in."""
        if self in (TrialOutcome.COMPLETE, TrialOutcome.PRUNED):
            return SlotStatus.DONE
        if self is TrialOutcome.PAUSED:
            return SlotStatus.PAUSED
        return SlotStatus.FAILED if self is TrialOutcome.FAILED else SlotStatus.RELEASED

    @property
    def state(self) -> str:
        """The state shown to the user (disk-full, outage and setup errors as failed)."""
        shown = (
            TrialOutcome.COMPLETE,
            TrialOutcome.PRUNED,
            TrialOutcome.INTERRUPTED,
            TrialOutcome.PAUSED,
        )
        return self.value if self in shown else "failed"


_FINISHED = {TrialState.COMPLETE: TrialOutcome.COMPLETE, TrialState.PRUNED: TrialOutcome.PRUNED}
