"""Exactly-once slot claims on real storages (a SQLite file and PostgreSQL).

Each SlotBoard opens its own storage, so two boards behave like two worker processes:
separate engines, separate connections, one database.
"""

from __future__ import annotations

import multiprocessing
import time
import traceback
from collections.abc import Callable, Iterator

import optuna
import pytest
from optuna.trial import TrialState

from hpsearch.run.claims import MAX_ATTEMPTS, ClaimResult, SlotBoard, SlotStatus
from hpsearch.storage import open_storage
from hpsearch.storage.optuna_api import heartbeat_table
from hpsearch.study.promotion import Rungs

MakeBoard = Callable[..., SlotBoard]

# Trials are started with study.ask() here, without Study.optimize's heartbeat thread.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")


@pytest.fixture
def make_board(storage_url: str, study_name: str) -> Iterator[MakeBoard]:
    """Boards on one study, each on its own storage (as separate workers would be)."""
    opened: list[optuna.storages.RDBStorage] = []

    def make(n_slots: int, **kwargs) -> SlotBoard:
        storage = open_storage(storage_url)
        opened.append(storage)
        study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True)
        return SlotBoard(study, storage, n_slots, **kwargs)

    yield make
    for storage in opened:
        storage.engine.dispose()


def _claim(board: SlotBoard):
    """A claim that must succeed."""
    outcome, claim = board.claim()
    assert outcome is ClaimResult.CLAIMED, outcome
    assert claim is not None
    return claim


def _start_trial(board: SlotBoard, claim) -> optuna.trial.Trial:
    """What a worker does after claiming: start a trial and bind it to the slot."""
    trial = board.study.ask()
    assert board.bind_trial(claim, trial._trial_id)
    return trial


# -- fresh slots --------------------------------------------------------------------------
def test_two_boards_claiming_alternately_get_every_slot_once(make_board: MakeBoard):
    a, b = make_board(6), make_board(6)
    claims = [_claim(board) for board in (a, b, a, b, a, b)]
    slots = [claim.slot for claim in claims]
    # Fresh slots are handed out in order, each to exactly one board.
    assert slots == list(range(6))
    # A fresh slot is a first attempt with nothing to resume.
    assert all(c.attempt == 1 and not c.resumed for c in claims)
    # Every claim has its own owner token.
    assert len({c.token for c in claims}) == 6
    # With every slot running, neither board can claim more: they wait.
    assert a.claim() == (ClaimResult.WAIT, None)
    assert b.claim() == (ClaimResult.WAIT, None)


def test_losing_the_insert_race_moves_on_to_the_next_slot(make_board: MakeBoard):
    a, b = make_board(3), make_board(3)
    insert = a._insert
    rival: list = []

    def rival_claims_then_insert(slot: int):
        # b claims between a's look at the table and a's INSERT: the race a worker can lose.
        if not rival:
            rival.append(_claim(b))
        return insert(slot)

    a._insert = rival_claims_then_insert
    mine = _claim(a)
    # The rival won slot 0; a's INSERT of slot 0 failed and it took slot 1 instead.
    assert (rival[0].slot, mine.slot) == (0, 1)
    # The table holds one row per slot, owned by the winner's token.
    owners = {row.slot: row.token for row in b.rows()}
    assert owners == {0: rival[0].token, 1: mine.token}


# -- take-over ----------------------------------------------------------------------------
def test_released_slot_is_taken_over_and_the_stale_token_is_powerless(make_board: MakeBoard):
    a, b = make_board(1), make_board(1)
    old = _claim(a)
    a.finish(old, SlotStatus.RELEASED)
    new = _claim(b)
    # The released slot is claimed again as its second attempt, to be resumed.
    assert (new.slot, new.attempt, new.resumed) == (old.slot, 2, True)
    # The take-over wrote a new owner token.
    assert new.token != old.token
    trial = b.study.ask()
    # The old owner can no longer bind a trial to the slot ...
    assert not a.bind_trial(old, trial._trial_id)
    # ... nor finish it: the slot stays running for its new owner.
    a.finish(old, SlotStatus.DONE)
    assert [(r.status, r.token) for r in b.rows()] == [(SlotStatus.RUNNING, new.token)]
    # The new owner binds and finishes normally.
    assert b.bind_trial(new, trial._trial_id)
    b.finish(new, SlotStatus.DONE)
    assert b.claim() == (ClaimResult.ALL_DONE, None)
    # A late finish by the old owner cannot reopen a finished slot.
    a.finish(old, SlotStatus.RELEASED)
    assert a.claim() == (ClaimResult.ALL_DONE, None)


