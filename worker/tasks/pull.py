"""Item-level pull tasks: pull a stream, post a batch of ledger rows, mark a stream transferred.

Each task loads its context from primitive ids and calls one function of
:mod:`shared.item_level`; the ledger, not the queue, records what has been done, so every task
may run twice. :class:`CeleryDispatcher` is how those functions hand work on (after their
ledger commit); it never raises for a broker problem - the sweep re-drives what was not sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from celery import Task
from kombu.exceptions import ChannelError
from sqlalchemy.exc import SQLAlchemyError

from shared import item_level, ports
from shared.coordination.run_lock import RunLock
from shared.errors import ApiError, RateLimited
from shared.item_level.context import ItemContext, Options, mapping_from_settings
from shared.item_level.pull import Resume
from shared.logs import log_context
from worker.app import BULK_PRIORITY, MAX_COUNTDOWN, app

log = logging.getLogger("ledgerbridge.tasks.pull")

# Marking waits this long after a posting so that more rows share one action/update call.
MARK_DELAY_SECONDS = 2.0
MARK_DEBOUNCE_SECONDS = 30
MARK_LOCK_SECONDS = 300


def _debounce_key(connection: str, stream: str) -> str:
    return f"ledgerbridge:{connection}:mark-scheduled:{stream}"


def _rerun_key(connection: str, stream: str) -> str:
    return f"ledgerbridge:{connection}:mark-again:{stream}"


class CeleryDispatcher:
    """:class:`~shared.item_level.context.Dispatcher` over this Celery app (default queue)."""

    def post(self, connection: str, record_ids: Sequence[int], *, countdown: float = 0.0) -> None:
        if not record_ids:
            return
        try:
            post_batch.apply_async(
                kwargs={"connection": connection, "record_ids": [int(i) for i in record_ids]},
                countdown=countdown or None,
                priority=BULK_PRIORITY,
                retry=False,
            )
        except Exception as exc:  # a broker that is down: the rows stay pending for the sweep
            log.error("could not enqueue posting of %d rows (the sweep will): %s", len(record_ids), exc)

    def mark(self, connection: str, stream: str) -> None:
        try:
            if ports.redis_client().set(
                _debounce_key(connection, stream), "1", nx=True, ex=MARK_DEBOUNCE_SECONDS
            ):
                mark.apply_async(
                    kwargs={"connection": connection, "stream": stream},
                    countdown=MARK_DELAY_SECONDS,
                    retry=False,
                )
        except Exception as exc:
            log.error("could not enqueue marking of %s (the sweep will): %s", stream, exc)

    def callouts(self, connection: str, callout_ids: Sequence[int]) -> None:
        if not callout_ids:
            return
        try:
            from worker.tasks.push import process_callouts_task

            process_callouts_task.apply_async(
                kwargs={"connection": connection, "callout_ids": [int(i) for i in callout_ids]}, retry=False
            )
        except Exception as exc:
            log.error("could not enqueue %d callout(s) (the sweep will): %s", len(callout_ids), exc)

    def waiting(self) -> int:
        """The messages in the broker's queue, every priority (not those a worker holds)."""
        try:
            with app.connection_for_read() as conn:
                declared = conn.default_channel.queue_declare(queue=app.conf.task_default_queue, passive=True)
                return int(declared.message_count)
        except ChannelError:  # no list in Redis: nothing waits
            return 0
        except Exception as exc:
            log.warning("could not read how many tasks wait in the broker: %s", exc)
            return 0


def item_context(connection: str | None = None) -> ItemContext:
    """The item-level context of a connection (the default one for None), from ``shared.ports``."""
    settings = ports.settings()
    conn = ports.connection(connection)
    erp_concurrency = conn.acumatica.max_concurrent if conn.acumatica is not None else 2
    return ItemContext(
        connection=conn.name,
        zuora=ports.zuora(conn),
        erp=ports.erp(conn),
        ledger=ports.ledger(),
        mapping=mapping_from_settings(settings),
        dispatch=CeleryDispatcher(),
        options=Options.from_settings(settings, erp_concurrency=erp_concurrency),
    )


def stream_lock(connection: str, stream: str) -> RunLock:
    return RunLock(ports.redis_client(), connection, f"pull:{stream}", ttl=ports.settings().pull_lock_seconds)


@app.task(name="ledgerbridge.pull.stream", bind=True)
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
    task. Skips (returns) when another pull of the stream holds the lock."""
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
        except ApiError as exc:
            # The mark keeps what committed pages earned; the next beat run starts from it.
            log.warning("pull of %s failed: %s", chosen.name, exc)
            return {"stream": chosen.name, "error": str(exc)}
        finally:
            lock.release()
        if result.resume is not None:
            pull.apply_async(
                kwargs={"stream": chosen.name, "connection": ctx.connection, **result.resume.as_kwargs()}
            )
        return result.as_dict()


@app.task(
    name="ledgerbridge.pull.post_batch",
    bind=True,
    autoretry_for=(SQLAlchemyError,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
)
def post_batch(self: Task, *, connection: str, record_ids: list[int]) -> dict[str, int]:
    """Post these ledger rows (dependencies first, concurrently within the ERP's licence)."""
    ctx = item_context(connection)
    with log_context(connection=ctx.connection):
        return item_level.post_records(ctx, record_ids).counts()


@app.task(name="ledgerbridge.pull.mark")
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
    rerun = _rerun_key(connection, stream)
    if not lock.acquire():
        redis.set(rerun, "1", ex=MARK_LOCK_SECONDS)
        if not lock.acquire():
            return {"stream": stream, "skipped": "another mark run is going; it will run once more"}
    # Rows posted from now on are read by this run, or schedule the next one.
    redis.delete(_debounce_key(connection, stream), rerun)
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


def retry_countdown(exc: Exception, retries: int) -> float:
    """How long a task waits before trying again after a Zuora or ERP error."""
    if isinstance(exc, RateLimited):
        return float(min(MAX_COUNTDOWN, max(1.0, exc.retry_after)))
    return float(min(MAX_COUNTDOWN, 5 * 2**retries))
