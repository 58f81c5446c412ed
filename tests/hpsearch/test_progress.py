"""The worker view: plain lines when output is not a terminal, a live table when it is."""

from __future__ import annotations

import io

from hpsearch.progress import Progress


def _events() -> list[dict]:
    return [
        {
            "kind": "trial_start",
            "worker": 0,
            "trial": 0,
            "slot": 0,
            "params": {"lr": 0.01},
            "epochs": 2,
        },
        {"kind": "epoch", "worker": 0, "trial": 0, "epoch": 1, "epochs": 2, "value": 0.5},
        {
            "kind": "trial_end",
            "worker": 0,
            "trial": 0,
            "state": "complete",
            "value": 0.7,
            "epochs_run": 2,
        },
        {
            "kind": "trial_end",
            "worker": 1,
            "trial": 1,
            "state": "pruned",
            "value": None,
            "epochs_run": 1,
        },
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
        progress.handle({"kind": "trial_end", "worker": 0, "state": "complete", "value": value})
    assert progress.best == 0.4


def test_live_table_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(total=4, metric="val_accuracy", direction="maximize", stream=out, live=True)
    for event in _events():
        progress.handle(event)
    progress.close()
    text = out.getvalue()
    assert "2/4 trials done" in text and "lr=0.01" in text