def test_only_one_of_two_take_overs_of_the_same_row_wins(make_board: MakeBoard):
    a, b = make_board(1), make_board(1)
    first = _claim(a)
    a.finish(first, SlotStatus.RELEASED)
    # Both boards saw the same released row (same token) before either acted.
    (row_a,) = a.rows()
    (row_b,) = b.rows()
    won = a._take_over(row_a)
    lost = b._take_over(row_b)
    # The compare-and-set on the token lets exactly one of them own the slot.
    assert won is not None and lost is None
    assert [r.token for r in b.rows()] == [won.token]


def test_trial_failed_by_heartbeat_check_frees_its_slot(make_board: MakeBoard):
    a, b = make_board(1), make_board(1)
    claim = _claim(a)
    trial = _start_trial(a, claim)
    # While its trial runs, the slot is not claimable.
    assert b.claim() == (ClaimResult.WAIT, None)
    # What fail_stale_trials does when the owning process stops beating.
    b.storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    again = _claim(b)
    # The dead worker's slot is taken over and resumed as its next attempt.
    assert (again.slot, again.attempt, again.resumed) == (claim.slot, 2, True)


def test_claim_without_trial_is_taken_over_only_after_the_grace(make_board: MakeBoard):
    a = make_board(1)
    patient = make_board(1, claim_grace_s=3600.0)
    impatient = make_board(1, claim_grace_s=-1.0)
    claim = _claim(a)
    # A claim whose trial has not started yet is left alone within the grace period ...
    assert patient.claim() == (ClaimResult.WAIT, None)
    # ... and taken over once the grace is over (its owner died before starting).
    again = _claim(impatient)
    assert (again.slot, again.attempt) == (claim.slot, 2)


# -- failed slots -------------------------------------------------------------------------
def test_failed_slot_is_retried_up_to_max_attempts_then_closed(make_board: MakeBoard):
    a, b = make_board(1), make_board(1)
    attempts = []
    for board in [a, b] * MAX_ATTEMPTS:
        outcome, claim = board.claim()
        if outcome is not ClaimResult.CLAIMED:
            break
        attempts.append((claim.attempt, claim.resumed))
        board.finish(claim, SlotStatus.FAILED)
    # The slot ran MAX_ATTEMPTS times, attempts counted across boards; retries resume.
    assert attempts == [(1, False)] + [(n, True) for n in range(2, MAX_ATTEMPTS + 1)]
    # After the last failure nothing is left to run, but the study is not done: stuck.
    assert a.claim() == (ClaimResult.STUCK, None)
    assert b.counts()[SlotStatus.FAILED] == 1 and a.exhausted() == [0]
    # --retry-failed gives the slot its attempts back, and it is claimed again.
    assert a.retry_failed() == 1
    outcome, claim = b.claim()
    assert outcome is ClaimResult.CLAIMED and claim is not None and claim.attempt == 1


# -- wait and done ------------------------------------------------------------------------
def test_wait_while_slots_run_elsewhere_done_when_all_done(make_board: MakeBoard):
    a, b = make_board(2), make_board(2)
    first, second = _claim(a), _claim(a)
    # Nothing to claim, but running slots may still come back: wait.
    assert b.claim() == (ClaimResult.WAIT, None)
    a.finish(first, SlotStatus.DONE)
    # One slot still running: still wait.
    assert b.claim() == (ClaimResult.WAIT, None)
    a.finish(second, SlotStatus.DONE)
    # Every slot done: both boards learn the study is finished.
    assert b.claim() == (ClaimResult.ALL_DONE, None)
    assert a.claim() == (ClaimResult.ALL_DONE, None)


