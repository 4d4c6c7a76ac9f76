"""Fair share of the broker between connections (tenants).

Every connection's posting batches go into one queue. A backlog of 20,000 documents is 400
batches; a connection whose 50 new documents arrive behind them would wait for all 400. So the
dispatcher counts each connection's batches waiting in the broker (sent, not yet started): the
first :data:`FAIR_SHARE_BATCHES` go at the bulk priority, those beyond at a lower one, which
Redis hands out only while no message of a higher priority waits. A connection with little to
do is handed out within a few batches of arriving (it still waits for a worker process to come
free), and a backlog is never starved: what the others send ahead of it is bounded by their own
share, and its own share is always at the bulk priority.

The count orders work; it never decides whether work is done. It drifts only towards serving a
connection sooner: a batch delivered again (a worker killed) is counted down twice, never below
0; a flushed Redis forgets the count; an idle connection's count expires.
"""

from __future__ import annotations

from typing import Any

from redis import Redis

from shared.coordination.scripts import DECREMENT_TO_ZERO

# A connection's batches waiting in the broker that go at the bulk priority; those beyond wait
# for every other connection's share (LEDGERBRIDGE_FAIR_SHARE_BATCHES). One fleet's worth of
# worker processes (the Procfile's 2 workers x 4) keeps a newcomer's wait to about one batch's time.
FAIR_SHARE_BATCHES = 8
# How long a count outlives its last batch sent (a count of batches that are long gone, after a
# flush of the broker's queue, is forgotten within this).
COUNT_SECONDS = 3600


def queued_key(connection: str) -> str:
    return f"ledgerbridge:{connection}:post-queued"


def batch_sent(redis: Redis[Any], connection: str) -> int:
    """Count a batch sent for ``connection``; how many of its batches wait now, this one included."""
    key = queued_key(connection)
    pipe = redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, COUNT_SECONDS)
    waiting, _ = pipe.execute()
    return int(waiting)


def batch_left(redis: Redis[Any], connection: str) -> int:
    """Count a batch that left the broker (started, or never sent); how many still wait."""
    return int(redis.register_script(DECREMENT_TO_ZERO)(keys=[queued_key(connection)], args=[COUNT_SECONDS]))


def within_share(waiting: int, share: int = FAIR_SHARE_BATCHES) -> bool:
    """Whether a connection's batch, ``waiting`` of them counted, is within its fair share
    (``share`` 0: there are no shares, every batch is)."""
    return share == 0 or waiting <= share
