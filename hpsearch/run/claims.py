"""Exactly-once trial claims on top of the Optuna storage.

A study's budget is a fixed number of *slots* (a grid point each, or the k-th trial of
a random/TPE search). A worker owns a slot only after a write that a single process can
win: an INSERT under the table's primary key for a fresh slot, or a compare-and-set
UPDATE on the previous owner's token for a slot whose trial died or was interrupted.
Both are single statements, atomic on SQLite and PostgreSQL alike, so no slot is ever
trained twice at once, none is skipped, and "is there work left?" has no race: a worker
with nothing to claim either waits for the running slots or sees that all are done.

The table (``hpsearch_slots``, :mod:`hpsearch.storage.tables`) lives in the study's own
database beside Optuna's tables; Optuna's schema is untouched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import os
import socket
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.trial import TrialState

from hpsearch.storage.optuna_api import heartbeat_table, stale_trial_ids, study_id
from hpsearch.storage.tables import (
    ensure_table,
    insert_once,
    rungs_table,
    slots_table,
    update_if,
)
from hpsearch.study.promotion import Rungs, promotable
from hpsearch.trials.record import ERROR, INTERRUPTED, PAUSED_AT

#: Trial states that settle a slot as done.
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)

#: A slot whose trial failed (an exception, not a dead process) is tried this many
#: times in all before it counts as done.
MAX_ATTEMPTS = 3


class SlotStatus(enum.StrEnum):
    """What a slot's row says about it (the ``status`` column)."""

    RUNNING = "running"
    """Claimed: its owner is starting or running its trial."""
    DONE = "done"
    """Its trial completed or was pruned."""
    RELEASED = "released"
    """Its trial was stopped through no fault of its own: claim it again, resume it."""
    FAILED = "failed"
    """Its trial failed; claimed again until it has failed ``MAX_ATTEMPTS`` times."""
    PAUSED = "paused"
    """Its trial waits at a rung of the promotion pruner (still running in Optuna, with
    no heartbeat): promoted, it resumes under its own number; else pruned at the end."""


class ClaimResult(enum.Enum):
    """What a worker learns when it asks for work."""

    CLAIMED = "claimed"
    WAIT = "wait"
    """Nothing claimable now, but slots are running elsewhere and may come back."""
    ALL_DONE = "all done"
    """Every slot is finished."""
    STUCK = "stuck"
    """No slot left to run, but some failed on every attempt: the study is not done."""


@dataclass(frozen=True)
class Claim:
    slot: int
    token: str
    attempt: int
    resumed: bool
    """True when a previous attempt of this slot ran (its checkpoint may be resumed)."""
    trial_id: int | None = None
    """A promotion: the paused trial that goes on (under its own number)."""
    promoted_from: int | None = None
    """A promotion: the rung the trial waited at."""


def is_exhausted(status: str, attempts: int) -> bool:
    """True for a slot whose trial failed on each of its ``MAX_ATTEMPTS`` attempts."""
    return status == SlotStatus.FAILED and attempts >= MAX_ATTEMPTS


def _exhausted_rows() -> tuple[Any, ...]:
    """The WHERE clauses of :func:`is_exhausted`, for a query."""
    return (slots_table.c.status == SlotStatus.FAILED, slots_table.c.attempts >= MAX_ATTEMPTS)


