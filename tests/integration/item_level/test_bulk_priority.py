"""Posting batches go to the broker at a lower priority than every other task, so a mark run (or a
close step, a callout) sent behind thousands of them is handed out first; a connection's batches
beyond its fair share go lower still, so another connection's few are handed out before a
backlog's; the sweep asks the broker how many tasks wait before it re-drives pending rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu import Queue

from shared import ports
from shared.coordination import fair_share
from worker.app import BULK_PRIORITY, app
from worker.tasks import pull
from worker.wiring import CeleryDispatcher


def test_the_dispatcher_sends_posting_batches_at_the_bulk_priority(monkeypatch, connection_name, real_redis):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(app, "send_task", lambda name, **options: sent.append((name, options)))

    CeleryDispatcher().post(connection_name, [3, 1, 2])
    real_redis.delete(fair_share.queued_key(connection_name))

    assert len(sent) == 1
    name, options = sent[0]
    assert name == pull.post_batch.name  # sent by name: the dispatcher imports no task module
    assert options["priority"] == BULK_PRIORITY
    assert options["kwargs"] == {"connection": connection_name, "record_ids": [3, 1, 2]}


@pytest.fixture(autouse=True)
def ports_on_the_test_redis(redis_url, monkeypatch) -> Iterator[None]:
    """The dispatcher counts batches in the Redis ``shared.ports`` names: the test's."""
    monkeypatch.setenv("LEDGERBRIDGE_REDIS_URL", redis_url)
    ports.reset_for_tests()
    yield
    ports.reset_for_tests()


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


def _taken(redis_url: str, queue: str) -> list[dict]:
    """The messages of ``queue`` in the order the broker hands them out (their kwargs)."""
    with app.connection_for_read(redis_url) as conn, conn.channel() as channel:
        bound = Queue(queue, routing_key=queue)(channel)
        taken = []
        while (message := bound.get(no_ack=True)) is not None:
            taken.append(message.decode()[1])
    return taken


def test_a_connection_s_few_batches_are_handed_out_before_a_backlog_s_beyond_its_share(
    redis_url, queue, monkeypatch
):
    monkeypatch.setitem(app.conf, "task_default_queue", queue)
    monkeypatch.setitem(app.conf, "broker_url", redis_url)
    big, small = f"big-{uuid.uuid4().hex[:6]}", f"small-{uuid.uuid4().hex[:6]}"
    dispatcher = CeleryDispatcher()
    share = fair_share.FAIR_SHARE_BATCHES
    try:
        for i in range(share + 12):
            dispatcher.post(big, [i])
        dispatcher.post(small, [1000])
        dispatcher.post(small, [1001])

        taken = [(kwargs["connection"], kwargs["record_ids"][0]) for kwargs in _taken(redis_url, queue)]
    finally:
        client = redis.Redis.from_url(redis_url)
        client.delete(fair_share.queued_key(big), fair_share.queued_key(small))
        client.close()

    # The backlog's share, then the newcomer's batches, then the rest of the backlog, in order.
    assert taken == [
        *((big, i) for i in range(share)),
        (small, 1000),
        (small, 1001),
        *((big, i) for i in range(share, share + 12)),
    ]


def test_a_batch_that_starts_is_counted_out_of_its_connection_s_share(redis_url, monkeypatch):
    from worker.wiring import batch_left

    connection = f"acme-{uuid.uuid4().hex[:6]}"
    client = redis.Redis.from_url(redis_url)
    try:
        monkeypatch.setattr(app, "send_task", lambda name, **options: None)
        for i in range(3):
            CeleryDispatcher().post(connection, [i])
        assert client.get(fair_share.queued_key(connection)) == b"3"

        batch_left(connection)

        assert client.get(fair_share.queued_key(connection)) == b"2"
    finally:
        client.delete(fair_share.queued_key(connection))
        client.close()


def test_a_batch_the_broker_refused_is_not_counted(redis_url, monkeypatch):
    connection = f"acme-{uuid.uuid4().hex[:6]}"

    def refuse(name, **options):
        raise ConnectionError("broker down")

    monkeypatch.setattr(app, "send_task", refuse)
    client = redis.Redis.from_url(redis_url)
    try:
        CeleryDispatcher().post(connection, [1])

        assert client.get(fair_share.queued_key(connection)) in (None, b"0")
    finally:
        client.delete(fair_share.queued_key(connection))
        client.close()


def test_a_share_of_zero_sends_every_batch_at_the_bulk_priority(monkeypatch):
    monkeypatch.setenv("LEDGERBRIDGE_FAIR_SHARE_BATCHES", "0")
    ports.reset_for_tests()
    connection = f"acme-{uuid.uuid4().hex[:6]}"
    sent: list[int] = []
    monkeypatch.setattr(app, "send_task", lambda name, **options: sent.append(options["priority"]))
    try:
        for i in range(fair_share.FAIR_SHARE_BATCHES + 3):
            CeleryDispatcher().post(connection, [i])

        assert sent == [BULK_PRIORITY] * (fair_share.FAIR_SHARE_BATCHES + 3)
    finally:
        ports.redis_client().delete(fair_share.queued_key(connection))
