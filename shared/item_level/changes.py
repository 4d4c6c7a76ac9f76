"""Changes in Zuora after a record was posted: carried to the ERP where that is safe, described
for a person where it is not.

A posted record fetched again (pulled, pushed or found by the mark audit) with other accounting
content than before gets ``changed_at`` in the ledger (:func:`shared.ledger.states.upsert_pulled`
compares :func:`~shared.item_level.streams.content_digest`); marking it transferred is no change.
The sweep sends such rows to be posted again, and :func:`carry_change` looks at what changed by
mapping the record as it is now and comparing it with what the ERP was sent:

* a **billing account**: the customer is upserted again (name, contact, address, whatever the
  mapping maps). An ERP that refuses (e.g. a currency change once documents exist) leaves a note.
* a **payment, refund or credit memo applied to more documents** in Zuora (Invoice Settlement
  applies later): each new application is kept as a waiting application and applied in the ERP
  by :mod:`shared.item_level.applications`, once.
* anything else - an application removed or its amount changed, a document's amounts, lines or
  dates changed (Zuora's override of the transfer flag, unpost and repost) - is **never
  overwritten** in the ERP: ``change_note`` describes it (what changed, from what to what) and
  Finance gets a notice; ``explain`` shows it.

Each outcome is one ledger transaction guarded by the ``changed_at`` it looked at: a further
change arriving meanwhile is looked at again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from shared import jsoncodec
from shared.erp.base import Customer
from shared.errors import ApiError, Rejected
from shared.exchange import audit_subject
from shared.item_level import planner
from shared.item_level.context import ItemContext
from shared.item_level.planner import Park, Wait
from shared.item_level.queries import records_by_zuora_ids
from shared.item_level.streams import ACCOUNTS, Stream, for_object_type
from shared.ledger import applications as ledger_applications
from shared.ledger.links import APPLICATION_KEYS, document_applications
from shared.ledger.models import SyncRecord
from shared.ledger.notices import add_notice
from shared.ledger.states import audit_note, settle_change
from shared.notify import Notice
from shared.outbox import draft
from shared.zuora.records import to_decimal

log = logging.getLogger("ledgerbridge.item_level.changes")

MAX_DIFFERENCES = 12

CARRIED = "carried"
NOTED = "noted"
UNCHANGED = "unchanged"
RETRY = "retry"


def differences(before: Any, after: Any, path: str = "") -> list[str]:
    """``path: old -> new`` for each leaf that differs between two JSON-like values."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        found: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            found += differences(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            found += differences(b, a, f"{path}[{i}]")
        return found
    if _same(before, after):
        return []
    return [f"{path or 'value'}: {before!r} -> {after!r}"]


def _same(before: Any, after: Any) -> bool:
    if before == after:
        return True
    try:  # amounts stored as strings and numbers compare by value
        return Decimal(str(before)) == Decimal(str(after))
    except (ArithmeticError, ValueError):
        return False


def _without_applications(document: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in APPLICATION_KEYS}


def carry_change(ctx: ItemContext, rec: SyncRecord) -> str:
    """Look at the change of a posted row with ``changed_at`` and carry it or describe it (module
    docstring). Returns :data:`CARRIED`, :data:`NOTED`, :data:`UNCHANGED` or :data:`RETRY` (the ERP
    could not be reached: the row stays changed and the sweep sends it again)."""
    stream = for_object_type(rec.object_type)
    seen = rec.changed_at
    if stream is None or seen is None or rec.id is None:
        return UNCHANGED
    previous = (rec.posted_payload or {}).get("document")
    plan = planner.plan(ctx, stream, rec, rec.payload, planner.PREVIEW)
    if isinstance(plan, Park):
        return _settle(
            ctx,
            rec,
            seen,
            note=f"changed in Zuora after it was posted, and cannot be mapped now: {plan.reason}",
        )
    assert not isinstance(plan, Wait)  # the preview never waits
    # As the ledger stores it (dates as ISO text, amounts exact), to compare like with like.
    document = jsoncodec.loads(jsoncodec.dumps(dataclasses.asdict(plan.document)))
    if not isinstance(previous, Mapping):
        return _settle(
            ctx,
            rec,
            seen,
            message="changed in Zuora after it was posted; the ledger has no ERP payload to compare with",
        )
    if stream is ACCOUNTS:
        return _carry_customer(
            ctx, rec, seen, customer=cast(Customer, plan.document), previous=previous, document=document
        )
    notes: list[str] = []
    added = _new_applications(ctx, stream, rec, previous, notes)
    changed = differences(_without_applications(previous), _without_applications(document))
    if changed:
        shown = "; ".join(changed[:MAX_DIFFERENCES]) + (
            f"; and {len(changed) - MAX_DIFFERENCES} more" if len(changed) > MAX_DIFFERENCES else ""
        )
        notes.append(
            f"changed in Zuora after it was posted ({shown}); the ERP document was not changed: "
            "reverse it in the ERP and post the new version, or correct it in Zuora"
        )
    message = None
    if added:
        message = (
            f"applied in Zuora to {len(added)} more document(s) after it was posted: "
            + ", ".join(added)
            + "; each is applied in the ERP once it is there"
        )
    return _settle(ctx, rec, seen, note="; ".join(notes) or None, message=message, added=len(added))


