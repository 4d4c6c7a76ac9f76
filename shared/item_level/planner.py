"""One row's posting plan: the neutral ERP document, or what keeps it from being posted now.

:func:`plan` is the only place a ledger row becomes an ERP document. Posting
(:mod:`shared.item_level.posting`) and the replay preview (:mod:`shared.replay`) both call it, so
what a preview shows is what posting sends. It maps the row with the mapping file after looking
at what the document depends on:

* its account's ERP customer (payments, refunds, invoices and memos): the account's row must be
  posted, since its customer id is read from the account's payload;
* the documents a payment, refund or credit memo applies to: an application is sent when the
  ledger has its target posted *and released* in the ERP (Acumatica applies only to open
  documents). Where releasing is configured, a target whose release failed after its create is
  released first, and the row waits while that keeps failing; without releasing, a target posted
  but not released, or one not in the ledger, or in another state, is left out and named under
  ``not_applied``.

The *mode* decides what a dependency that is not there yet does:

* :class:`Post` (posting): a dependency whose row is pending or failed is posted first through
  ``post_first``; one still being posted makes the row wait briefly; a target whose post failed
  and is not due again yet makes the row wait until it is (never posted without it); an account without a
  customer makes it wait (briefly while the account is being posted, until the sweep otherwise);
  a target the ledger has not seen is waited for up to ``apply_wait`` (unless its stream finished
  a whole pull since the row came in), then left out.
* :data:`PREVIEW` (replay ``--dry-run``): nothing is written and nothing is posted. The plan is
  the document posting would build once the dependencies are in, and its ``notes`` say what
  posting would post first or wait for. An account the ledger does not have is read from Zuora.

The plan is :class:`Ready` (the document), :class:`Wait` (posting only) or :class:`Park` (the
mapping refuses the row, or the document is inconsistent: a person must fix something).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, overload

from shared.erp.base import Application, ArDocument, Customer, Payment
from shared.errors import ApiError
from shared.item_level.context import ItemContext
from shared.item_level.pull import fetch_by_ids
from shared.item_level.queries import records_by_zuora_ids
from shared.item_level.streams import ACCOUNTS, Stream, for_object_type
from shared.ledger.models import ObjectType, SyncRecord
from shared.ledger.states import FAILED, MARKED, PENDING, POSTED, POSTING
from shared.mapping import (
    CodeNames,
    MappingError,
    customer_from_account,
    customer_id_of,
    document_from_credit_memo,
    document_from_debit_memo,
    document_from_invoice,
    payment_from_payment,
    payment_from_refund,
)
from shared.mapping import Mapping as GlMapping
from shared.zuora.records import to_decimal

ItemDocument = Customer | ArDocument | Payment

POSTED_STATES = (POSTED, MARKED)


@dataclass(frozen=True)
class Post:
    """Plan to post now. ``post_first(record_id)`` posts a dependency's row (its outcome is read
    back from the ledger); None when posting may go no deeper, and a pending dependency then
    makes the row wait."""

    post_first: Callable[[int], object] | None = None


@dataclass(frozen=True)
class Preview:
    """Plan read-only: report in ``notes`` what posting would post first or wait for."""


PREVIEW = Preview()
Mode = Post | Preview


@dataclass(frozen=True)
class Ready:
    """Post ``document``; ``not_applied`` are the applications left out (``{"target", "reason"}``)."""

    document: ItemDocument
    not_applied: tuple[dict[str, str], ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wait:
    """Not yet: ``reason``, and try again after ``delay``. ``redispatch``: a short wait that comes
    back by countdown; a long one comes back through the sweep."""

    reason: str
    delay: timedelta
    redispatch: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Park:
    """The row cannot be posted until a person fixes ``reason``."""

    reason: str
    notes: tuple[str, ...] = ()


Plan = Ready | Wait | Park


@overload
def plan(
    ctx: ItemContext, stream: Stream, rec: SyncRecord, row: Mapping[str, Any], mode: Preview
) -> Ready | Park: ...


@overload
def plan(ctx: ItemContext, stream: Stream, rec: SyncRecord, row: Mapping[str, Any], mode: Post) -> Plan: ...


def plan(ctx: ItemContext, stream: Stream, rec: SyncRecord, row: Mapping[str, Any], mode: Mode) -> Plan:
    """The plan for ledger row ``rec`` of ``stream`` whose Zuora record is ``row`` (posting: the
    row's payload; the preview: the record as re-fetched from Zuora), by the current mapping.

    A preview never waits: its plan is :class:`Ready` or :class:`Park`, with notes. A Zuora error
    reading a memo item's accounting code makes posting wait; a preview raises it. The ledger's
    errors propagate in both modes."""
    notes: list[str] = []
    try:
        outcome = _plan(ctx, stream, rec, row, mode=mode, notes=notes)
    except MappingError as exc:
        return Park(exc.reason, tuple(notes))
    except ApiError as exc:  # reading Zuora's accounting codes for a memo's items
        if isinstance(mode, Preview):
            raise
        return Wait(f"reading Zuora's accounting codes: {exc}", ctx.options.short_wait, redispatch=True)
    except (ValueError, TypeError) as exc:
        # The neutral documents validate themselves (a zero payment, applications above the amount).
        return Park(f"{rec.subject}: {exc}", tuple(notes))
    return dataclasses.replace(outcome, notes=tuple(notes))


def _plan(
    ctx: ItemContext,
    stream: Stream,
    rec: SyncRecord,
    row: Mapping[str, Any],
    *,
    mode: Mode,
    notes: list[str],
) -> Plan:
    if stream.erp_method == "upsert_customer":
        return Ready(customer_from_account(row, ctx.mapping))
    account_id = stream.account_of(row)
    if not account_id:
        return Park(f"{rec.subject} has no accountId: it cannot be given an ERP customer")
    customer_id = _customer_id(ctx, rec, account_id, mode, notes)
    if not isinstance(customer_id, str):
        return customer_id
    applications = _applications(ctx, stream, rec, row, mode=mode, notes=notes)
    if isinstance(applications, Wait):
        return applications
    applied, left_out = applications
    document = map_document(
        stream.object_type,
        row,
        ctx.mapping,
        customer_id,
        applied,
        code_names=ctx.zuora.accounting_codes.name_of,
    )
    return Ready(document, tuple(left_out))


def _posted_first(ctx: ItemContext, mode: Mode, found: SyncRecord) -> SyncRecord | None:
    """A pending or failed dependency after posting it first, a posted one whose release failed
    after releasing it first (posting, when it may go deeper); as it is otherwise."""
    if not isinstance(mode, Post) or mode.post_first is None:
        return found
    unreleased = ctx.options.release and found.state in POSTED_STATES and not found.erp_released
    if found.state not in (PENDING, FAILED) and not unreleased:
        return found
    assert found.id is not None
    mode.post_first(found.id)
    return ctx.ledger.get_record_by_id(found.id)


def posted_customer_id(ctx: ItemContext, rec: SyncRecord) -> str | None:
    """The ERP customer of ``rec``'s account when the account is posted (None otherwise, or when
    its customer id cannot be read): what an ERP lookup or application of ``rec`` is scoped by."""
    if not rec.account_id:
        return None
    account = ctx.ledger.get_record(ctx.connection, ObjectType.ACCOUNT.value, rec.account_id)
    if account is None or account.state not in POSTED_STATES:
        return None
    try:
        return customer_id_of(account.payload)
    except MappingError:
        return None


def _customer_id(
    ctx: ItemContext, rec: SyncRecord, account_id: str, mode: Mode, notes: list[str]
) -> str | Wait | Park:
    """The ERP customer of the document's account, or why posting must wait."""
    account = ctx.ledger.get_record(ctx.connection, ObjectType.ACCOUNT.value, account_id)
    if account is not None:
        account = _posted_first(ctx, mode, account)
    if isinstance(mode, Preview):
        payload = _account_preview(ctx, account, account_id, notes)
        if payload is None:
            return Park(f"the account {account_id} of {rec.subject} is unknown")
        return customer_id_of(payload)
    if account is None:
        return Wait(
            f"waiting for account {account_id} to be synced as an ERP customer",
            ctx.options.long_wait,
            redispatch=False,
        )
    if account.state in POSTED_STATES:
        try:
            return customer_id_of(account.payload)
        except MappingError as exc:
            return Park(f"the customer of account {account_id}: {exc.reason}")
    if account.state in (POSTING, PENDING):
        return Wait(
            f"waiting for account {account_id}: its customer is being posted",
            ctx.options.short_wait,
            redispatch=True,
        )
    return Wait(
        f"waiting for account {account_id} ({account.state}: {account.last_error or 'no reason'}): "
        "fix the account, then the document is posted",
        ctx.options.long_wait,
        redispatch=False,
    )


