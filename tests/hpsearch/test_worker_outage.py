"""A worker between trials rides out a storage outage wherever it reads the study.

The stop rule reads the study before each claim; a PostgreSQL restart that lands there
once ended the worker with a traceback (its trials were run again by the others, but
the worker was lost for the rest of the run)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from hpsearch.run.events import Message
from hpsearch.run.worker import TrialBudget, Worker


class _FlakyRule:
    """A stop rule whose first ``failures`` reads meet a lost connection."""

    def __init__(self, failures: int, reason: str | None) -> None:
        self.failures, self.reason, self.calls = failures, reason, 0

    def stop_reason(self, study: Any) -> str | None:
        self.calls += 1
        if self.calls <= self.failures:
            raise sa.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection"))
        return self.reason


def _worker(kind: _FlakyRule, said: list[Any]) -> Worker:
    worker = Worker.__new__(Worker)  # no storage or data: only the loop's checks run
    worker.ctx = SimpleNamespace(deadline=None, kind=kind)  # type: ignore[assignment]
    worker.budget, worker.emit, worker.index = TrialBudget(None), said.append, 0
    worker.study = None  # type: ignore[assignment]
    return worker


def test_stop_rule_read_during_an_outage_waits_for_the_storage(monkeypatch) -> None:
    monkeypatch.setattr("hpsearch.storage.resilience.time.sleep", lambda _s: None)
    said: list[Any] = []
    rule = _FlakyRule(failures=3, reason="the stop rule: no better trial in 20")
    assert _worker(rule, said).why_stop() == "the stop rule: no better trial in 20"
    assert rule.calls == 4
    # the wait is said once, with the database's message
    texts = [event.text for event in said if isinstance(event, Message)]
    assert len(texts) == 1
    assert "storage unreachable while checking the stop rule" in texts[0]
    assert "server closed the connection" in texts[0]


def test_no_outage_no_message(monkeypatch) -> None:
    said: list[Any] = []
    rule = _FlakyRule(failures=0, reason=None)
    assert _worker(rule, said).why_stop() is None
    assert rule.calls == 1 and said == []
