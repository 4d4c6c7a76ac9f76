"""The sweeps: what makes a flushed Redis or a killed worker delay work but never lose it.

:func:`sweep` (beat, every ``LEDGERBRIDGE_SWEEP_INTERVAL_SECONDS``) re-drives the ledger rows whose
task should have run by now: ``pending`` rows past the grace, ``posting`` rows past the posting
timeout (in doubt: :func:`~shared.item_level.posting.post_one` looks them up in the ERP before
anything is created again), ``failed`` rows past their backoff, ``posted`` rows not yet marked,
posted rows whose release failed after their create (where releasing is configured), posted
payments, refunds and credit memos with an application waiting for a target that is in the ERP
now (:mod:`shared.item_level.applications`), posted rows changed in Zuora since
(:mod:`shared.item_level.changes`), and callouts whose task was never enqueued or was lost. Re-driven pending rows are deferred by the
grace in the same transaction, so the next sweep does not send them again while they wait in the
queue; and while a backlog waits in the broker (``BACKLOG_TASKS``), pending rows are not
re-driven at all (a backlog can queue for longer than the grace). Everything it dispatches is
idempotent; it only ever sends work, never does it.

:func:`audit_marks` (beat, hourly by default) checks the high-water marks themselves: it lists the
ids Zuora has for a recent window *behind* the mark (``[mark - overlap - window, mark - overlap)``,
which the next pull will not read again, and never older than the oldest record the ledger holds -
the sync's horizon), compares them with the ledger and ingests what the marks missed, counting it
in ``missed_by_mark`` - a number that should stay 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from shared.item_level.context import ItemContext
from shared.item_level.posting import RELEASABLE
from shared.item_level.pull import ingest_rows
from shared.item_level.push import MAX_CALLOUTS_PER_TASK
from shared.item_level.queries import (
    RowKey,
    changed_rows,
    due_rows,
    earliest_updated,
    known_zuora_ids,
    open_callouts,
    unreleased_rows,
)
from shared.item_level.streams import STREAMS, Stream, for_object_type
from shared.ledger.applications import due_sources
from shared.ledger.errors import IllegalTransition, TransitionConflict
from shared.ledger.models import CalloutState
from shared.ledger.states import FAILED, PENDING, POSTED, POSTING, reschedule_pending, retry
from shared.logs import log_context
from shared.zuora.object_query import MAX_PAGE_SIZE
from shared.zuora.records import get_field

log = logging.getLogger("ledgerbridge.item_level.sweep")

POST_CHUNK = 50
# Tasks waiting in the broker from which on pending rows are taken to be queued, not lost (a few
# beat tasks always come and go; a backlog of posting batches is thousands).
BACKLOG_TASKS = 100
# Released again per sweep at most: each is one ERP call from the posting task it is sent to.
UNRELEASED_PER_SWEEP = 50
# Documents sent per sweep to apply what they were created without (each a few ERP calls).
APPLICATIONS_PER_SWEEP = 50
# Posted rows changed in Zuora sent per sweep (each a mapping and at most one ERP upsert).
CHANGED_PER_SWEEP = 50


@dataclass
class SweepSummary:
    pending: int = 0
    in_doubt: int = 0
    failed: int = 0
    to_mark: list[str] = field(default_factory=list)
    callouts: int = 0
    unreleased: int = 0
    applications: int = 0
    changed: int = 0
    more: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "pending": self.pending,
            "in_doubt": self.in_doubt,
            "failed": self.failed,
            "to_mark": self.to_mark,
            "callouts": self.callouts,
            "unreleased": self.unreleased,
            "applications": self.applications,
            "changed": self.changed,
            "more": self.more,
        }


def _each(ctx: ItemContext, rows: Sequence[RowKey], change: Callable[[Session, int], object]) -> list[int]:
    """Apply ``change`` to every row in one transaction (row by row if another worker touched
    one meanwhile); returns the ids it was applied to."""
    ids = [r.id for r in rows]
    try:
        with ctx.ledger.session() as session:
            for record_id in ids:
                change(session, record_id)
        return ids
    except (TransitionConflict, IllegalTransition):
        pass
    done = []
    for record_id in ids:
        try:
            with ctx.ledger.session() as session:
                change(session, record_id)
            done.append(record_id)
        except (TransitionConflict, IllegalTransition) as exc:
            log.info("sweep skipped a row another worker changed: %s", exc)
    return done


def sweep(ctx: ItemContext, *, limit: int = 500) -> SweepSummary:
    """Re-drive overdue rows and lost callouts (at most ``limit`` rows of each kind per call;
    ``more`` says whether to call again)."""
    summary = SweepSummary()
    now = ctx.now()
    item_types = {s.object_type for s in STREAMS.values()}
    with log_context(connection=ctx.connection):
        # While a backlog waits in the broker, a pending row past the grace is most likely in it
        # (a backlog can queue for longer than the grace): sending it again would only lengthen
        # the queue. A lost message is re-sent once the backlog has drained.
        # A broker that does not say how many wait is not an empty one: leave pending rows to a
        # later sweep rather than risk queueing them twice.
        waiting = ctx.dispatch.waiting()
        backlog = waiting is None or waiting >= BACKLOG_TASKS
        overdue = [POSTED] if backlog else [PENDING, POSTED]
        # The ledger schedules pending/posted rows PENDING_GRACE ahead: read them on the shifted clock.
        early = due_rows(ctx.ledger, ctx.connection, overdue, item_types, now=ctx.shifted(now), limit=limit)
        late = due_rows(ctx.ledger, ctx.connection, [POSTING, FAILED], item_types, now=now, limit=limit)
        summary.more = len(early) >= limit or len(late) >= limit
        pending = [r for r in early if r.state == PENDING]
        failed = [r for r in late if r.state == FAILED]
        in_doubt = [r for r in late if r.state == POSTING and not r.erp_ref]
        again = ctx.shifted(now + ctx.options.sweep_grace)
        with ctx.ledger.session() as session:
            to_post = reschedule_pending(
                session, ctx.connection, {r.id: r.subject for r in pending}, retry_at=again, now=now
            )
        to_post += _each(ctx, failed, lambda s, i: retry(s, i, now=now))
        to_post += [r.id for r in in_doubt]
        summary.pending, summary.failed, summary.in_doubt = len(pending), len(failed), len(in_doubt)
        if ctx.options.release:
            # Posted, but the release after the create failed: posting the row again releases it.
            unreleased = unreleased_rows(
                ctx.ledger, ctx.connection, RELEASABLE, updated_before=now - ctx.options.sweep_grace,
                limit=UNRELEASED_PER_SWEEP,
            )  # fmt: skip
            to_post += [r.id for r in unreleased]
            summary.unreleased = len(unreleased)
        # Created without an application whose target is in the ERP now: posting it again applies it.
        with ctx.ledger.reading() as session:
            applying = due_sources(session, ctx.connection, now=now, limit=APPLICATIONS_PER_SWEEP)
        sent = set(to_post)
        applying = [i for i in applying if i not in sent]
        to_post += applying
        summary.applications = len(applying)
        # Changed in Zuora after they were posted: posting them again carries or notes the change.
        sent.update(applying)
        changed = [
            i for i in changed_rows(ctx.ledger, ctx.connection, limit=CHANGED_PER_SWEEP) if i not in sent
        ]
        to_post += changed
        summary.changed = len(changed)
        for start in range(0, len(to_post), POST_CHUNK):
            ctx.dispatch.post(ctx.connection, to_post[start : start + POST_CHUNK])
        streams = sorted(
            {s.name for r in early if r.state == POSTED for s in [for_object_type(r.object_type)] if s}
        )
        for name in streams:
            ctx.dispatch.mark(ctx.connection, name)
        summary.to_mark = streams
        lost = open_callouts(
            ctx.ledger,
            ctx.connection,
            [CalloutState.RECEIVED.value, CalloutState.ENQUEUED.value],
            received_before=now - ctx.options.sweep_grace,
            limit=limit,
        )
        lost_ids = [row.id for row in lost if row.id is not None]
        for start in range(0, len(lost_ids), MAX_CALLOUTS_PER_TASK):
            ctx.dispatch.callouts(ctx.connection, lost_ids[start : start + MAX_CALLOUTS_PER_TASK])
        summary.callouts = len(lost)
        if to_post or streams or lost:
            log.info("sweep re-drove %s", summary.as_dict())
        if waiting is None:
            log.warning("sweep left pending rows for a later sweep: the broker did not say what waits")
        elif backlog:
            log.info("sweep left pending rows to the backlog: %d task(s) wait in the broker", waiting)
    return summary


def audit_marks(ctx: ItemContext, stream: Stream, *, window: timedelta) -> int:
    """Count and ingest the records of ``stream`` the mark skipped in the window behind it;
    returns how many (0 when the stream has no mark yet)."""
    mark = ctx.ledger.get_mark(ctx.connection, stream.name)
    if mark is None:
        return 0
    end = mark - ctx.options.overlap
    # Never behind what the ledger has ever seen: a stream started with --since (its horizon)
    # deliberately skipped older records, and counting them as missed would post them.
    earliest = earliest_updated(ctx.ledger, ctx.connection, stream.object_type)
    if earliest is None:
        return 0
    start = max(end - window, earliest)
    if start >= end:
        return 0
    missing: list[str] = []
    with log_context(connection=ctx.connection, stream=stream.name):
        for page in ctx.zuora.objects.pages(stream.query_id_list(start, end)):
            ids = [str(get_field(r, "id")) for r in page.data if get_field(r, "id")]
            known = known_zuora_ids(ctx.ledger, ctx.connection, stream.object_type, ids)
            missing.extend(i for i in ids if i not in known)
        if not missing:
            return 0
        new_ids: list[int] = []
        found = 0
        for chunk_start in range(0, len(missing), MAX_PAGE_SIZE):
            chunk = missing[chunk_start : chunk_start + MAX_PAGE_SIZE]
            rows = [r for page in ctx.zuora.objects.pages(stream.query_ids(chunk)) for r in page.data]
            ingested = ingest_rows(ctx, stream, rows)
            found += sum(1 for zid in chunk if zid in ingested.record_ids)
            new_ids += ingested.new_ids
        if new_ids:
            ctx.dispatch.post(ctx.connection, new_ids)
        ctx.ledger.add_missed(ctx.connection, stream.name, by_mark=len(missing))
        log.warning(
            "the mark of %s missed %d record(s) between %s and %s; ingested %d",
            stream.name,
            len(missing),
            start.isoformat(),
            end.isoformat(),
            found,
        )
    return len(missing)
