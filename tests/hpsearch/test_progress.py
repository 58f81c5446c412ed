"""The worker view: plain lines when output is not a terminal, a live table when it is."""

from __future__ import annotations

import io

import pytest

from hpsearch.run.events import EpochEnded, Event, TrialEnded, TrialStarted, WorkerStopped
from hpsearch.run.progress import Progress, estimate_eta, format_duration


def _events() -> list[Event]:
    return [
        TrialStarted(worker=0, trial=0, slot=0, params={"lr": 0.01}, epochs=2),
        EpochEnded(worker=0, trial=0, epoch=1, epochs=2, value=0.5),
        TrialEnded(worker=0, trial=0, state="complete", value=0.7, epochs_run=2),
        TrialEnded(worker=1, trial=1, state="pruned", value=None, epochs_run=1),
    ]


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(total=4, metric="val_accuracy", direction="maximize", stream=out)
    for event in _events():
        progress.handle(event)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert "trial 0 epoch 1/2 val_accuracy=0.5000" in lines[1]
    # k of N and the best so far, counting pruned trials as finished
    assert "[1/4 done, best 0.7000]" in lines[2]
    assert "[2/4 done, best 0.7000]" in lines[3]


def test_minimize_tracks_the_lowest_value() -> None:
    progress = Progress(total=2, metric="val_loss", direction="minimize", stream=io.StringIO())
    for value in (0.9, 0.4, 0.6):
        progress.handle(TrialEnded(worker=0, trial=None, state="complete", value=value))
    assert progress.best == 0.4


def test_live_table_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(total=4, metric="val_accuracy", direction="maximize", stream=out, live=True)
    for event in _events():
        progress.handle(event)
    progress.close()
    text = out.getvalue()
    assert "2/4 trials done" in text and "lr=0.01" in text


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _start(worker: int, trial: int, params: dict | None = None) -> TrialStarted:
    return TrialStarted(worker, trial, slot=trial, params=params or {"lr": 0.01}, epochs=4)


def _end(worker: int, trial: int, state: str, value: float | None, epochs: int) -> TrialEnded:
    return TrialEnded(worker, trial, state, value=value, epochs_run=epochs, best_epoch=epochs)


def test_format_duration() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(59.9) == "59s"  # whole seconds, never rounded up
    assert format_duration(185) == "3m 05s"
    assert format_duration(7620) == "2h 07m"
    assert format_duration(-3) == "0s"


def test_estimate_eta() -> None:
    # nothing finished yet: no estimate
    assert estimate_eta([], remaining=5, running_elapsed=[3.0], workers=1) is None
    # 4 left at 10 s each on 2 workers, one of them 4 s into its trial
    assert estimate_eta([8.0, 12.0], 4, [4.0], 2) == (40 - 4) / 2
    # a running trial past the mean counts as one mean done, never as negative time
    assert estimate_eta([10.0], 1, [25.0], 1) == 0.0
    assert estimate_eta([10.0], 0, [], 1) == 0.0
    assert estimate_eta([10.0], 3, [], 0) is None  # every worker stopped


def test_elapsed_clock_ticks_without_events() -> None:
    clock = FakeClock()
    progress = Progress(6, "val_accuracy", "maximize", stream=io.StringIO(), clock=clock)
    progress.handle(_start(0, 0))
    assert "elapsed 0s" in progress.title()
    clock.now += 25  # no event in between: the title still moves on
    assert "elapsed 25s" in progress.title()
    clock.now += 60
    assert "elapsed 1m 25s" in progress.title()


def test_eta_appears_once_a_trial_has_finished() -> None:
    clock = FakeClock()
    progress = Progress(6, "val_accuracy", "maximize", stream=io.StringIO(), clock=clock)
    progress.handle(_start(0, 0))
    progress.handle(_start(1, 1))
    clock.now += 30
    assert progress.eta() is None and "ETA" not in progress.title()
    progress.handle(_end(0, 0, "complete", 0.9, 4))  # 30 s
    progress.handle(_start(0, 2))
    # 5 left at 30 s on 2 workers, worker 1's trial 30 s (one mean) in already
    assert progress.eta() == (5 * 30 - 30) / 2
    assert "ETA 1m 00s" in progress.title()
    clock.now += 10  # and it counts down between events
    assert progress.eta() == (5 * 30 - 30 - 10) / 2


