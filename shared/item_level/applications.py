"""Applications applied after their document: what keeps Acumatica's open AR equal to Zuora's when
a payment, refund or credit memo had to be posted before a document it applies to.

Posting never holds a payment back for good: a target the ledger has not seen is waited for a
while, and a parked target (a person must fix it) is not waited for at all. The payment is then
created without that application, which is kept in the ledger as a *waiting* application
(:mod:`shared.ledger.applications`). Once the target is posted and released, the sweep sends the
payment's row to be posted again, and :func:`apply_waiting` applies what waited: each application
is claimed (``applying``, for the posting timeout), sent through
:meth:`~shared.erp.base.ErpTarget.apply_later` (which reads the ERP document's applications first,
so a lost answer's application is never made twice), and recorded ``applied``, each step in the
audit trail of the payment. An ERP error backs it off; a lost answer leaves it ``applying`` until
the claim ends, when it is read again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import cast

from shared.erp import fence
from shared.erp.base import Application, ErpRef, RefKind
from shared.erp.errors import OutcomeUnknown
from shared.errors import ApiError
from shared.exchange import audit_subject
from shared.item_level.context import ItemContext
from shared.item_level.planner import posted_customer_id
from shared.item_level.queries import records_by_zuora_ids
from shared.ledger import applications as ledger_applications
from shared.ledger.links import link_later
from shared.ledger.models import ErpApplication, ObjectType, SyncRecord
from shared.ledger.states import MARKED, POSTED

log = logging.getLogger("ledgerbridge.item_level.applications")

# The documents that apply to others.
APPLYING_TYPES: frozenset[str] = frozenset(
    {ObjectType.PAYMENT.value, ObjectType.REFUND.value, ObjectType.CREDIT_MEMO.value}
)
# Applied per document and call at most (each is a read, a write and a release in Acumatica).
PER_CALL = 20


def _retry_in(ctx: ItemContext, attempts: int) -> timedelta:
    doubled = float(2 ** min(max(attempts - 1, 0), 10))
    return min(timedelta(seconds=ctx.options.short_wait.total_seconds() * doubled), ctx.options.long_wait)


def apply_waiting(ctx: ItemContext, rec: SyncRecord) -> int:
    """Apply the due waiting applications of the posted, released document ``rec`` whose targets
    are posted and released now; returns how many the ERP has now (applied or found applied)."""
    if rec.object_type not in APPLYING_TYPES or not rec.erp_ref or not rec.erp_released or rec.id is None:
        return 0
    now = ctx.now()
    with ctx.ledger.reading() as session:
        due = [
            a
            for a in ledger_applications.open_applications(session, rec.id)
            if ledger_applications.is_due(a, now)
        ]
    if not due:
        return 0
    targets: dict[tuple[str, str], SyncRecord] = {}
    for object_type in {a.target_type for a in due}:
        ids = [a.target_id for a in due if a.target_type == object_type]
        for zid, row in records_by_zuora_ids(ctx.ledger, ctx.connection, object_type, ids).items():
            targets[(object_type, zid)] = row
    ready = [
        (a, t)
        for a in due
        for t in [targets.get((a.target_type, a.target_id))]
        if t is not None and t.state in (POSTED, MARKED) and t.erp_released and t.zuora_number
    ]
    if not ready:
        return 0
    customer_id = posted_customer_id(ctx, rec)
    if customer_id is None:
        log.warning("%s has applications to make but its account's customer is not known", rec.subject)
        return 0
    done = 0
    for app, target in ready[:PER_CALL]:
        done += _apply_one(ctx, rec, app, target, customer_id)
    return done


def _apply_one(
    ctx: ItemContext, rec: SyncRecord, app: ErpApplication, target: SyncRecord, customer_id: str
) -> int:
    assert rec.erp_ref is not None and target.zuora_number is not None
    now = ctx.now()
    until = now + ctx.options.posting_timeout
    with ctx.ledger.session() as session:
        if not ledger_applications.claim(session, app, until=until, now=now):
            return 0  # another worker has it
    attempts = app.attempts + 1
    try:
        amount = Decimal(app.amount)
        application = Application(
            natural_key=target.zuora_number, amount=amount, kind=cast(RefKind, target.object_type)
        )
    except (InvalidOperation, ValueError) as exc:
        # Not an amount the ERP could take: it stays waiting, visible in the audit trail, and
        # is looked at again only after the longest wait.
        with ctx.ledger.session() as session:
            ledger_applications.back_off(
                session, app, rec.subject, error=f"cannot apply {app.amount!r}: {exc}",
                retry_at=now + ctx.options.long_wait, now=now,
            )  # fmt: skip
        return 0
    source = ErpRef(cast(RefKind, rec.object_type), rec.erp_ref, True)
    try:
        with audit_subject(rec.subject), fence.send_by((until - ctx.now()).total_seconds()):
            target_ref, made = ctx.erp.apply_later(source, application, customer_id)
    except OutcomeUnknown as exc:
        # The ERP may have it: the claim ends, and the next attempt reads the document first.
        log.warning(
            "%s: the application to %s may or may not be in the ERP: %s", rec.subject, target.subject, exc
        )
        return 0
    except ApiError as exc:
        retry_at = ctx.now() + _retry_in(ctx, attempts)
        with ctx.ledger.session() as session:
            ledger_applications.back_off(
                session, app, rec.subject, error=str(exc), retry_at=retry_at, now=ctx.now()
            )
        log.warning("%s: could not apply it to %s yet: %s", rec.subject, target.subject, exc)
        return 0
    with ctx.ledger.session() as session:
        ledger_applications.settle(
            session, app, rec.subject, target_ref=target_ref.key, found=not made, now=ctx.now()
        )
        link_later(session, rec, target, amount=app.amount, target_ref=target_ref.key, now=ctx.now())
    log.info("%s applied to %s (%s) for %s in the ERP", rec.subject, target.subject, target_ref.key, amount)
    return 1
