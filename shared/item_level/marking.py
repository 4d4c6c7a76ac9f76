"""Marking posted records ``TransferredToAccounting=Yes`` in Zuora (zuora-api.md section 10).

Invoices, payments and refunds go through ``POST /v1/action/update`` in batches of at most 50
objects; the answer has one result per object, in order, and partial success is normal, so each
row is checked on its own: a success moves the ledger row ``posted -> marked``, a failure keeps
it ``posted`` with the error and a later ``next_attempt_at`` (retried by the next mark run or the
sweep, and visible in ``ledgerbridge status``). Credit and debit memos are not Actions objects:
they take the bulk ``PUT /v1/credit-memos/bulk`` / ``PUT /v1/debit-memos/bulk`` (at most 50
memos, one result each), or, where a tenant refuses the bulk call, one ``PUT /v1/credit-memos/{id}`` each.

A run leaves a last, partial batch to the next run while more rows of the stream are being posted
(each posting asks for a mark run): in a backlog every call then carries 50 rows. Once the stream
has nothing left to post, the next run marks what is left, however few.

Marking bumps the record's ``updatedDate`` in Zuora, so the next pull reads it again; the ledger
knows it (same id, state ``marked``) and posts nothing. Setting ``Yes`` twice is harmless, so a
crash between Zuora's answer and the ledger commit only costs a repeated mark.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from shared.errors import ApiError, NotFound, RateLimited, Rejected
from shared.item_level.context import ItemContext
from shared.item_level.queries import RowKey, markable, still_posting
from shared.item_level.streams import Stream
from shared.ledger.errors import IllegalTransition, TransitionConflict
from shared.ledger.states import mark_transferred, mark_transferred_many, reschedule
from shared.logs import log_context
from shared.zuora.actions import MAX_OBJECTS_PER_CALL, RowResult
from shared.zuora.transfers import MAX_MEMOS_PER_CALL

log = logging.getLogger("ledgerbridge.item_level.marking")

MEMO_THREADS = 4


@dataclass
class MarkSummary:
    stream: str
    marked: int = 0
    failed: int = 0
    calls: int = 0
    more: bool = False
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "marked": self.marked,
            "failed": self.failed,
            "calls": self.calls,
            "more": self.more,
            "errors": self.errors[:20],
        }


def _key(ctx: ItemContext, stream: Stream, rows: Sequence[RowKey]) -> tuple[str, ...]:
    """The Idempotency-Key parts of one action/update: the rows and the hour. Zuora replays a
    key's first answer for 24 h (section 3); a batch that failed is retried with a new key the
    next hour at the latest (and a partly failed batch is never the same set of ids again)."""
    digest = hashlib.sha256(",".join(sorted(r.zuora_id for r in rows)).encode()).hexdigest()[:32]
    hour = ctx.now().strftime("%Y%m%d%H")
    return ("transferred", stream.name, digest, hour)


def _record(ctx: ItemContext, done: Sequence[RowKey], failed: Sequence[tuple[RowKey, str]]) -> int:
    """Record a batch in one transaction: marked rows, and failed ones deferred with their error.
    Should another worker have changed one of the rows meanwhile, the batch is recorded row by
    row instead, so one conflict does not undo the others."""
    retry_at = ctx.shifted(ctx.now() + ctx.options.mark_retry)
    now = ctx.now()

    def mark(session: Session, row: RowKey) -> None:
        assert row.id is not None
        mark_transferred(session, row.id, now=now)

    def defer(session: Session, row: RowKey, error: str) -> None:
        assert row.id is not None
        reschedule(session, row.id, retry_at=retry_at, error=f"marking transferred failed: {error}", now=now)

    try:
        with ctx.ledger.session() as session:
            mark_transferred_many(session, ctx.connection, {row.id: row.subject for row in done}, now=now)
            for row, error in failed:
                defer(session, row, error)
        return len(done)
    except (TransitionConflict, IllegalTransition) as exc:
        log.info("recording the batch row by row: %s", exc)
    marked = 0
    for row in done:
        try:
            with ctx.ledger.session() as session:
                mark(session, row)
            marked += 1
        except (TransitionConflict, IllegalTransition) as exc:
            log.info("not marking %s: %s", row.subject, exc)
    for row, error in failed:
        try:
            with ctx.ledger.session() as session:
                defer(session, row, error)
        except (TransitionConflict, IllegalTransition) as exc:
            log.info("not deferring %s: %s", row.subject, exc)
    return marked


def _mark_actions(ctx: ItemContext, stream: Stream, rows: Sequence[RowKey], summary: MarkSummary) -> None:
    assert stream.mark_action_type is not None
    action_type = stream.mark_action_type

    def send(chunk: list[RowKey]) -> list[RowResult]:
        objects = [{"Id": r.zuora_id, "TransferredToAccounting": "Yes"} for r in chunk]
        return ctx.zuora.actions.update(action_type, objects, idempotency_key=_key(ctx, stream, chunk))

    _mark_in_batches(ctx, rows, MAX_OBJECTS_PER_CALL, send, summary=summary)


def _mark_memos(ctx: ItemContext, stream: Stream, rows: Sequence[RowKey], summary: MarkSummary) -> None:
    """Memos in bulk PUTs of at most 50, each memo answered on its own. A tenant that refuses the
    bulk call as a whole (not found, or not accepted) gets the single PUT per memo instead."""
    credit = stream.mark_put == "credit_memo"
    bulk = ctx.zuora.transfers.credit_memos if credit else ctx.zuora.transfers.debit_memos

    def one_by_one(rest: Sequence[RowKey]) -> None:
        _mark_memos_one_by_one(ctx, stream, rest, summary)

    def send(chunk: list[RowKey]) -> list[RowResult]:
        return bulk([r.zuora_id for r in chunk], "Yes")

    _mark_in_batches(ctx, rows, MAX_MEMOS_PER_CALL, send, summary=summary, refused=one_by_one)


def _whole_batches(ctx: ItemContext, stream: Stream, rows: list[RowKey]) -> list[RowKey]:
    """``rows`` without a last, partial batch while more of the stream is being posted."""
    size = MAX_OBJECTS_PER_CALL if stream.mark_action_type is not None else MAX_MEMOS_PER_CALL
    partial = len(rows) % size
    if not partial or not still_posting(ctx.ledger, ctx.connection, stream.object_type):
        return rows
    return rows[: len(rows) - partial]


def _mark_in_batches(
    ctx: ItemContext,
    rows: Sequence[RowKey],
    size: int,
    send: Callable[[list[RowKey]], list[RowResult]],
    *,
    summary: MarkSummary,
    refused: Callable[[Sequence[RowKey]], None] | None = None,
) -> None:
    """``send`` each batch of ``size`` rows (one result per row, in order) and record the results.
    A failed call defers its rows (a rate limit stops the run: ``more``); with ``refused``, a call
    refused as a whole (NotFound, Rejected) hands this and the remaining rows to it instead."""
    for start in range(0, len(rows), size):
        chunk = list(rows[start : start + size])
        summary.calls += 1
        try:
            results = send(chunk)
        except (NotFound, Rejected) as exc:
            if refused is None:
                _defer_batch(ctx, chunk, exc, summary)
                continue
            log.info("the batch update was refused (%s); marking one by one", exc)
            refused(rows[start:])
            return
        except ApiError as exc:
            _defer_batch(ctx, chunk, exc, summary)
            if isinstance(exc, RateLimited):
                summary.more = True
                return
            continue
        done: list[RowKey] = []
        failed: list[tuple[RowKey, str]] = []
        for row, result in zip(chunk, results, strict=True):
            if result.success:
                done.append(row)
            else:
                reason = "; ".join(str(e) for e in result.errors) or "no reason given"
                failed.append((row, reason))
                summary.errors.append(f"{row.zuora_number or row.zuora_id}: {reason}")
        summary.marked += _record(ctx, done, failed)
        summary.failed += len(failed)


def _defer_batch(ctx: ItemContext, chunk: Sequence[RowKey], exc: ApiError, summary: MarkSummary) -> None:
    summary.failed += len(chunk)
    summary.errors.append(str(exc))
    _record(ctx, [], [(r, str(exc)) for r in chunk])


def _mark_memos_one_by_one(
    ctx: ItemContext, stream: Stream, rows: Sequence[RowKey], summary: MarkSummary
) -> None:
    put = (
        ctx.zuora.transfers.credit_memo
        if stream.mark_put == "credit_memo"
        else ctx.zuora.transfers.debit_memo
    )

    def one(row: RowKey) -> tuple[RowKey, str | None]:
        try:
            put(row.zuora_id, "Yes")
        except ApiError as exc:
            return row, str(exc)
        return row, None

    with ThreadPoolExecutor(
        max_workers=min(MEMO_THREADS, max(1, len(rows))), thread_name_prefix="mark"
    ) as pool:
        results = list(pool.map(one, rows))
    summary.calls += len(rows)
    done = [row for row, error in results if error is None]
    failed = [(row, error) for row, error in results if error is not None]
    summary.errors.extend(f"{row.zuora_number or row.zuora_id}: {error}" for row, error in failed)
    summary.marked += _record(ctx, done, failed)
    summary.failed += len(failed)


def mark_stream(ctx: ItemContext, stream: Stream, *, limit: int = 1000) -> MarkSummary:
    """Mark up to ``limit`` posted rows of ``stream`` (``more`` says whether rows are left)."""
    summary = MarkSummary(stream=stream.name)
    if not stream.marks:
        return summary
    with log_context(connection=ctx.connection, stream=stream.name):
        rows = markable(ctx.ledger, ctx.connection, stream.object_type, ctx.shifted(ctx.now()), limit)
        rows = _whole_batches(ctx, stream, rows)
        if not rows:
            return summary
        if stream.mark_action_type is not None:
            _mark_actions(ctx, stream, rows, summary)
        else:
            _mark_memos(ctx, stream, rows, summary)
        summary.more = summary.more or len(rows) >= limit
        if summary.failed:
            log.warning(
                "marked %d %s, %d failed (retried later): %s",
                summary.marked,
                stream.name,
                summary.failed,
                "; ".join(summary.errors[:5]),
            )
        else:
            log.info("marked %d %s in %d calls", summary.marked, stream.name, summary.calls)
    return summary
