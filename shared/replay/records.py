"""Where a replayed record is: the ledger rows a query names, the record as Zuora has it now, and
the ERP's document carrying its natural key."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlmodel import col, select

from shared.erp.base import ErpRef, RefKind
from shared.errors import NotFound
from shared.exchange import audit_subject
from shared.item_level.context import ItemContext
from shared.item_level.pull import fetch_by_ids
from shared.item_level.streams import STREAMS, Stream
from shared.ledger import states
from shared.ledger.models import ObjectType, SyncRecord
from shared.ledger.repo import Ledger
from shared.mapping import MappingError, customer_id_of

JE = ObjectType.JOURNAL_ENTRY.value
POSTED_STATES = (states.POSTED, states.MARKED)
VOIDED = "Voided"  # an ERP document status (acumatica-api.md sections 6.2, 6.5)
SUBJECT_RE = re.compile(r"^([a-z_]+):(.+)$")


class ReplayError(Exception):
    """The replay cannot start (an unknown record, an ambiguous query): the message says why."""


# -- the ledger -----------------------------------------------------------------------------------


def label(record: SyncRecord) -> str:
    """``invoice INV00000012`` (or the Zuora id when the record has no number)."""
    return f"{record.object_type} {record.zuora_number or record.zuora_id}"


def resolve(ledger: Ledger, connection: str, query: str) -> list[SyncRecord]:
    """The records ``query`` names: a Zuora id or number, an ERP reference, or an audit subject
    ``<object_type>:<zuora id>`` (as ``explain`` shows it). Empty when the ledger has none."""
    records = ledger.find_records(connection, query)
    match = SUBJECT_RE.match(query)
    if not records and match and match.group(1) in {t.value for t in ObjectType}:
        found = ledger.get_record(connection, match.group(1), match.group(2))
        records = [found] if found is not None else []
    return records


def failed_records(
    ledger: Ledger, connection: str, streams: Sequence[Stream] | None = None
) -> list[SyncRecord]:
    """The connection's failed and parked item-level records (of ``streams``, default all),
    in the order they entered the ledger."""
    chosen = list(streams) if streams else list(STREAMS.values())
    with ledger.reading() as session:
        return list(
            session.exec(
                select(SyncRecord)
                .where(
                    SyncRecord.connection == connection,
                    col(SyncRecord.object_type).in_([s.object_type for s in chosen]),
                    col(SyncRecord.state).in_([states.FAILED, states.PARKED]),
                )
                .order_by(col(SyncRecord.id))
            ).all()
        )


def failed_journal_entries(ledger: Ledger, connection: str) -> list[SyncRecord]:
    """Failed or parked journal entries: their close re-drives them, not ``replay --failed``."""
    with ledger.reading() as session:
        return list(
            session.exec(
                select(SyncRecord)
                .where(
                    SyncRecord.connection == connection,
                    SyncRecord.object_type == JE,
                    col(SyncRecord.state).in_([states.FAILED, states.PARKED]),
                )
                .order_by(col(SyncRecord.id))
            ).all()
        )


# -- Zuora ----------------------------------------------------------------------------------------


def _complete_items(ctx: ItemContext, stream: Stream, row: dict[str, Any]) -> None:
    """Replace an item list the expansion may have cut at the page size with the full list
    (section 9.3), whatever the ledger state (a preview of a posted record needs it too)."""
    if stream.items is None or not stream.truncated(row, ctx.zuora.objects.max_page_size):
        return
    items: list[dict[str, Any]] = []
    for page in ctx.zuora.objects.pages(stream.items_query(str(row["id"]))):
        items.extend(page.data)
    row[stream.items.key] = items


def fetch_rows(
    ctx: ItemContext, stream: Stream, zuora_ids: Sequence[str], *, complete: bool = True
) -> dict[str, dict[str, Any]]:
    """These records by id from Zuora, with the stream's expansions and whatever their status
    (the push path's query, :func:`~shared.item_level.pull.fetch_by_ids`, at most 99 ids per
    call), cut item lists completed unless ``complete`` is False (``ingest_rows`` completes them
    itself). Missing ids are absent."""
    found = fetch_by_ids(ctx, stream, zuora_ids)
    if complete:
        for row in found.values():
            _complete_items(ctx, stream, row)
    return found


def fetch_entry(ctx: ItemContext, number: str) -> dict[str, Any] | None:
    """A summary journal entry as Zuora has it now; None when Zuora has no such entry."""
    try:
        return dict(ctx.zuora.journal_entries.get(number).raw)
    except NotFound:
        return None


# -- the ERP --------------------------------------------------------------------------------------


def _natural_key(ctx: ItemContext, stream: Stream | None, rec: SyncRecord) -> tuple[RefKind, str, str | None]:
    """(ERP kind, natural key, customer) to look the record's document up by."""
    if stream is None:
        return "journal", rec.zuora_number or rec.zuora_id, None
    if stream.erp_method == "upsert_customer":
        return "customer", customer_id_of(rec.payload), None
    if not rec.zuora_number:
        raise MappingError(f"{rec.subject} has no number to look it up by in the ERP")
    customer_id = None
    if rec.account_id:
        account = ctx.ledger.get_record(ctx.connection, ObjectType.ACCOUNT.value, rec.account_id)
        if account is not None and account.state in POSTED_STATES:
            try:
                customer_id = customer_id_of(account.payload)
            except MappingError:
                customer_id = None
    return stream.erp_kind, rec.zuora_number, customer_id


def lookup(ctx: ItemContext, stream: Stream | None, rec: SyncRecord) -> tuple[ErpRef | None, str]:
    """The ERP's live document carrying the record's natural key, or None with why: not there,
    or there but voided (a voided document is no posting: ``--force`` posts a new one). Raises
    the ERP's errors (``DuplicateDocuments`` among them) and MappingError for a record without a
    key to look it up by."""
    kind, key, customer_id = _natural_key(ctx, stream, rec)
    with audit_subject(rec.subject):
        found = ctx.erp.find_document(kind, key, customer_id)
    if found is None:
        return None, f"not in the ERP by natural key {key}"
    if found.status == VOIDED:
        return None, f"the ERP's {found.key} carrying {key} is voided"
    return found, ""