def _account_preview(
    ctx: ItemContext, account: SyncRecord | None, account_id: str, notes: list[str]
) -> Mapping[str, Any] | None:
    """The account record the customer id is read from in a preview: the ledger's (noting that
    posting waits for its customer unless it is posted), else Zuora's; None when neither has it."""
    if account is not None:
        if account.state not in POSTED_STATES:
            notes.append(
                f"its account {account_id} is {account.state} in the ledger"
                + (f" ({account.last_error})" if account.last_error else "")
                + ": posting waits for the account's customer (it is posted first when pending)"
            )
        return account.payload
    fetched = fetch_by_ids(ctx, ACCOUNTS, [account_id]).get(account_id)
    if fetched is None:
        notes.append(f"its account {account_id} is neither in the ledger nor in Zuora")
    else:
        notes.append(f"its account {account_id} is not in the ledger yet: it is synced first")
    return fetched


def _applications(
    ctx: ItemContext,
    stream: Stream,
    rec: SyncRecord,
    row: Mapping[str, Any],
    *,
    mode: Mode,
    notes: list[str],
) -> tuple[list[Application], list[dict[str, str]]] | Wait:
    """The applications to send and the ones left out (with why), or why posting must wait."""
    targets = stream.application_targets(row)
    by_type: dict[str, list[str]] = defaultdict(list)
    for target, target_id, _ in targets:
        by_type[target.object_type].append(target_id)
    known: dict[tuple[str, str], SyncRecord] = {}
    for object_type, ids in by_type.items():
        for zid, known_row in records_by_zuora_ids(ctx.ledger, ctx.connection, object_type, ids).items():
            known[(object_type, zid)] = known_row
    applied: list[Application] = []
    left_out: list[dict[str, str]] = []
    now = ctx.now()  # before posting any target first: the wait is measured from here
    for target, target_id, raw_amount in targets:
        try:
            amount = to_decimal(raw_amount)
        except ValueError:
            left_out.append({"target": target_id, "reason": f"application amount {raw_amount!r} unreadable"})
            continue
        if amount <= 0:
            continue
        found = known.get((target.object_type, target_id))
        if found is not None:
            found = _posted_first(ctx, mode, found)
        if found is None:
            if isinstance(mode, Post):
                waiting = _wait_for_unknown(ctx, rec, target.object_type, target_id, now)
                if waiting is not None:
                    return waiting
            else:
                notes.append(
                    f"the {target.object_type} {target_id} it applies to is not in the ledger: posting waits "
                    "for it a while, then leaves the application out"
                )
            left_out.append(
                _left_out(
                    target_id,
                    f"{target.object_type} not in the ledger",
                    target.object_type,
                    target_id,
                    amount,
                )
            )
        elif found.state in (POSTING, PENDING) and isinstance(mode, Post):
            return Wait(
                f"waiting for {found.subject} (which this applies to) to be posted",
                ctx.options.short_wait,
                redispatch=True,
            )
        elif found.state == FAILED and isinstance(mode, Post):
            # Its last post failed and its retry is not due yet (or this row is posted too deep to
            # post it first): sent without it, this application would be lost. The row comes back
            # when the target's retry is due, and posts it first then.
            retry_in = found.next_attempt_at - now if found.next_attempt_at is not None else timedelta(0)
            return Wait(
                f"waiting for {found.subject} (which this applies to): its last post failed"
                + (f" ({found.last_error})" if found.last_error else "")
                + " and is tried again first",
                min(max(retry_in, ctx.options.short_wait), ctx.options.long_wait),
                redispatch=True,
            )
        elif found.state in POSTED_STATES and found.erp_released and found.zuora_number:
            applied.append(Application(natural_key=found.zuora_number, amount=amount, kind=target.kind))
        elif found.state in POSTED_STATES and ctx.options.release and isinstance(mode, Post):
            # Its release failed after its create: sent without it, this application would be
            # lost for good. Releasing it is tried again (above) each time this row comes back.
            return Wait(
                f"waiting for {found.subject} (which this applies to) to be released in the ERP",
                _growing_wait(ctx, now - rec.created_at),
                redispatch=True,
            )
        elif found.state in POSTED_STATES:
            left_out.append(
                _left_out(
                    found.zuora_number or target_id,
                    "not released in the ERP",
                    found.object_type,
                    target_id,
                    amount,
                )
            )
        else:
            if found.state in (PENDING, POSTING, FAILED) and isinstance(mode, Preview):
                name = found.zuora_number or found.zuora_id
                notes.append(
                    f"{found.object_type} {name} (which it applies to) is {found.state}: it is posted first"
                )
            left_out.append(
                _left_out(
                    found.zuora_number or target_id,
                    f"{found.state} in the ledger",
                    found.object_type,
                    target_id,
                    amount,
                )
            )
    return applied, left_out