class SlotBoard:
    """Claims and releases slots of one study."""

    def __init__(
        self,
        study: optuna.Study,
        storage: optuna.storages.RDBStorage,
        n_slots: int,
        *,
        claim_grace_s: float = 60.0,
        worker: int | None = None,
        promotion: Rungs | None = None,
    ) -> None:
        self.study = study
        self.storage = storage
        self.engine: sa.Engine = storage.engine
        self.study_id = study_id(study)
        self.n_slots = n_slots
        self.claim_grace_s = claim_grace_s
        # Who this board's claims are made by, as a recorded reason names them.
        who = "worker" if worker is None else f"worker {worker}"
        self.who = f"{who} (pid {os.getpid()}) on host {socket.gethostname()}"
        ensure_table(self.engine, slots_table)
        self._next_dead_check = 0.0
        """When (``time.monotonic``) a claim next looks for dead trials."""
        self.promotion = promotion
        """The promotion pruner's rungs: trials pause at them and paused ones go on first."""
        if promotion is not None:
            ensure_table(self.engine, rungs_table)

    # -- reading ---------------------------------------------------------------------------
    def rows(self) -> list[sa.Row[Any]]:
        with self.engine.connect() as conn:
            query = sa.select(slots_table).where(slots_table.c.study_id == self.study_id)
            return list(conn.execute(query.order_by(slots_table.c.slot)))

    def _trial_state(self, trial_id: int | None) -> TrialState | None:
        if trial_id is None:
            return None
        return self.storage.get_trial(trial_id).state

    # -- claiming --------------------------------------------------------------------------
    def claim(self) -> tuple[ClaimResult, Claim | None]:
        """Claim a slot: a paused trial to promote first (the promotion pruner), then a
        fresh slot, else one whose trial died or was interrupted."""
        if time.monotonic() >= self._next_dead_check:
            self.fail_dead_trials()
            # Once a heartbeat interval is enough: a dead trial is one silent for the
            # whole grace period, several intervals, and each check reads every running
            # trial's heartbeat, which many workers would otherwise do at every claim.
            interval = self.storage.get_heartbeat_interval() or 0
            self._next_dead_check = time.monotonic() + interval
        if self.promotion is not None:
            promoted = self._promote()
            if promoted is not None:
                return ClaimResult.CLAIMED, promoted
        fresh = self._claim_fresh()
        if fresh is not None:
            return ClaimResult.CLAIMED, fresh
        # Every slot has an owner row: look for work to take over, and repair rows
        # whose trial finished but whose owner died before marking the slot done.
        pending = False
        for row in self.rows():
            if row.status == SlotStatus.DONE or is_exhausted(row.status, row.attempts):
                continue
            state = self._trial_state(row.trial_id)
            if row.status in (SlotStatus.RUNNING, SlotStatus.PAUSED) and state in FINISHED:
                self._set_status(row.slot, row.token, SlotStatus.DONE)
                continue
            if row.status == SlotStatus.PAUSED:
                continue  # waits for a promotion, or for the end
            promotion = self._promotion_in_progress(row, state)
            if promotion is not None:
                pending = True
                if promotion == "waits again":  # lost by a dead worker: promote it anew
                    again = self._promote()
                    if again is not None:
                        return ClaimResult.CLAIMED, again
                continue
            if self._reclaimable(row, state):
                claim = self._take_over(row)
                if claim is not None:
                    return ClaimResult.CLAIMED, claim
            pending = True
        if pending:
            return ClaimResult.WAIT, None
        if self.promotion is not None:
            self.prune_paused()
        return (ClaimResult.STUCK if self.exhausted() else ClaimResult.ALL_DONE), None

    def _claim_fresh(self) -> Claim | None:
        """The lowest slot nobody has claimed yet (None: every slot has an owner row).

        A row is only ever added for the lowest slot its claimant saw free (an insert that
        loses moves on to the next) and never deleted, so the claimed slots are 0..k-1
        and the next free one is k, their count: one COUNT instead of reading every row,
        which a study of 10,000 trials would pay at each claim. Rows that are not
        contiguous (a table written otherwise) fall back to reading them all.
        """
        query = sa.select(sa.func.count(), sa.func.max(slots_table.c.slot)).where(
            slots_table.c.study_id == self.study_id
        )
        with self.engine.connect() as conn:
            count, top = conn.execute(query).one()
        if top is None or int(count) == int(top) + 1:
            free: Iterable[int] = range(int(count), self.n_slots)
        else:
            taken = {r.slot for r in self.rows()}
            free = (slot for slot in range(self.n_slots) if slot not in taken)
        for slot in free:
            claim = self._insert(slot)
            if claim is not None:
                return claim
        return None

    def fail_dead_trials(self) -> list[int]:
        """Fail the running trials whose heartbeat stopped, each with its reason.

        Like Optuna's ``fail_stale_trials``, but the trial records why it failed and who
        failed it (``no heartbeat for N s; taken over by worker W (pid P) on host H``),
        for ``status`` and the dashboard. Returns the ids this worker failed.
        """
        storage = self.storage
        if storage.get_heartbeat_interval() is None:
            return []
        failed = []
        for trial_id in stale_trial_ids(storage, self.study_id):
            if self.promotion is not None and self._keep_paused(trial_id):
                continue
            reason = f"no heartbeat for {self._silence_s(trial_id):.0f} s; taken over by {self.who}"
            # Another worker may fail it first: then this one leaves it alone.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                storage.set_trial_user_attr(trial_id, ERROR, reason)
                if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    failed.append(trial_id)
        return failed

    def _silence_s(self, trial_id: int) -> float:
        """Seconds since the trial's last heartbeat, by the database's clock."""
        beats = heartbeat_table()
        query = sa.select(sa.func.now(), beats.c.heartbeat).where(beats.c.trial_id == trial_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None or row[1] is None:
            return 0.0
        now = row[0] if not isinstance(row[0], str) else dt.datetime.fromisoformat(row[0])
        return max(0.0, float((now.replace(tzinfo=None) - row[1]).total_seconds()))

    def _reclaimable(self, row: sa.Row[Any], state: TrialState | None) -> bool:
        if row.status in (SlotStatus.RELEASED, SlotStatus.FAILED):
            return True
        if row.trial_id is None:
            # Claimed, but its trial never started: the owner died in between.
            return bool(time.time() - row.claimed_at > self.claim_grace_s)
        return state == TrialState.FAIL  # failed by a heartbeat check: its process died

    def _insert(self, slot: int) -> Claim | None:
        token = str(uuid.uuid4())
        row = {
            "study_id": self.study_id,
            "slot": slot,
            "token": token,
            "trial_id": None,
            "attempts": 1,
            "status": SlotStatus.RUNNING,
            "claimed_at": time.time(),
        }
        if not insert_once(self.engine, slots_table, row):
            return None  # another worker won this slot
        return Claim(slot=slot, token=token, attempt=1, resumed=False)

    def _take_over(self, row: sa.Row[Any]) -> Claim | None:
        token = str(uuid.uuid4())
        values = {
            "token": token,
            "trial_id": None,
            "attempts": row.attempts + 1,
            "status": SlotStatus.RUNNING,
            "claimed_at": time.time(),
            "rung": None,  # a new trial of the slot: no promotion in progress
        }
        if not update_if(self.engine, slots_table, self._owned(row.slot, row.token), values):
            return None  # someone else took it over first
        return Claim(slot=row.slot, token=token, attempt=row.attempts + 1, resumed=True)

    def _owned(self, slot: int, token: str) -> tuple[Any, ...]:
        """WHERE clauses matching ``slot`` only while ``token`` owns it (compare-and-set)."""
        return (
            slots_table.c.study_id == self.study_id,
            slots_table.c.slot == slot,
            slots_table.c.token == token,
        )

    # -- while and after running -----------------------------------------------------------
    def bind_trial(self, claim: Claim, trial_id: int) -> bool:
        """Record which trial runs the slot; False if the claim was lost meanwhile."""
        owned = self._owned(claim.slot, claim.token)
        return update_if(self.engine, slots_table, owned, {"trial_id": trial_id})

    def finish(self, claim: Claim, status: SlotStatus, *, refund: bool = False) -> None:
        """Mark the slot done, released (interrupted: claim again) or failed.

        ``refund`` gives the attempt back: a trial stopped by something that is not its
        own fault (Ctrl-C, a full disk, a setup error) does not count towards the
        slot's ``MAX_ATTEMPTS``.
        """
        self._set_status(claim.slot, claim.token, status, refund=refund)

    def settle_interrupted(self, claim: Claim, trial_id: int | None = None) -> TrialState | None:
        """Settle a claim whose worker was stopped (Ctrl-C, SIGTERM) before it did so itself.

        A signal can land anywhere: before the claim's trial exists, while it runs, or
        after Optuna recorded it finished. The slot follows the trial: done when it is
        complete or pruned; otherwise the trial, if still running, is failed as
        interrupted, and the slot released without spending an attempt. A claim already
        settled, or lost to another worker, is left alone. Returns the trial's state.
        """
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(slots_table).where(*self._owned(claim.slot, claim.token))
            ).first()
        if row is None or row.status != SlotStatus.RUNNING:
            return None
        trial_id = row.trial_id if row.trial_id is not None else trial_id
        state = self._trial_state(trial_id)
        if state in FINISHED:
            self._set_status(claim.slot, claim.token, SlotStatus.DONE)
            return state
        if state == TrialState.RUNNING and row.rung is not None and trial_id is not None:
            # A promoted trial stopped on its way to the next rung waits again where it
            # was promoted from, under its own number (its checkpoint keeps the epochs).
            self._repause(row)
            return state
        if state == TrialState.RUNNING and trial_id is not None:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
                self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            state = self._trial_state(trial_id)
        self._set_status(claim.slot, claim.token, SlotStatus.RELEASED, refund=True)
        return state

    def _set_status(
        self, slot: int, token: str, status: SlotStatus, *, refund: bool = False
    ) -> None:
        values: dict[str, Any] = {"status": status}
        if refund:
            values["attempts"] = slots_table.c.attempts - 1
        update_if(self.engine, slots_table, self._owned(slot, token), values)

    # -- the promotion pruner -----------------------------------------------------------
    def rung_values(self) -> list[dict[int, float]]:
        """Rung k -> {slot: its trial's value at rung k}, in the order the slots got there."""
        query = (
            sa.select(rungs_table.c.slot, rungs_table.c.rung, rungs_table.c.value)
            .where(rungs_table.c.study_id == self.study_id)
            .order_by(rungs_table.c.reached_at, rungs_table.c.slot)
        )
        with self.engine.connect() as conn:
            found = list(conn.execute(query))
        rungs: list[dict[int, float]] = [
            {} for _ in range(max((r.rung for r in found), default=-1) + 1)
        ]
        for slot, rung, value in found:
            rungs[rung][slot] = float(value)
        return rungs

    def _promote(self) -> Claim | None:
        """Claim the first paused trial the promotion rule lets go on (None: no such one)."""
        assert self.promotion is not None
        # Slots first, then rungs: a trial is paused only after its rung value is written,
        # so every paused trial seen here has its value among the rungs read after.
        query = sa.select(slots_table).where(
            slots_table.c.study_id == self.study_id, slots_table.c.status == SlotStatus.PAUSED
        )
        with self.engine.connect() as conn:
            rows = {r.slot: r for r in conn.execute(query)}
        paused = {s: r.rung for s, r in rows.items() if r.rung is not None}
        if not paused:
            return None
        maximize = self.study.direction == optuna.study.StudyDirection.MAXIMIZE
        order = promotable(
            self.rung_values(), paused, self.promotion.reduction_factor, maximize=maximize
        )
        for slot in order:
            row = rows[slot]
            token = str(uuid.uuid4())
            values = {"token": token, "status": SlotStatus.RUNNING, "claimed_at": time.time()}
            paused_row = (
                *self._owned(row.slot, row.token),
                slots_table.c.status == SlotStatus.PAUSED,
            )
            if not update_if(self.engine, slots_table, paused_row, values):
                continue  # another worker promoted it first
            # A heartbeat at once: a worker that dies from here on is found by it.
            self.storage.record_heartbeat(row.trial_id)
            return Claim(
                slot=row.slot,
                token=token,
                attempt=row.attempts,
                resumed=True,
                trial_id=row.trial_id,
                promoted_from=row.rung,
            )
        return None

    def pause(self, claim: Claim, rung: int, value: float) -> bool:
        """Record that the claim's trial reached ``rung`` with ``value`` and waits there.

        The rung's value is written before the slot says paused (see :meth:`_promote`);
        the trial's heartbeat is removed last, so a paused trial is never taken for dead.
        False when the claim was lost meanwhile.
        """
        row = {
            "study_id": self.study_id,
            "slot": claim.slot,
            "rung": rung,
            "value": value,
            "reached_at": time.time(),
        }
        insert_once(self.engine, rungs_table, row)  # already there: an earlier attempt's
        values = {"status": SlotStatus.PAUSED, "rung": rung}
        if not update_if(self.engine, slots_table, self._owned(claim.slot, claim.token), values):
            return False
        bound = claim.trial_id if claim.trial_id is not None else self._bound_trial(claim)
        self._forget_heartbeat(bound)
        return True

    def _bound_trial(self, claim: Claim) -> int | None:
        query = sa.select(slots_table.c.trial_id).where(*self._owned(claim.slot, claim.token))
        with self.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def _forget_heartbeat(self, trial_id: int | None) -> None:
        if trial_id is None:
            return
        beats = heartbeat_table()
        with self.engine.begin() as conn:
            conn.execute(beats.delete().where(beats.c.trial_id == trial_id))

    def _repause(self, row: sa.Row[Any]) -> bool:
        """Send a promoted trial whose run ended without reaching its next rung (a stop,
        a dead worker) back to the rung it was promoted from: it may be promoted again."""
        values = {"token": str(uuid.uuid4()), "status": SlotStatus.PAUSED}
        if not update_if(self.engine, slots_table, self._owned(row.slot, row.token), values):
            return False
        self._forget_heartbeat(row.trial_id)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            last = self.storage.get_trial(row.trial_id).last_step
            self.storage.set_trial_user_attr(row.trial_id, PAUSED_AT, last)
        return True

    def _slot_of_trial(self, trial_id: int) -> sa.Row[Any] | None:
        query = sa.select(slots_table).where(
            slots_table.c.study_id == self.study_id, slots_table.c.trial_id == trial_id
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first()

    def _keep_paused(self, trial_id: int) -> bool:
        """A stale heartbeat of a paused or promoted trial: the trial is not failed. A paused
        one only lost its heartbeat late (its worker died while pausing it); a promoted one
        whose worker died waits at its rung again. True when handled here."""
        row = self._slot_of_trial(trial_id)
        if row is None or row.rung is None:
            return False
        if row.status == SlotStatus.PAUSED:
            self._forget_heartbeat(trial_id)
            return True
        if row.status == SlotStatus.RUNNING:
            self._repause(row)
            return True
        return False

    def _promotion_in_progress(self, row: sa.Row[Any], state: TrialState | None) -> str | None:
        """For a promoted trial's slot: 'runs', or 'waits again' when its worker died before
        the first heartbeat and the claim's grace period is over (the trial is sent back to
        its rung here). None for any other slot."""
        if row.status != SlotStatus.RUNNING or row.rung is None or state != TrialState.RUNNING:
            return None
        beats = heartbeat_table()
        query = sa.select(beats.c.trial_id).where(beats.c.trial_id == row.trial_id)
        with self.engine.connect() as conn:
            beating = conn.execute(query).first() is not None
        if not beating and time.time() - row.claimed_at > self.claim_grace_s:
            return "waits again" if self._repause(row) else "runs"
        return "runs"

    def prune_paused(self) -> list[int]:
        """At the end (nothing runs, nothing can start or be promoted): prune each trial
        still paused, at the value of its last rung, and mark its slot done. Several
        workers may do this at once: a trial is told once, the others skip it."""
        pruned = []
        for row in self.rows():
            if row.status != SlotStatus.PAUSED or row.trial_id is None:
                continue
            number = self.storage.get_trial(row.trial_id).number
            # Another worker may tell it between that read and this write: Optuna's row lock
            # lets one of them through.
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                self.study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
            self._forget_heartbeat(row.trial_id)
            self._set_status(row.slot, row.token, SlotStatus.DONE)
            pruned.append(row.slot)
        return pruned

    def exhausted(self) -> list[int]:
        """Slots whose trial failed on each of its ``MAX_ATTEMPTS`` attempts."""
        return exhausted_slots(self.study, self.storage)

    def retry_failed(self) -> int:
        """Give every exhausted slot its attempts back (``--retry-failed``); how many."""
        with self.engine.begin() as conn:
            result = conn.execute(
                slots_table.update()
                .where(slots_table.c.study_id == self.study_id, *_exhausted_rows())
                .values(status=SlotStatus.RELEASED, attempts=0)
            )
        return int(result.rowcount or 0)

    def counts(self) -> dict[str, int]:
        """Slots by status, plus 'unclaimed' ('paused' only where the promotion pruner
        has paused trials)."""
        counts = {status.value: 0 for status in SlotStatus if status != SlotStatus.PAUSED}
        rows = self.rows()
        for row in rows:
            counts[row.status] = counts.get(row.status, 0) + 1
        counts["unclaimed"] = self.n_slots - len(rows)
        return counts

    def open_slots(self) -> int:
        """Slots a later run would still train (not done, attempts not used up)."""
        closed = sum(
            bool(r.status == SlotStatus.DONE or is_exhausted(r.status, r.attempts))
            for r in self.rows()
        )
        return self.n_slots - closed


def exhausted_slots(study: optuna.Study, storage: optuna.storages.RDBStorage) -> list[int]:
    """Slots of ``study`` that failed on every attempt, read without writing anything
    (no claims table yet: none)."""
    engine: sa.Engine = storage.engine
    if not sa.inspect(engine).has_table(slots_table.name):
        return []
    query = sa.select(slots_table.c.slot).where(
        slots_table.c.study_id == study_id(study), *_exhausted_rows()
    )
    with engine.connect() as conn:
        return [int(slot) for (slot,) in conn.execute(query.order_by(slots_table.c.slot))]
