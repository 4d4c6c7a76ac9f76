"""Posting batches go to the broker at a lower priority than every other task, so a mark run (or a
close step, a callout) sent behind thousands of them is handed out first; the sweep asks the
broker how many tasks wait before it re-drives pending rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu import Queue

from worker.app import BULK_PRIORITY, app
from worker.tasks import pull
from worker.wiring import CeleryDispatcher


def test_the_dispatcher_sends_posting_batches_at_the_bulk_priority(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(app, "send_task", lambda name, **options: sent.append((name, options)))

    CeleryDispatcher().post("acme", [3, 1, 2])

    assert len(sent) == 1
    name, options = sent[0]
    assert name == pull.post_batch.name  # sent by name: the dispatcher imports no task module
    assert options["priority"] == BULK_PRIORITY
    assert options["kwargs"] == {"connection": "acme", "record_ids": [3, 1, 2]}


@pytest.fixture
def queue(redis_url) -> Iterator[str]:
    """A queue of its own in the test Redis, deleted afterwards (every priority's list)."""
    name = f"q-priority-{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)
    client.close()


def _send(redis_url: str, queue: str, batches: int) -> None:
    """``batches`` posting batches at the bulk priority, then one mark run at the default."""
    with app.connection_for_write(redis_url) as conn:
        for i in range(batches):
            pull.post_batch.apply_async(
                kwargs={"connection": "acme", "record_ids": [i]},
                queue=queue,
                priority=BULK_PRIORITY,
                connection=conn,
            )
        pull.mark.apply_async(
            kwargs={"connection": "acme", "stream": "invoices"}, queue=queue, connection=conn
        )


def test_the_broker_hands_out_a_mark_run_before_the_posting_batches_sent_ahead_of_it(redis_url, queue):
    _send(redis_url, queue, 3)

    with app.connection_for_read(redis_url) as conn, conn.channel() as channel:
        bound = Queue(queue, routing_key=queue)(channel)
        taken = []
        while (message := bound.get(no_ack=True)) is not None:
            taken.append((message.headers["task"], message.decode()[1]))

    assert [name for name, _ in taken] == [
        "ledgerbridge.pull.mark",
        "ledgerbridge.pull.post_batch",
        "ledgerbridge.pull.post_batch",
        "ledgerbridge.pull.post_batch",
    ]
    # Among themselves the batches keep their order.
    assert [kwargs for _, kwargs in taken[1:]] == [
        {"connection": "acme", "record_ids": [i]} for i in range(3)
    ]


def test_the_dispatcher_counts_the_tasks_waiting_in_the_broker_at_every_priority(
    redis_url, queue, monkeypatch
):
    monkeypatch.setitem(app.conf, "task_default_queue", queue)
    monkeypatch.setitem(app.conf, "broker_url", redis_url)
    assert CeleryDispatcher().waiting() == 0  # no list in Redis yet

    _send(redis_url, queue, 2)

    assert CeleryDispatcher().waiting() == 3
