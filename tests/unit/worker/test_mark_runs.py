"""One mark run per stream at a time, and no run waiting in the queue for another to end."""

from __future__ import annotations

from typing import Any

import pytest

from shared.coordination.run_lock import RunLock
from worker.tasks.pull import run_mark
from worker.wiring import MARK_DELAY_SECONDS, MARK_LOCK_SECONDS


def summary(*, more: bool = False) -> dict[str, Any]:
    return {"stream": "invoices", "marked": 3, "more": more}


def test_a_run_that_finds_another_going_asks_it_to_run_once_more_and_ends(fake_redis):
    scheduled: list[float] = []
    holder = RunLock(fake_redis, "acme", "mark:invoices", ttl=MARK_LOCK_SECONDS)
    assert holder.acquire()

    for _ in range(5):  # postings keep arriving while the holder marks
        result = run_mark(fake_redis, "acme", "invoices", summary, scheduled.append)
        assert result == {"stream": "invoices", "skipped": "another mark run is going; it will run once more"}
    assert scheduled == []  # nothing retried, nothing queued

    holder.release()  # the holder's run ends; the next run marks what the skipped ones came for
    assert run_mark(fake_redis, "acme", "invoices", summary, scheduled.append)["marked"] == 3
    assert scheduled == []  # the word left before this run started is answered by this run


def test_the_holder_runs_once_more_when_word_arrives_while_it_marks(fake_redis):
    scheduled: list[float] = []
    late: list[dict[str, Any]] = []

    def work() -> dict[str, Any]:
        # A run started while this one marks: it finds the lock held and leaves word.
        late.append(run_mark(fake_redis, "acme", "invoices", summary, scheduled.append))
        return summary()

    result = run_mark(fake_redis, "acme", "invoices", work, scheduled.append)

    assert result["marked"] == 3 and "skipped" in late[0]
    assert scheduled == [MARK_DELAY_SECONDS]  # exactly one more run, for the rows it may have missed


def test_a_run_with_rows_left_continues_and_a_free_stream_is_marked_at_once(fake_redis):
    scheduled: list[float] = []
    assert run_mark(fake_redis, "acme", "invoices", lambda: summary(more=True), scheduled.append)["more"]
    assert scheduled == [1.0]
    assert not RunLock(fake_redis, "acme", "mark:invoices", ttl=1).holder_ttl()  # released


def test_a_run_that_fails_keeps_the_word_for_the_next_run_and_releases_the_lock(fake_redis):
    scheduled: list[float] = []
    holder = RunLock(fake_redis, "acme", "mark:invoices", ttl=MARK_LOCK_SECONDS)

    def fails() -> dict[str, Any]:
        assert run_mark(fake_redis, "acme", "invoices", summary, scheduled.append)["skipped"]
        raise RuntimeError("zuora is down")

    with pytest.raises(RuntimeError):
        run_mark(fake_redis, "acme", "invoices", fails, scheduled.append)
    assert holder.acquire()  # released despite the error
    holder.release()
    assert fake_redis.exists("ledgerbridge:acme:mark-again:invoices")
    assert scheduled == []
