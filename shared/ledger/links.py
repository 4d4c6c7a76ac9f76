"""Links between a document and the documents it is applied to in the ERP (:class:`RecordLink`).

A payment, refund or credit memo applied to an invoice, debit memo, payment or credit memo is how
Zuora's corrections reach the ERP: an invoice reversal's or write-off's credit memo is applied to
the invoice, a payment rejection's refund to the payment. Each application the ERP has - sent
with the document's create (:func:`link_created`) or made later (:func:`link_later`) - is one link
with both ERP references, so ``explain`` shows the chain from either side (:func:`links_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from shared.ledger.db import insert_ignoring_conflict
from shared.ledger.models import RecordLink, SyncRecord, metadata, utcnow
from shared.ledger.states import SYNC_RECORDS

LINKS = metadata.tables["record_link"]
APPLICATION_KEYS = ("applications", "applies_to")
WITH_THE_DOCUMENT = "with the document"
LATER = "later"


def _insert(session: Session, values: Mapping[str, Any]) -> bool:
    return insert_ignoring_conflict(session, LINKS, dict(values), ["source_id", "target_id"])


def document_applications(document: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """``{(kind, Zuora number): amount}`` of the applications an ERP payload's document was sent
    with (its ``applications`` / ``applies_to``)."""
    found: dict[tuple[str, str], str] = {}
    for key in APPLICATION_KEYS:
        for app in document.get(key) or []:
            if isinstance(app, Mapping) and app.get("natural_key") and app.get("kind"):
                found[(str(app["kind"]), str(app["natural_key"]))] = str(app.get("amount"))
    return found


def link_created(session: Session, rec: SyncRecord, *, now: datetime | None = None) -> int:
    """Link a document just recorded as posted to the documents its create applied it to (the
    ``applications`` / ``applies_to`` of its ERP payload, by Zuora number). Returns how many."""
    assert rec.id is not None
    wanted = document_applications((rec.posted_payload or {}).get("document") or {})
    if not wanted:
        return 0
    c = SYNC_RECORDS.c
    rows = session.execute(
        sa.select(c.id, c.object_type, c.zuora_number, c.erp_ref).where(
            c.connection == rec.connection,
            c.zuora_number.in_(sorted({number for _, number in wanted})),
            c.object_type.in_(sorted({kind for kind, _ in wanted})),
        )
    ).all()
    now = now or utcnow()
    made = 0
    for row in rows:
        amount = wanted.get((str(row.object_type), str(row.zuora_number)))
        if amount is None:
            continue
        made += _insert(
            session,
            {
                "connection": rec.connection, "source_id": rec.id, "target_id": int(row.id), "amount": amount,
                "source_ref": rec.erp_ref, "target_ref": row.erp_ref, "made": WITH_THE_DOCUMENT, "created_at": now,
            },
        )  # fmt: skip
    return made


def link_later(
    session: Session,
    rec: SyncRecord,
    target: SyncRecord,
    *,
    amount: str,
    target_ref: str,
    now: datetime | None = None,
) -> bool:
    """Link ``rec`` to ``target`` for an application made after both were in the ERP."""
    assert rec.id is not None and target.id is not None
    return _insert(
        session,
        {
            "connection": rec.connection, "source_id": rec.id, "target_id": target.id, "amount": amount,
            "source_ref": rec.erp_ref, "target_ref": target_ref, "made": LATER, "created_at": now or utcnow(),
        },
    )  # fmt: skip


@dataclass(frozen=True)
class Linked:
    """One link as seen from one of its two records: the other record, and the link."""

    other: SyncRecord
    link: RecordLink

    def describe(self, direction: str) -> str:
        """``applies to invoice INV00000001 (Invoice/AR000001) for 100.00, with the document``."""
        other = self.other
        name = other.zuora_number or other.zuora_id
        ref = self.link.target_ref if direction == "applies to" else self.link.source_ref
        words = other.object_type.replace("_", " ")
        reason = other.payload.get("reasonCode") if direction == "applied by" else None
        return (
            f"{direction} {words} {name}" + (f" ({ref})" if ref else "") + f" for {self.link.amount}, "
            f"{self.link.made}" + (f"; its reason: {reason}" if reason else "")
        )


def links_of(session: Session, record_id: int) -> tuple[list[Linked], list[Linked]]:
    """``(applies to, applied by)`` of one record: what it is applied to in the ERP, and what is
    applied to it, oldest first."""
    out: list[Linked] = []
    back: list[Linked] = []
    for link in session.exec(
        select(RecordLink)
        .where((col(RecordLink.source_id) == record_id) | (col(RecordLink.target_id) == record_id))
        .order_by(col(RecordLink.id))
    ).all():
        forward = link.source_id == record_id
        other = session.get(SyncRecord, link.target_id if forward else link.source_id)
        if other is None:
            continue
        (out if forward else back).append(Linked(other, link))
    return out, back