def _carry_customer(
    ctx: ItemContext,
    rec: SyncRecord,
    seen: datetime,
    *,
    customer: Customer,
    previous: Mapping[str, Any],
    document: dict[str, Any],
) -> str:
    changed = differences(previous, document)
    if not changed:
        return _settle(ctx, rec, seen, message="changed in Zuora; nothing the ERP customer holds changed")
    try:
        with audit_subject(rec.subject):
            ctx.erp.upsert_customer(customer)
    except Rejected as exc:
        return _settle(
            ctx, rec, seen,
            note=f"changed in Zuora ({'; '.join(changed)}) but the ERP refused the changed customer: {exc}",
        )  # fmt: skip
    except ApiError as exc:
        log.warning("could not update the customer of %s yet: %s", rec.subject, exc)
        return RETRY
    payload = {**(rec.posted_payload or {}), "document": document}
    return _settle(
        ctx,
        rec,
        seen,
        message=f"customer updated in the ERP: {'; '.join(changed)}",
        posted_payload=payload,
        carried=True,
    )


def _new_applications(
    ctx: ItemContext, stream: Stream, rec: SyncRecord, previous: Mapping[str, Any], notes: list[str]
) -> list[str]:
    """Keep the applications Zuora has now and the ERP was never sent as waiting ones; note the
    ones removed or changed. Returns the new ones, named."""
    assert rec.id is not None
    # (kind, number) -> amount applied at creation
    sent = {key: Decimal(amount) for key, amount in document_applications(previous).items()}
    with ctx.ledger.reading() as session:
        kept = {
            (a.target_type, a.target_id): a for a in ledger_applications.applications_of(session, [rec.id])
        }
    now_in_zuora: list[tuple[str, str, Decimal]] = []
    for target, target_id, raw in stream.application_targets(rec.payload):
        try:
            amount = to_decimal(raw)
        except ValueError:
            continue
        if amount > 0:
            now_in_zuora.append((target.object_type, target_id, amount))
    rows: dict[tuple[str, str], SyncRecord] = {}
    for object_type in {t for t, _, _ in now_in_zuora}:
        ids = [i for t, i, _ in now_in_zuora if t == object_type]
        for zid, known in records_by_zuora_ids(ctx.ledger, ctx.connection, object_type, ids).items():
            rows[(object_type, zid)] = known
    new: list[dict[str, str]] = []
    named: list[str] = []
    matched: set[tuple[str, str]] = set()
    for object_type, target_id, amount in now_in_zuora:
        row = rows.get((object_type, target_id))
        number = row.zuora_number if row is not None and row.zuora_number else target_id
        by_number = (object_type, number)
        if by_number in sent:
            matched.add(by_number)
            if sent[by_number] != amount:
                notes.append(
                    f"its application to {object_type} {number} is {amount} in Zuora, {sent[by_number]} in the ERP"
                )
        elif (object_type, target_id) in kept:
            matched.add(by_number)
            if Decimal(kept[(object_type, target_id)].amount) != amount:
                notes.append(
                    f"its application to {object_type} {number} is {amount} in Zuora, "
                    f"{kept[(object_type, target_id)].amount} when it was kept"
                )
        else:
            new.append(
                {"target": number, "reason": "applied in Zuora after it was posted", "object_type": object_type,
                 "zuora_id": target_id, "amount": str(amount)}
            )  # fmt: skip
            named.append(f"{object_type} {number} for {amount}")
    removed = [f"{kind} {number}" for kind, number in sent if (kind, number) not in matched]
    if removed:
        notes.append(
            f"unapplied in Zuora from {', '.join(removed)} after it was posted; the ERP still has "
            "the application: reverse it in the ERP"
        )
    if new:
        with ctx.ledger.session() as session:
            ledger_applications.keep(session, rec, new, now=ctx.now())
    return named


def _settle(
    ctx: ItemContext,
    rec: SyncRecord,
    seen: datetime,
    *,
    note: str | None = None,
    message: str | None = None,
    posted_payload: Mapping[str, Any] | None = None,
    carried: bool = False,
    added: int = 0,
) -> str:
    """Record how the change seen at ``seen`` ended, unless a newer change arrived meanwhile."""
    assert rec.id is not None
    now = ctx.now()
    with ctx.ledger.session() as session:
        if not settle_change(session, rec.id, seen, note=note, posted_payload=posted_payload, now=now):
            return RETRY  # changed again meanwhile: looked at again
        for text in (message, f"needs a person: {note}" if note else None):
            if text:
                audit_note(session, now, rec.connection, rec.subject, text)
        if note:
            add_notice(
                session,
                draft(
                    Notice(
                        event="record.changed_after_posting",
                        text=f"{rec.object_type} {rec.zuora_number or rec.zuora_id} needs a person: {note}",
                        subject=rec.subject,
                        connection=rec.connection,
                        fields={"record": rec.subject, "erp_ref": rec.erp_ref, "note": note},
                    ),
                    dedupe_key=f"changed:{rec.subject}:{seen.isoformat()}",
                ),
                now=now,
            )
    if note:
        log.warning("%s changed after posting and needs a person: %s", rec.subject, note)
        return NOTED
    return CARRIED if carried or added else UNCHANGED