def test_study_without_slots_is_done_at_once(make_board: MakeBoard):
    # A budget of zero trials leaves nothing to claim or wait for.
    assert make_board(0).claim() == (ClaimResult.ALL_DONE, None)


@pytest.mark.parametrize("state", [TrialState.COMPLETE, TrialState.PRUNED])
def test_running_row_of_a_finished_trial_is_repaired(make_board: MakeBoard, state):
    a, b = make_board(1), make_board(1)
    claim = _claim(a)
    trial = _start_trial(a, claim)
    if state == TrialState.COMPLETE:
        a.study.tell(trial, 0.5)
    else:
        a.study.tell(trial, state=TrialState.PRUNED)
    # The owner died after telling the trial but before marking the slot done.
    assert [r.status for r in b.rows()] == [SlotStatus.RUNNING]
    # The next claim repairs the row instead of re-running a finished trial ...
    assert b.claim() == (ClaimResult.ALL_DONE, None)
    # ... and the row now says done.
    assert [(r.status, r.attempts) for r in b.rows()] == [(SlotStatus.DONE, 1)]


# -- counts -------------------------------------------------------------------------------
def test_counts_by_status(make_board: MakeBoard):
    board = make_board(5)
    # Before any claim, every slot is unclaimed.
    assert board.counts() == {
        SlotStatus.RUNNING: 0,
        SlotStatus.DONE: 0,
        SlotStatus.RELEASED: 0,
        SlotStatus.FAILED: 0,
        "unclaimed": 5,
    }
    done, failed, released, _running = (_claim(board) for _ in range(4))
    board.finish(done, SlotStatus.DONE)
    board.finish(failed, SlotStatus.FAILED)
    board.finish(released, SlotStatus.RELEASED)
    # One slot of each status, and the fifth never claimed.
    assert board.counts() == {
        SlotStatus.RUNNING: 1,
        SlotStatus.DONE: 1,
        SlotStatus.RELEASED: 1,
        SlotStatus.FAILED: 1,
        "unclaimed": 1,
    }


def test_boards_of_two_studies_do_not_share_slots(make_board: MakeBoard, storage_url: str):
    board = make_board(1)
    storage = open_storage(storage_url)
    try:
        other_study = optuna.create_study(storage=storage)
        other = SlotBoard(other_study, storage, 1)
        # Slot 0 of one study and slot 0 of another are different slots.
        assert _claim(board).slot == 0
        assert _claim(other).slot == 0
    finally:
        storage.engine.dispose()


# -- many processes -----------------------------------------------------------------------
N_PROCESSES = 6
N_SLOTS = 40


def _claim_until_done(url: str, study_name: str, barrier, results) -> None:
    """One worker process: claim until the study is done; report (slot, attempt) claimed.

    Even slots are released after their first attempt, so that take-overs race as well as
    fresh inserts.
    """
    try:
        storage = open_storage(url)
        study = optuna.load_study(study_name=study_name, storage=storage)
        board = SlotBoard(study, storage, N_SLOTS)
        claimed = []
        barrier.wait(timeout=300)
        while True:
            outcome, claim = board.claim()
            if outcome is ClaimResult.ALL_DONE:
                break
            if outcome is ClaimResult.WAIT:
                time.sleep(0.01)  # politeness only: correctness does not depend on it
                continue
            claimed.append((claim.slot, claim.attempt))
            again = claim.slot % 2 == 0 and claim.attempt == 1
            board.finish(claim, SlotStatus.RELEASED if again else SlotStatus.DONE)
        storage.engine.dispose()
        results.put(("ok", claimed))
    except BaseException:
        results.put(("error", traceback.format_exc()))


