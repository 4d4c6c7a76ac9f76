"""``replay`` of summary journal entries, which belong to their close.

A failed or parked entry is re-fetched from Zuora and returned to pending: re-running its close
(``ledgerbridge close "<period>"``) checks, posts, marks and reconciles it. A pending or posting
entry is its close's to post. ``--force`` on a posted or marked entry asks the ERP by natural key
and posts the entry again, here, only when the ERP has no live document for it.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from shared.close.journals import journal_payload
from shared.erp.errors import DuplicateDocuments
from shared.errors import ApiError, Rejected
from shared.exchange import audit_subject
from shared.item_level.context import ItemContext
from shared.ledger import states
from shared.ledger.errors import LedgerError
from shared.ledger.models import RecordSource, SyncRecord
from shared.mapping import MappingError, journal_from_summary_entry
from shared.replay.records import JE, POSTED_STATES, fetch_entry, lookup
from shared.replay.results import (
    BUSY_ACTION,
    DUPLICATES,
    ERROR,
    IN_DOUBT_ACTION,
    NOT_IN_ZUORA,
    NOTHING,
    PARKED,
    POSTED,
    TO_CLOSE,
    ReplayResult,
    already,
    change,
    note,
    record_found,
    result_of,
)


def replay_journal_entry(ctx: ItemContext, rec: SyncRecord, *, force: bool, reason: str) -> ReplayResult:
    """Replay the journal entry ``rec`` (see the module docstring); ``reason`` goes to its timeline."""
    assert rec.id is not None
    record_id = rec.id
    close_cmd = f'`ledgerbridge close "{rec.period_name}"`'
    if rec.state in POSTED_STATES and not force:
        return result_of(ctx, rec, NOTHING, already(rec))
    if rec.state in (states.PENDING, states.POSTING):
        return result_of(ctx, rec, TO_CLOSE, f"{rec.state}: re-run its close ({close_cmd}) to post it")
    if rec.state in (states.FAILED, states.PARKED):
        fetched = fetch_entry(ctx, rec.zuora_id)
        if fetched is None:
            return result_of(
                ctx, rec, NOT_IN_ZUORA, f"journal entry {rec.zuora_id} is not in Zuora; nothing done"
            )
        entry: dict[str, Any] = fetched

        def back(session: Session) -> None:
            states.upsert_pulled(
                session,
                connection=ctx.connection,
                object_type=JE,
                zuora_id=rec.zuora_id,
                zuora_number=rec.zuora_number or rec.zuora_id,
                zuora_updated=None,
                payload=entry,
                account_id=None,
                source=RecordSource.CLOSE.value,
                now=ctx.now(),
            )
            states.replay(session, record_id, reason=reason, now=ctx.now())

        if not change(ctx, back):
            return result_of(ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done")
        return result_of(
            ctx,
            rec,
            TO_CLOSE,
            f"back to pending: re-run its close ({close_cmd}): it checks, posts, marks and reconciles it",
        )
    # posted | marked, forced
    try:
        found, why = lookup(ctx, None, rec)
    except DuplicateDocuments as exc:
        return result_of(ctx, rec, DUPLICATES, str(exc))
    except ApiError as exc:
        return result_of(ctx, rec, ERROR, f"could not look it up in the ERP: {exc}; nothing done")
    if found is not None:
        return record_found(ctx, None, rec, found, reason)
    current = fetch_entry(ctx, rec.zuora_id)
    if current is None:
        return result_of(
            ctx, rec, NOT_IN_ZUORA, f"journal entry {rec.zuora_id} is not in Zuora; nothing done"
        )
    try:
        journal = journal_from_summary_entry(current, ctx.mapping)
    except MappingError as exc:
        return result_of(
            ctx, rec, ERROR, f"not in the ERP, but it cannot be mapped: {exc.reason}; nothing done"
        )
    was_marked = rec.state == states.MARKED
    sent = journal_payload(journal)
    if not change(
        ctx, lambda s: states.begin_posting(s, record_id, erp_payload=sent, force=True, now=ctx.now())
    ):
        return result_of(ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done")
    note(ctx, rec, f"replay --force ({reason}): {why}; posting it again")
    try:
        with audit_subject(rec.subject):
            ref = ctx.erp.post_journal(journal)
    except Rejected as exc:
        refused = f"the ERP refused it: {exc}"
        change(ctx, lambda s: states.park(s, record_id, refused, now=ctx.now()))
        return result_of(ctx, rec, PARKED, refused)
    except Exception as exc:
        # Unsure whether the ERP has it: the row stays posting (in doubt); the close's post step
        # looks it up by natural key before posting again.
        return result_of(ctx, rec, IN_DOUBT_ACTION, f"{type(exc).__name__}: {exc}; in doubt until looked up")

    def done(session: Session) -> None:
        states.complete_posting(
            session, record_id, erp_ref=ref.key, erp_payload=sent, released=ref.released, now=ctx.now()
        )
        if was_marked:  # Zuora already says transferredToAccounting=Yes
            states.mark_transferred(session, record_id, now=ctx.now())

    try:
        with ctx.ledger.session() as session:
            done(session)
    except LedgerError as exc:
        return result_of(ctx, rec, IN_DOUBT_ACTION, f"posted as {ref.key} but not recorded: {exc}", ref.key)
    return result_of(ctx, rec, POSTED, f"posted again as {ref.key}", ref.key)
