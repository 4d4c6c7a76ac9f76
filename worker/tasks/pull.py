"""Item-level pull tasks: pull a stream, post a batch of ledger rows, mark a stream transferred.

Each task loads its context from primitive ids (:mod:`worker.wiring`) and calls one function of
:mod:`shared.item_level`; the ledger, not the queue, records what has been done, so every task
may run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Task
from sqlalchemy.exc import SQLAlchemyError

from shared import item_level, ports
from shared.coordination.run_lock import RunLock
from shared.errors import ApiError, RateLimited, Transient
from shared.item_level.pull import Resume
from shared.logs import log_context
from worker.app import app
from worker.wiring import (
    MARK,
    MARK_DELAY_SECONDS,
    MARK_LOCK_SECONDS,
    POST_BATCH,
    batch_left,
    item_context,
    mark_debounce_key,
    mark_rerun_key,
    retry_countdown,
    stream_lock,
)

log = logging.getLogger("ledgerbridge.tasks.pull")


@app.task(name="ledgerbridge.pull.stream", bind=True, max_retries=3)
def pull(
    self: Task,
    *,
    stream: str,
    connection: str | None = None,
    since: str | None = None,
    cursor: str | None = None,
    run_started: str | None = None,
    window_start: str | None = None,
    backfill: bool = False,
    advance: bool = True,
) -> dict[str, Any]:
    """Pull one stream under its lock; a run that stopped at the page limit continues in a new
    task. Skips (returns) when another pull of the stream holds the lock.

    A pull that fails is a failed task (Flower and the result backend say so), after the stream's
    run is recorded as failed with its error in the ledger (``ledgerbridge status``): Zuora being
    busy or down (rate limit, transient error) retries the task with a backoff, anything else
    (credentials, a refused query) fails at once. Either way the mark keeps what the committed
    pages earned, and the next run starts from it."""
    ctx = item_context(connection)
    chosen = item_level.get_stream(stream)
    with log_context(connection=ctx.connection, stream=chosen.name):
        lock = stream_lock(ctx.connection, chosen.name)
        if not lock.acquire():
            return {"stream": chosen.name, "skipped": "another pull of this stream is running"}
        try:
            resume = (
                Resume(cursor, run_started or "", window_start, backfill, advance)
                if cursor and run_started
                else None
            )
            result = item_level.pull_stream(
                ctx,
                chosen,
                since=datetime.fromisoformat(since) if since else None,
                resume=resume,
                heartbeat=lock.extend,
            )
        except (RateLimited, Transient) as exc:
            log.warning("pull of %s failed, retrying: %s", chosen.name, exc)
            raise self.retry(countdown=retry_countdown(exc, self.request.retries)) from exc
        except ApiError as exc:
            log.error("pull of %s failed: %s", chosen.name, exc)
            raise
        finally:
            lock.release()
        if result.resume is not None:
            pull.apply_async(
                kwargs={"stream": chosen.name, "connection": ctx.connection, **result.resume.as_kwargs()}
            )
        return result.as_dict()


@app.task(
    name=POST_BATCH,
    bind=True,
    autoretry_for=(SQLAlchemyError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def post_batch(self: Task, *, connection: str, record_ids: list[int]) -> dict[str, int]:
    """Post these ledger rows (dependencies first, concurrently within the ERP's licence)."""
    if not self.request.retries:  # a retry was sent by Celery, not counted by the dispatcher
        batch_left(connection)
    ctx = item_context(connection)
    with log_context(connection=ctx.connection):
        return item_level.post_records(ctx, record_ids).counts()


@app.task(name=MARK)
def mark(*, connection: str, stream: str) -> dict[str, Any]:
    """Mark a stream's posted rows transferred in Zuora, in batches of at most 50."""
    ctx = item_context(connection)
    chosen = item_level.get_stream(stream)

    def work() -> dict[str, Any]:
        with log_context(connection=ctx.connection, stream=chosen.name):
            return item_level.mark_stream(ctx, chosen).as_dict()

    def again(countdown: float) -> None:
        mark.apply_async(kwargs={"connection": ctx.connection, "stream": chosen.name}, countdown=countdown)

    return run_mark(ports.redis_client(), ctx.connection, chosen.name, work, again)


def run_mark(
    redis: Any,
    connection: str,
    stream: str,
    work: Callable[[], dict[str, Any]],
    again: Callable[[float], None],
) -> dict[str, Any]:
    """One mark run of ``stream`` at a time. A run that finds another one going does not wait
    for it: it leaves word for it to run once more (the other may have read its rows before
    these were posted) and ends. The word is left before the lock is tried a second time, and
    the holder reads it after releasing the lock, so it is never missed."""
    lock = RunLock(redis, connection, f"mark:{stream}", ttl=MARK_LOCK_SECONDS)
    rerun = mark_rerun_key(connection, stream)
    if not lock.acquire():
        redis.set(rerun, "1", ex=MARK_LOCK_SECONDS)
        if not lock.acquire():
            return {"stream": stream, "skipped": "another mark run is going; it will run once more"}
    # Rows posted from now on are read by this run, or schedule the next one.
    redis.delete(mark_debounce_key(connection, stream), rerun)
    try:
        summary = work()
    finally:
        lock.release()
    asked = bool(redis.delete(rerun))  # after the release: see above
    if summary.get("more"):
        again(1.0)
    elif asked:
        again(MARK_DELAY_SECONDS)
    return summary
