"""Re-driving item-level records through the posting path (``ledgerbridge replay``), by state:

==================  ===============================================================================
pending             re-fetched, then posted now (the posting path: one ERP call, guarded by
                    ``posting``)
failed, parked      re-fetched, ``replay`` (back to pending, attempts reset), then posted
posting             posted through the posting path, which looks an in-doubt row up by natural key
                    first (a row inside its posting timeout belongs to another worker: busy)
posted, marked      nothing at all - no Zuora read, no ERP call - unless ``force``: then the ERP is
                    asked by natural key first; found: its reference is recorded and nothing is
                    created; not found, or found voided: the row goes back to pending and is
                    posted again (and marked again in Zuora, which is harmless)
==================  ===============================================================================

A record Zuora no longer has, or no longer in the status the sync posts (an invoice cancelled
after it was parked), is left as it is. Journal entries go to :mod:`shared.replay.journal_entries`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from shared.erp.errors import DuplicateDocuments
from shared.errors import ApiError
from shared.item_level.context import ItemContext
from shared.item_level.posting import (
    BUSY,
    FAILED_OUTCOME,
    IN_DOUBT,
    MARKED_OUTCOME,
    PARKED_OUTCOME,
    POSTED_OUTCOME,
    SKIPPED,
    WAITING,
    PostOutcome,
    post_records,
)
from shared.item_level.pull import ingest_rows
from shared.item_level.streams import STREAMS, for_object_type
from shared.ledger import states
from shared.ledger.models import RecordSource, SyncRecord
from shared.mapping import MappingError
from shared.replay.journal_entries import replay_journal_entry
from shared.replay.records import JE, POSTED_STATES, fetch_rows, lookup
from shared.replay.results import (
    BUSY_ACTION,
    DUPLICATES,
    ERROR,
    FAILED,
    IN_DOUBT_ACTION,
    NOT_IN_ZUORA,
    NOT_SYNCED,
    NOTHING,
    PARKED,
    POSTED,
    WAITING_ACTION,
    ReplayResult,
    already,
    change,
    note,
    record_found,
    result_of,
)
from shared.zuora.records import get_field

_OUTCOME_ACTIONS = {
    POSTED_OUTCOME: POSTED,
    MARKED_OUTCOME: POSTED,
    WAITING: WAITING_ACTION,
    PARKED_OUTCOME: PARKED,
    FAILED_OUTCOME: FAILED,
    BUSY: BUSY_ACTION,
    IN_DOUBT: IN_DOUBT_ACTION,
    SKIPPED: ERROR,
}


def _force_to_pending(ctx: ItemContext, rec: SyncRecord, reason: str, why: str) -> bool:
    """--force and the ERP has no live document: posted|marked -> posting -> pending, to post again."""
    assert rec.id is not None
    record_id = rec.id

    def reopen(session: Session) -> None:
        states.begin_posting(session, record_id, force=True, now=ctx.now())
        states.resume_in_doubt(session, record_id, found_erp_ref=None, now=ctx.now())

    if not change(ctx, reopen):
        return False
    note(ctx, rec, f"replay --force ({reason}): {why}; posting it again")
    return True


def _outcome_result(ctx: ItemContext, rec: SyncRecord, outcome: PostOutcome | None) -> ReplayResult:
    if outcome is None:
        return result_of(ctx, rec, ERROR, "the posting path did not report on it")
    action = _OUTCOME_ACTIONS.get(outcome.outcome, ERROR)
    detail = outcome.detail
    if action == POSTED:
        detail = f"posted as {outcome.erp_ref}" + (f" ({outcome.detail})" if outcome.detail else "")
    return result_of(ctx, rec, action, detail, outcome.erp_ref)


def replay_records(
    ctx: ItemContext, records: Sequence[SyncRecord], *, force: bool = False, reason: str = "replay"
) -> list[ReplayResult]:
    """Re-drive ``records`` (see the module docstring); one result per record, in order.

    Item-level records that end up to be posted go through
    :func:`~shared.item_level.posting.post_records` together (dependencies first), which hands
    marking to ``ctx.dispatch``. ``reason`` goes to each record's timeline."""
    results: dict[int, ReplayResult] = {}
    to_refresh: dict[str, list[SyncRecord]] = defaultdict(list)
    to_post: list[SyncRecord] = []
    forced: dict[int, str] = {}
    for rec in records:
        assert rec.id is not None
        stream = for_object_type(rec.object_type)
        if stream is None:
            if rec.object_type != JE:
                results[rec.id] = result_of(
                    ctx, rec, ERROR, f"{rec.object_type} is not a record ledgerbridge posts"
                )
                continue
            results[rec.id] = replay_journal_entry(ctx, rec, force=force, reason=reason)
            continue
        if rec.state in POSTED_STATES:
            if not force:
                results[rec.id] = result_of(ctx, rec, NOTHING, already(rec))
                continue
            try:
                found, why = lookup(ctx, stream, rec)
            except DuplicateDocuments as exc:
                results[rec.id] = result_of(ctx, rec, DUPLICATES, str(exc))
                continue
            except MappingError as exc:
                results[rec.id] = result_of(ctx, rec, ERROR, f"{exc.reason}; nothing done")
                continue
            except ApiError as exc:
                results[rec.id] = result_of(
                    ctx, rec, ERROR, f"could not look it up in the ERP: {exc}; nothing done"
                )
                continue
            if found is not None:
                results[rec.id] = record_found(ctx, stream, rec, found, reason)
                continue
            forced[rec.id] = why  # back to pending once Zuora still has it (below)
            to_refresh[stream.name].append(rec)
        elif rec.state == states.POSTING:
            to_post.append(rec)  # its payload is being sent: not refreshed underneath it
        else:
            to_refresh[stream.name].append(rec)
    for name, recs in to_refresh.items():
        stream = STREAMS[name]
        # ingest_rows completes cut item lists of the rows that may still be posted.
        rows = fetch_rows(ctx, stream, [r.zuora_id for r in recs], complete=False)
        fresh: list[dict[str, Any]] = []
        for rec in recs:
            assert rec.id is not None
            row = rows.get(rec.zuora_id)
            if row is None:
                results[rec.id] = result_of(
                    ctx, rec, NOT_IN_ZUORA, f"{rec.subject} is not in Zuora; left as it is"
                )
            elif not stream.is_posted(row):
                status = get_field(row, "status")
                results[rec.id] = result_of(
                    ctx,
                    rec,
                    NOT_SYNCED,
                    f"its status in Zuora is {status}, not {stream.posted_status}: left as it is",
                )
            elif rec.id in forced and not _force_to_pending(ctx, rec, reason, forced[rec.id]):
                results[rec.id] = result_of(
                    ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done"
                )
            else:
                fresh.append(row)
                to_post.append(rec)
        if fresh:
            ingest_rows(ctx, stream, fresh, source=RecordSource.REPLAY.value)
    ids: list[int] = []
    for rec in to_post:
        assert rec.id is not None
        record_id = rec.id
        if rec.state in (states.FAILED, states.PARKED) and not change(
            ctx, lambda s, i=record_id: states.replay(s, i, reason=reason, now=ctx.now())
        ):
            results[record_id] = result_of(
                ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done"
            )
            continue
        ids.append(record_id)
    if ids:
        summary = post_records(ctx, ids)
        outcomes = {o.record_id: o for o in summary.outcomes}
        for rec in to_post:
            assert rec.id is not None
            if rec.id in ids:
                results[rec.id] = _outcome_result(ctx, rec, outcomes.get(rec.id))
    return [results[rec.id] for rec in records if rec.id is not None and rec.id in results]
