"""The pull task: a failed pull is a failed task, after the ledger has recorded why."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry

from shared.errors import AuthFailed, RateLimited
from tests.unit.item_level.support import ItemHarness
from worker.tasks import pull as pull_tasks


class _Lock:
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def extend(self) -> bool:
        return True


@pytest.fixture
def harness(tmp_path, fake_redis, monkeypatch):
    h = ItemHarness(tmp_path, fake_redis)
    monkeypatch.setattr(pull_tasks, "item_context", lambda connection=None: h.ctx)
    monkeypatch.setattr(pull_tasks, "stream_lock", lambda connection, stream: _Lock())
    return h


def _fail_pages(harness, exc):
    def pages(*args, **kwargs):
        raise exc

    harness.ctx.zuora.objects.pages = pages


def test_a_pull_refused_by_zuora_fails_the_task_after_recording_why(harness):
    _fail_pages(harness, AuthFailed("zuora: 401 after a token refresh", api="zuora", status=401))

    with pytest.raises(AuthFailed):
        pull_tasks.pull.apply(kwargs={"stream": "invoices"}, throw=True)

    (row,) = [s for s in harness.ledger.list_streams(harness.connection) if s.stream == "invoices"]
    assert row.last_status == "failed"
    assert "401 after a token refresh" in (row.last_error or "")


def test_a_pull_zuora_throttles_is_retried_with_its_wait(harness, monkeypatch):
    _fail_pages(harness, RateLimited("zuora: 429", api="zuora", retry_after=42.0))
    asked: list[float] = []

    def retry(*, countdown: float, **_: object) -> Retry:  # Celery's retry, minus the broker
        asked.append(countdown)
        return Retry(when=countdown)

    monkeypatch.setattr(pull_tasks.pull, "retry", retry)

    with pytest.raises(Retry):
        pull_tasks.pull.run(stream="invoices")

    assert asked == [42.0]
    (row,) = [s for s in harness.ledger.list_streams(harness.connection) if s.stream == "invoices"]
    assert row.last_status == "failed"