@pytest.mark.slow
def test_many_processes_claim_every_slot_exactly_once(storage_url: str, study_name: str):
    storage = open_storage(storage_url)
    study = optuna.create_study(study_name=study_name, storage=storage)
    board = SlotBoard(study, storage, N_SLOTS)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(N_PROCESSES), ctx.Queue()
    procs = [
        ctx.Process(target=_claim_until_done, args=(storage_url, study_name, barrier, results))
        for _ in range(N_PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=300) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    errors = [text for kind, text in reports if kind == "error"]
    # No worker process crashed.
    assert not errors, errors[0]
    claimed = sorted(pair for _, pairs in reports for pair in pairs)
    expected = sorted([(s, 1) for s in range(N_SLOTS)] + [(s, 2) for s in range(0, N_SLOTS, 2)])
    # Every attempt of every slot went to exactly one process: no slot skipped, none
    # run twice at once, each released slot taken over exactly once.
    assert claimed == expected
    # And the board agrees: all slots done.
    assert board.counts() == {
        SlotStatus.RUNNING: 0,
        SlotStatus.DONE: N_SLOTS,
        SlotStatus.RELEASED: 0,
        SlotStatus.FAILED: 0,
        "unclaimed": 0,
    }
    storage.engine.dispose()


# -- a stop signal that lands anywhere ---------------------------------------------------
def test_a_stop_settles_the_slot_by_its_trial(make_board: MakeBoard):
    """Ctrl-C or SIGTERM can land before a claim's trial exists, while it runs, or after
    Optuna recorded it complete: the slot follows the trial, and attempts are not spent."""
    board = make_board(4)
    rows = lambda: {r.slot: (r.status, r.attempts) for r in board.rows()}  # noqa: E731

    before_trial = _claim(board)  # stopped before its trial was created
    assert board.settle_interrupted(before_trial) is None
    assert rows()[before_trial.slot] == (SlotStatus.RELEASED, 0)

    running = _claim(board)  # stopped while training
    trial = _start_trial(board, running)
    assert board.settle_interrupted(running) == TrialState.FAIL
    frozen = board.storage.get_trial(trial._trial_id)
    assert frozen.state == TrialState.FAIL and frozen.user_attrs["interrupted"] is True
    assert rows()[running.slot] == (SlotStatus.RELEASED, 0)

    finished = _claim(board)  # stopped after Optuna recorded the trial complete
    trial = _start_trial(board, finished)
    board.study.tell(trial, 0.5)
    assert board.settle_interrupted(finished) == TrialState.COMPLETE
    assert rows()[finished.slot] == (SlotStatus.DONE, 1)  # done: no one trains it again

    # Settling again (the worker's outer handler after run_claim's) changes nothing.
    assert board.settle_interrupted(finished) is None
    assert board.settle_interrupted(running) is None
    assert rows()[running.slot] == (SlotStatus.RELEASED, 0)


def test_a_stop_before_the_bind_finds_the_trial_it_is_given(make_board: MakeBoard):
    board = make_board(1)
    claim = _claim(board)
    trial = board.study.ask()  # created, not yet bound to the slot
    assert board.settle_interrupted(claim, trial._trial_id) == TrialState.FAIL
    assert board.storage.get_trial(trial._trial_id).user_attrs["interrupted"] is True
    assert board.rows()[0].status == SlotStatus.RELEASED


# -- the promotion pruner: paused trials promoted exactly once ---------------------------
PROMOTION_SLOTS, PROMOTION_EPOCHS = 27, 9
PROMOTION_RUNGS = Rungs(1, 3)  # trials pause at epochs 1 and 3 of 9


def _value(slot: int, epoch: int) -> float:
    """A fixed ranking of the slots, the same at every epoch, in no slot order."""
    return ((slot * 10) % PROMOTION_SLOTS) / PROMOTION_SLOTS + 0.001 * epoch


def _promote_until_done(url: str, study_name: str, barrier, results) -> None:
    """One worker process under the promotion pruner: claim, train to the next rung or the
    end (reporting each epoch), pause or finish; report every claim's (slot, rung)."""
    try:
        storage = open_storage(url)
        study = optuna.load_study(study_name=study_name, storage=storage)
        board = SlotBoard(study, storage, PROMOTION_SLOTS, promotion=PROMOTION_RUNGS)
        stops = [*PROMOTION_RUNGS.epochs_of(PROMOTION_EPOCHS), PROMOTION_EPOCHS]
        claimed = []
        barrier.wait(timeout=300)
        while True:
            outcome, claim = board.claim()
            if outcome is ClaimResult.ALL_DONE:
                break
            if outcome is ClaimResult.WAIT:
                time.sleep(0.01)
                continue
            claimed.append((claim.slot, claim.promoted_from))
            if claim.trial_id is None:
                trial = study.ask()
                assert board.bind_trial(claim, trial._trial_id)
                start = 0
            else:
                trial = optuna.trial.Trial(study, claim.trial_id)
                start = max(storage.get_trial(claim.trial_id).intermediate_values)
            stop = next(s for s in stops if s > start)
            for epoch in range(start + 1, stop + 1):
                trial.report(_value(claim.slot, epoch), epoch)
            if stop == PROMOTION_EPOCHS:
                study.tell(trial, _value(claim.slot, stop))
                board.finish(claim, SlotStatus.DONE)
            else:
                assert board.pause(claim, stops.index(stop), _value(claim.slot, stop))
        storage.engine.dispose()
        results.put(("ok", claimed))
    except BaseException:
        results.put(("error", traceback.format_exc()))


@pytest.mark.slow
def test_many_processes_promote_each_paused_trial_exactly_once(storage_url: str, study_name):
    storage = open_storage(storage_url)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
    board = SlotBoard(study, storage, PROMOTION_SLOTS, promotion=PROMOTION_RUNGS)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(N_PROCESSES), ctx.Queue()
    procs = [
        ctx.Process(target=_promote_until_done, args=(storage_url, study_name, barrier, results))
        for _ in range(N_PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        reports = [results.get(timeout=300) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.kill()
    errors = [text for kind, text in reports if kind == "error"]
    assert not errors, errors[0]
    claimed = [pair for _, pairs in reports for pair in pairs]
    # Each slot started once, and each (slot, rung) promotion went to exactly one process.
    assert len(claimed) == len(set(claimed))
    assert sorted(s for s, rung in claimed if rung is None) == list(range(PROMOTION_SLOTS))
    promoted = {rung: {s for s, r in claimed if r == rung} for rung in (0, 1)}
    # Every slot reached rung 0; the final top third of each rung went on.
    rung0 = sorted(range(PROMOTION_SLOTS), key=lambda s: -_value(s, 1))
    assert set(rung0[: PROMOTION_SLOTS // 3]) <= promoted[0]
    rung1 = sorted(promoted[0], key=lambda s: -_value(s, 3))
    assert set(rung1[: max(1, len(promoted[0]) // 3)]) <= promoted[1]
    # One trial per slot, each finished: completed at the end or pruned where it waited.
    trials = optuna.load_study(study_name=study_name, storage=storage).trials
    assert len(trials) == PROMOTION_SLOTS
    states = {t.state for t in trials}
    assert states <= {TrialState.COMPLETE, TrialState.PRUNED}
    complete = {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == len(promoted[1])
    assert board.counts()["done"] == PROMOTION_SLOTS
    storage.engine.dispose()


def _paused_study(make_board: MakeBoard, url: str, name: str, **kwargs):
    """Three slots started and paused at rung 0 (values 0.1, 0.9, 0.5): slot 1 may go on."""
    storage = open_storage(url)
    optuna.create_study(study_name=name, storage=storage, direction="maximize")
    storage.engine.dispose()
    board = make_board(3, promotion=Rungs(1, 3), **kwargs)
    # All three run at once (a paused trial alone at its rung would be promoted first).
    started = [(claim := _claim(board), _start_trial(board, claim)) for _ in range(3)]
    for (claim, trial), value in zip(started, (0.1, 0.9, 0.5), strict=True):
        trial.report(value, 1)
        assert board.pause(claim, 0, value)
    return board, [trial._trial_id for _, trial in started]


def test_a_promotion_stopped_or_lost_waits_at_its_rung_again(
    make_board: MakeBoard, storage_url: str, study_name: str
):
    """A stop during a promoted run, and a promotion whose worker died before its first
    heartbeat: the trial waits at its rung again, keeps its number, and goes on later."""
    board, ids = _paused_study(make_board, storage_url, study_name, claim_grace_s=0.0)
    promoted = _claim(board)
    assert (promoted.slot, promoted.trial_id, promoted.promoted_from) == (1, ids[1], 0)
    # Nothing else may go on: 3 at rung 0, so only the top one.
    other = make_board(3, promotion=Rungs(1, 3))
    assert other.claim() == (ClaimResult.WAIT, None)
    # A stop in the promoted run: the trial stays running to Optuna, the slot waits again.
    assert board.settle_interrupted(promoted) == TrialState.RUNNING
    assert board.storage.get_trial(ids[1]).state == TrialState.RUNNING
    assert {r.slot: r.status for r in board.rows()}[1] == SlotStatus.PAUSED
    again = _claim(other)
    assert (again.slot, again.trial_id) == (1, ids[1])
    # Its worker dies before the first heartbeat (the one written at the claim is lost):
    # past the claim's grace another worker sends it back to its rung and promotes it.
    beats = heartbeat_table()
    with other.engine.begin() as conn:
        conn.execute(beats.delete().where(beats.c.trial_id == ids[1]))
    third = _claim(board)
    assert (third.slot, third.trial_id, third.promoted_from) == (1, ids[1], 0)
    assert third.token != again.token
    # The lost claim can no longer pause or finish the slot.
    assert not other.pause(again, 1, 0.95)


def test_at_the_end_the_trials_still_paused_are_pruned(
    make_board: MakeBoard, storage_url: str, study_name: str
):
    board, ids = _paused_study(make_board, storage_url, study_name)
    promoted = _claim(board)
    trial = optuna.trial.Trial(board.study, promoted.trial_id)
    trial.report(0.95, 9)
    board.study.tell(trial, 0.95)
    board.finish(promoted, SlotStatus.DONE)
    assert board.claim() == (ClaimResult.ALL_DONE, None)
    states = [board.storage.get_trial(i).state for i in ids]
    assert states == [TrialState.PRUNED, TrialState.COMPLETE, TrialState.PRUNED]
    assert board.counts()["done"] == 3
    # A pruned paused trial keeps the value of its rung.
    assert board.storage.get_trial(ids[2]).value == 0.5


def test_a_study_smaller_than_the_factor_still_finishes_its_best(
    make_board: MakeBoard, storage_url: str, study_name: str
):
    """Two trials and a factor of 3: the best of each rung goes on, so one trial reaches
    its last epoch and the study has a best (a top third of two would be nobody)."""
    storage = open_storage(storage_url)
    optuna.create_study(study_name=study_name, storage=storage, direction="maximize")
    storage.engine.dispose()
    board = make_board(2, promotion=Rungs(1, 3))
    started = [(claim := _claim(board), _start_trial(board, claim)) for _ in range(2)]
    for (claim, trial), value in zip(started, (0.3, 0.6), strict=True):
        trial.report(value, 1)
        assert board.pause(claim, 0, value)
    at_rung_1 = _claim(board)
    assert (at_rung_1.slot, at_rung_1.promoted_from) == (1, 0)
    trial = optuna.trial.Trial(board.study, at_rung_1.trial_id)
    for epoch in (2, 3):
        trial.report(0.7, epoch)
    assert board.pause(at_rung_1, 1, 0.7)
    to_the_end = _claim(board)  # alone at rung 1: the best of its rung
    assert (to_the_end.slot, to_the_end.promoted_from) == (1, 1)
    board.study.tell(optuna.trial.Trial(board.study, to_the_end.trial_id), 0.8)
    board.finish(to_the_end, SlotStatus.DONE)
    assert board.claim() == (ClaimResult.ALL_DONE, None)
    states = sorted(t.state.name for t in board.study.trials)
    assert states == ["COMPLETE", "PRUNED"]