def test_finished_and_pruned_trials_are_lines_above_the_live_table() -> None:
    out = io.StringIO()
    clock = FakeClock()
    progress = Progress(6, "val_accuracy", "maximize", stream=out, live=True, clock=clock)
    progress.handle(_start(0, 3))
    clock.now += 12
    progress.handle(_end(0, 3, "pruned", 0.48, 1))
    progress.close()
    text = out.getvalue()
    assert "trial 3 pruned at epoch 1, val_accuracy 0.4800 (12s)" in text


def test_trial_end_lines_in_plain_mode() -> None:
    out = io.StringIO()
    progress = Progress(6, "val_accuracy", "maximize", stream=out, clock=FakeClock())
    progress.handle(_end(0, 2, "complete", 0.9, 4))
    progress.handle(_end(0, 3, "pruned", 0.48, 1))
    progress.handle(_end(0, 4, "failed", None, 0))
    lines = out.getvalue().splitlines()
    assert "trial 2 complete: val_accuracy 0.9000 at epoch 4 [1/6 done" in lines[0]
    assert "trial 3 pruned at epoch 1, val_accuracy 0.4800 [2/6 done" in lines[1]
    assert "trial 4 failed after 0 epoch(s) [2/6 done" in lines[2]


def test_live_table_columns_are_labelled_and_adam_shows_no_momentum() -> None:
    from rich.console import Console

    progress = Progress(6, "val_accuracy", "maximize", stream=io.StringIO(), clock=FakeClock())
    progress.handle(_start(0, 0, {"lr": 0.001, "momentum": 0.9, "optimizer": "adam"}))
    progress.handle(_start(1, 1, {"lr": 0.01, "momentum": 0.9, "optimizer": "sgd"}))
    console = Console(file=io.StringIO(), width=200)
    console.print(progress.table())
    text = console.file.getvalue()
    for header in ("worker", "trial", "epoch", "val_accuracy (last epoch)", "trial time"):
        assert header in text
    adam, sgd = (line for line in text.splitlines() if "optimizer=" in line)
    assert "momentum" not in adam and "momentum=0.9" in sgd


@pytest.mark.parametrize(
    ("reason", "flag"), [("n-trials reached", "--n-trials"), ("timeout", "--timeout")]
)
def test_a_run_stopped_by_a_flag_says_how_to_go_on(reason: str, flag: str) -> None:
    out = io.StringIO()
    progress = Progress(6, "val_accuracy", "maximize", stream=out, clock=FakeClock())
    progress.handle(_end(0, 0, "complete", 0.9, 4))
    progress.handle(_end(0, 1, "pruned", 0.5, 1))
    progress.handle(WorkerStopped(worker=0, reason=reason))
    progress.close()
    last = out.getvalue().splitlines()[-1]
    assert last == f"{flag} reached: run the same command again to continue: 4 of 6 left"


def test_a_finished_study_has_no_how_to_go_on_line() -> None:
    out = io.StringIO()
    progress = Progress(1, "val_accuracy", "maximize", stream=out, clock=FakeClock())
    progress.handle(_end(0, 0, "complete", 0.9, 4))
    progress.handle(WorkerStopped(worker=0, reason="study done"))
    progress.close()
    assert "run the same command again" not in out.getvalue()


def test_a_run_message_adds_no_worker_row() -> None:
    out = io.StringIO()
    progress = Progress(6, "val_accuracy", "maximize", stream=out, clock=FakeClock())
    progress.message("study 'grid': 6 trials in all")
    assert progress.workers == {} and "study 'grid'" in out.getvalue()


def test_a_trial_cut_off_before_it_was_created_is_not_named_none() -> None:
    out = io.StringIO()
    progress = Progress(6, "val_accuracy", "maximize", stream=out, clock=FakeClock())
    progress.handle(TrialEnded(0, None, "failed"))
    line = out.getvalue().splitlines()[0]
    assert "trial None" not in line
    assert "trial not created (failed); its slot is free to run again [0/6 done" in line