def _left_out(name: str, reason: str, object_type: str, zuora_id: str, amount: Decimal) -> dict[str, str]:
    """A ``not_applied`` entry: the target as named in the ERP payload and why it was left out, and
    what applying it later needs (:mod:`shared.ledger.applications`)."""
    return {
        "target": name,
        "reason": reason,
        "object_type": object_type,
        "zuora_id": zuora_id,
        "amount": str(amount),
    }


def _wait_for_unknown(
    ctx: ItemContext, rec: SyncRecord, object_type: str, target_id: str, now: datetime
) -> Wait | None:
    """Posting waits for a target the ledger has not seen, for up to ``apply_wait`` after the row
    came in (at shorter intervals at first), unless the target's stream finished a whole pull that
    started after the row was in the ledger: then the target is not coming (older than the sync,
    or filtered out) and the application is left out."""
    waited = now - rec.created_at
    if waited >= ctx.options.apply_wait or _pulled_since(ctx, object_type, rec):
        return None
    return Wait(
        f"waiting for {object_type} {target_id} (which this applies to) to be synced",
        _growing_wait(ctx, waited),
        redispatch=True,
    )


def _growing_wait(ctx: ItemContext, waited: timedelta) -> timedelta:
    """How long a row that has waited ``waited`` for what it applies to waits next: half that,
    between the short wait and a minute (short intervals at first)."""
    return min(max(waited / 2, ctx.options.short_wait), timedelta(seconds=60))


