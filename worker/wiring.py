"""The composition of the item-level flows for the Procfile's processes and the CLI.

One place builds an :class:`~shared.item_level.context.ItemContext` from the composition root
(:mod:`shared.ports`) with the Celery :class:`CeleryDispatcher`, and holds what several task
modules share (the mark run's Redis keys, the retry countdown). Tasks are sent **by name**, so no
task module imports another and none imports this module's users.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache

from kombu.exceptions import ChannelError

from shared import ports
from shared.coordination import fair_share
from shared.coordination.run_lock import RunLock
from shared.errors import RateLimited
from shared.item_level.context import ItemContext, Options, mapping_from_settings
from shared.notify import Notifier, notifier_from_settings
from worker.app import BACKLOG_PRIORITY, BULK_PRIORITY, MAX_COUNTDOWN, app

log = logging.getLogger("ledgerbridge.dispatch")

# The tasks the dispatcher sends (by name: see the module docstring).
POST_BATCH = "ledgerbridge.pull.post_batch"
MARK = "ledgerbridge.pull.mark"
PROCESS_CALLOUTS = "ledgerbridge.push.callouts"
DELIVER_NOTICES = "ledgerbridge.notices.deliver"

# Marking waits this long after a posting so that more rows share one action/update call.
MARK_DELAY_SECONDS = 2.0
MARK_DEBOUNCE_SECONDS = 30
MARK_LOCK_SECONDS = 300


def mark_debounce_key(connection: str, stream: str) -> str:
    return f"ledgerbridge:{connection}:mark-scheduled:{stream}"


def mark_rerun_key(connection: str, stream: str) -> str:
    return f"ledgerbridge:{connection}:mark-again:{stream}"


class CeleryDispatcher:
    """:class:`~shared.item_level.context.Dispatcher` over this Celery app (default queue)."""

    def post(self, connection: str, record_ids: Sequence[int], *, countdown: float = 0.0) -> None:
        if not record_ids:
            return
        counted = _count_sent(connection)
        try:
            app.send_task(
                POST_BATCH,
                kwargs={"connection": connection, "record_ids": [int(i) for i in record_ids]},
                countdown=countdown or None,
                priority=BULK_PRIORITY if counted is None or _within_share(counted) else BACKLOG_PRIORITY,
                retry=False,
            )
        except Exception as exc:  # a broker that is down: the rows stay pending for the sweep
            log.error("could not enqueue posting of %d rows (the sweep will): %s", len(record_ids), exc)
            if counted is not None:
                batch_left(connection)

    def mark(self, connection: str, stream: str) -> None:
        try:
            if ports.redis_client().set(
                mark_debounce_key(connection, stream), "1", nx=True, ex=MARK_DEBOUNCE_SECONDS
            ):
                app.send_task(
                    MARK,
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
            app.send_task(
                PROCESS_CALLOUTS,
                kwargs={"connection": connection, "callout_ids": [int(i) for i in callout_ids]},
                retry=False,
            )
        except Exception as exc:
            log.error("could not enqueue %d callout(s) (the sweep will): %s", len(callout_ids), exc)

    def waiting(self) -> int | None:
        """The messages in the broker's queue, every priority (not those a worker holds); None
        when the broker did not answer (unknown is not empty)."""
        try:
            with app.connection_for_read() as conn:
                declared = conn.default_channel.queue_declare(queue=app.conf.task_default_queue, passive=True)
                return int(declared.message_count)
        except ChannelError:  # no list in Redis: nothing waits
            return 0
        except Exception as exc:
            log.warning("could not read how many tasks wait in the broker: %s", exc)
            return None


def _count_sent(connection: str) -> int | None:
    """Count a posting batch sent for ``connection`` (:mod:`shared.coordination.fair_share`); None
    when Redis did not answer (the batch then goes at the bulk priority)."""
    try:
        return fair_share.batch_sent(ports.redis_client(), connection)
    except Exception as exc:
        log.warning("could not count a posting batch of %s (sent at the bulk priority): %s", connection, exc)
        return None


def _within_share(counted: int) -> bool:
    return fair_share.within_share(counted, ports.settings().fair_share_batches)


def batch_left(connection: str) -> None:
    """Count a posting batch of ``connection`` out of the broker (it started, or was never sent)."""
    try:
        fair_share.batch_left(ports.redis_client(), connection)
    except Exception as exc:  # the count only orders batches; a missed one is forgotten within the hour
        log.warning("could not count a posting batch of %s out: %s", connection, exc)


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
        options=Options.from_settings(
            settings, erp_concurrency=erp_concurrency, push_enabled=conn.takes_callouts
        ),
    )


def deliver_notices_now() -> None:
    """Enqueue the notice outbox's delivery (after a notice was committed). A broker that is down
    loses nothing: the notice is in the ledger, and beat's ``deliver-notices`` sends it."""
    try:
        app.send_task(DELIVER_NOTICES, kwargs={}, retry=False)
    except Exception as exc:
        log.error("could not enqueue the delivery of a notice (beat will): %s", exc)


def stream_lock(connection: str, stream: str) -> RunLock:
    return RunLock(ports.redis_client(), connection, f"pull:{stream}", ttl=ports.settings().pull_lock_seconds)


def retry_countdown(exc: Exception, retries: int) -> float:
    """How long a task waits before trying again after a Zuora or ERP error."""
    if isinstance(exc, RateLimited):
        return float(min(MAX_COUNTDOWN, max(1.0, exc.retry_after)))
    return float(min(MAX_COUNTDOWN, 5 * 2**retries))


@lru_cache(maxsize=1)
def notifier() -> Notifier:
    """One notifier per process (its webhook client is kept open): the close's and the notice
    deliveries'."""
    return notifier_from_settings(ports.settings())