def _pulled_since(ctx: ItemContext, object_type: str, rec: SyncRecord) -> bool:
    target_stream = for_object_type(object_type)
    if target_stream is None:
        return True
    run = ctx.ledger.get_stream(ctx.connection, target_stream.name)
    return bool(
        run is not None
        and run.last_status == "ok"
        and run.run_started_at is not None
        and run.run_started_at > rec.created_at
    )


def erp_payload(stream: Stream, ready: Ready) -> dict[str, Any]:
    """What posting stores on the row (``posted_payload``) before the ERP call: the method and the
    neutral document, and the applications left out."""
    return {
        "method": stream.erp_method,
        "document": dataclasses.asdict(ready.document),
        "not_applied": list(ready.not_applied),
    }


def map_document(
    object_type: str,
    row: Mapping[str, Any],
    mapping: GlMapping,
    customer_id: str,
    applications: Sequence[Application],
    *,
    code_names: CodeNames,
) -> ItemDocument:
    """The neutral ERP document for a Zuora document row of ``object_type`` (raises the mapping's
    errors; ``applications`` are what a credit memo or payment applies to; ``code_names`` names
    the accounting-code ids of memo items and may raise the Zuora client's errors)."""
    if object_type == ObjectType.INVOICE.value:
        return document_from_invoice(row, None, mapping, customer_id=customer_id)
    if object_type == ObjectType.DEBIT_MEMO.value:
        return document_from_debit_memo(row, None, mapping, customer_id=customer_id, code_names=code_names)
    if object_type == ObjectType.CREDIT_MEMO.value:
        return document_from_credit_memo(
            row, None, mapping, customer_id=customer_id, applies_to=applications, code_names=code_names
        )
    if object_type == ObjectType.PAYMENT.value:
        return payment_from_payment(row, mapping, applications, customer_id=customer_id)
    return payment_from_refund(row, mapping, applications, customer_id=customer_id)
