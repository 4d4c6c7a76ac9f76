"""Zuora's corrections of posted documents (Invoice Settlement), as zuora-sdk describes them.

``PUT /v1/invoices/{invoiceKey}/reverse`` and ``/write-off``, ``PUT /v1/credit-memos/{creditMemoKey}/
reverse``, ``/apply`` and ``/unapply``, ``PUT /v1/payments/{paymentKey}/apply`` and ``/unapply``, and
``POST /v1/payments/{paymentKey}/refunds``. Each one changes the tenant the way Zuora does, so that
what a client reads afterwards through Object Query (the new memos and refunds, the expanded
``paymentApplications`` / ``creditMemoApplications`` / ``refundApplications``, balances and
``updatedDate``) is what Zuora would show. A request is checked in full before anything changes, so
a refused one leaves the tenant as it was.

Applications are kept as the seed keeps them: one ``PaymentApplication`` or ``CreditMemoApplication``
row per document and target, whose amount grows with an apply and shrinks with an unapply, and
which is gone once unapplied in full (docs/vendor-notes.md, "Corrections in the sandbox").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sandbox.zuora.catalog import ACCOUNTING_CODES
from sandbox.zuora.errors import (
    RESOURCE_CREDIT_MEMO,
    RESOURCE_INVOICE,
    RESOURCE_PAYMENT,
    invalid,
    missing,
    rule,
)
from sandbox.zuora.formats import finance_datetime, money, number_json
from sandbox.zuora.schema import OBJECTS
from sandbox.zuora.seed import memo_item_codes, memo_row, refund_row

from .records import POSTED_EVENTS
from .state import TenantState, object_body, optional_date

ZERO = Decimal("0.00")

# Default reason codes, as each request model's ``reasonCode`` describes them (zuora-sdk).
INVOICE_REVERSAL_REASON = "Invoice reversal"  # ReverseInvoiceRequest
WRITE_OFF_REASON = "Write-off"  # WriteOffInvoiceRequest
CREDIT_MEMO_REVERSAL_REASON = "Credit memo reversal"  # ReverseCreditMemoRequest
# CreateRefundRequest: "Zuora uses the default reason code" (the tenant's; the seed's refunds carry it).
REFUND_REASON = "Standard Refund"
REFUND_CATEGORY = 2410  # the event a payment's refund emits (records._Adder._posted)

REFUND_TYPES = ("External", "Electronic")  # zuora-sdk RefundType
METHOD_TYPES = frozenset(  # zuora-sdk PaymentMethodType
    {
        "ACH",
        "ApplePay",
        "BankTransfer",
        "Cash",
        "Check",
        "CreditCard",
        "CreditCardReferenceTransaction",
        "DebitCard",
        "Other",
        "PayPal",
        "WireTransfer",
    }
)
REVENUE_IMPACTING = ("Yes", "No")  # WriteOffInvoiceRequest.revenueImpacting


@dataclass(frozen=True)
class _Applier:
    """How one kind of document records its applications: a payment's or a credit memo's."""

    kind: str  # "Payment" | "CreditMemo"
    table: str  # the application table
    amount: str  # the application's amount field
    open: str  # the document's open amount (what it can still apply)
    invoice_total: str  # the invoice field that adds up this kind's applications
    resource: int


PAYMENT = _Applier(
    "Payment", "PaymentApplication", "ApplyAmount", "UnappliedAmount", "PaymentAmount", RESOURCE_PAYMENT
)
CREDIT_MEMO = _Applier(
    "CreditMemo", "CreditMemoApplication", "Amount", "Balance", "CreditMemoAmount", RESOURCE_CREDIT_MEMO
)

# The request list of each target kind and the fields that name one (ApplyPaymentInvoiceApplication,
# ApplyCreditMemoToInvoice, ...): an id, or for payments also a number.
_TARGETS = (
    ("invoices", "Invoice", "invoiceId", "invoiceNumber"),
    ("debitMemos", "DebitMemo", "debitMemoId", "debitMemoNumber"),
)


@dataclass(frozen=True)
class _Move:
    """One application change asked for: ``amount`` more (apply) or less (unapply) on ``target``."""

    kind: str  # "Invoice" | "DebitMemo"
    target: dict[str, Any]
    amount: Decimal


class Corrections(TenantState):
    """Reversals, write-offs, applications and refunds of posted documents."""

    # -- invoices ---------------------------------------------------------------------------------

    def reverse_invoice(self, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/invoices/{invoiceKey}/reverse``: a credit memo mirroring the invoice's items,
        applied to it in full, and the invoice flagged ``Reversed``. Refused (zuora-sdk's
        restrictions) unless the invoice is Posted, not negative and nothing is applied to it."""
        body = object_body(body, resource=RESOURCE_INVOICE)
        with self._lock:
            self._advance()
            invoice = self._row("Invoice", key, RESOURCE_INVOICE)
            if invoice["Status"] != "Posted":
                raise rule("Only a Posted invoice can be reversed.", resource=RESOURCE_INVOICE)
            if invoice["Reversed"]:
                raise rule(
                    f"Invoice {invoice['InvoiceNumber']} is already reversed.", resource=RESOURCE_INVOICE
                )
            if invoice["Amount"] < 0:
                raise rule("A negative invoice cannot be reversed.", resource=RESOURCE_INVOICE)
            if self._applied_to("Invoice", invoice["Id"]):
                raise rule(
                    "The invoice cannot be reversed while payments or credit memos are applied to it.",
                    resource=RESOURCE_INVOICE,
                )
            memo_date, effective = self._memo_dates(body, invoice["InvoiceDate"], RESOURCE_INVOICE)
            memo = self._credit_memo_for(
                invoice,
                invoice["Amount"],
                memo_date=memo_date,
                reason=_reason(body, INVOICE_REVERSAL_REASON, RESOURCE_INVOICE),
                comment=_text(body, "comment", RESOURCE_INVOICE),
            )
            self._apply(CREDIT_MEMO, memo, [_Move("Invoice", invoice, memo["Balance"])], effective)
            self._touch(OBJECTS["Invoice"], invoice, {"Reversed": True})
            self._settle_items("InvoiceItem", "InvoiceId", invoice["Id"], "Balance")
            ref = {"id": memo["Id"]}
            return {"success": True, "id": invoice["Id"], "creditMemo": ref, "creditMemos": [ref]}

    def write_off_invoice(self, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/invoices/{invoiceKey}/write-off``: a credit memo for the invoice's open balance,
        applied to it, so the balance is 0. The whole balance is written off (``items``, when sent,
        must name every item, says zuora-sdk), so only a Posted invoice with a balance qualifies."""
        body = object_body(body, resource=RESOURCE_INVOICE)
        impacting = body.get("revenueImpacting")
        if impacting is not None and impacting not in REVENUE_IMPACTING:
            raise invalid("revenueImpacting must be Yes or No.", resource=RESOURCE_INVOICE)
        with self._lock:
            self._advance()
            invoice = self._row("Invoice", key, RESOURCE_INVOICE)
            if invoice["Status"] != "Posted":
                raise rule("Only a Posted invoice can be written off.", resource=RESOURCE_INVOICE)
            if invoice["Balance"] <= 0:
                raise rule("The invoice has no open balance to write off.", resource=RESOURCE_INVOICE)
            memo_date = optional_date(body, "memoDate", RESOURCE_INVOICE) or self._now_dt().date()
            if memo_date < invoice["InvoiceDate"]:
                raise invalid("memoDate must not be before the invoice date.", resource=RESOURCE_INVOICE)
            memo = self._credit_memo_for(
                invoice,
                invoice["Balance"],
                memo_date=memo_date,
                reason=_reason(body, WRITE_OFF_REASON, RESOURCE_INVOICE),
                comment=_text(body, "comment", RESOURCE_INVOICE),
                revenue_impacting=impacting,
            )
            self._apply(CREDIT_MEMO, memo, [_Move("Invoice", invoice, memo["Balance"])], memo_date)
            self._settle_items("InvoiceItem", "InvoiceId", invoice["Id"], "Balance")
            return {"success": True, "creditMemo": {"id": memo["Id"]}}

    # -- credit memos -----------------------------------------------------------------------------

    def reverse_credit_memo(self, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/credit-memos/{creditMemoKey}/reverse``: a debit memo mirroring the credit memo,
        the credit memo applied to it so its balance is 0, and the credit memo flagged ``Reversed``.
        Refused unless the memo is Posted and its applied amount is 0 (zuora-sdk's restrictions)."""
        body = object_body(body, resource=RESOURCE_CREDIT_MEMO)
        with self._lock:
            self._advance()
            memo = self._row("CreditMemo", key, RESOURCE_CREDIT_MEMO)
            if memo["Status"] != "Posted":
                raise rule("Only a Posted credit memo can be reversed.", resource=RESOURCE_CREDIT_MEMO)
            if memo["Reversed"]:
                raise rule(
                    f"Credit memo {memo['MemoNumber']} is already reversed.", resource=RESOURCE_CREDIT_MEMO
                )
            if memo["AppliedAmount"] != 0:
                raise rule(
                    "A credit memo whose applied amount is not 0 cannot be reversed.",
                    resource=RESOURCE_CREDIT_MEMO,
                )
            memo_date, effective = self._memo_dates(body, memo["MemoDate"], RESOURCE_CREDIT_MEMO)
            debit = self._debit_memo_for(
                memo,
                memo_date=memo_date,
                reason=_reason(body, CREDIT_MEMO_REVERSAL_REASON, RESOURCE_CREDIT_MEMO),
                comment=_text(body, "comment", RESOURCE_CREDIT_MEMO),
            )
            if memo["Balance"] > 0:
                self._apply(CREDIT_MEMO, memo, [_Move("DebitMemo", debit, memo["Balance"])], effective)
            self._touch(OBJECTS["CreditMemo"], memo, {"Reversed": True})
            self._settle_items("CreditMemoItem", "CreditMemoId", memo["Id"], "UnappliedAmount")
            return {"success": True, "id": memo["Id"], "debitMemo": {"id": debit["Id"]}}

    def apply_credit_memo(self, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/credit-memos/{creditMemoKey}/apply``: apply to ``invoices`` / ``debitMemos``."""
        return self._change_applications(CREDIT_MEMO, key, body, unapply=False)

    def unapply_credit_memo(self, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/credit-memos/{creditMemoKey}/unapply``: the amounts go back to the memo's balance."""
        return self._change_applications(CREDIT_MEMO, key, body, unapply=True)

    # -- payments ---------------------------------------------------------------------------------

    def apply_payment(self, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/payments/{paymentKey}/apply``: apply the unapplied amount to ``invoices`` and
        ``debitMemos``."""
        return self._change_applications(PAYMENT, key, body, unapply=False)

    def unapply_payment(self, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/payments/{paymentKey}/unapply``: the amounts go back to the unapplied amount."""
        return self._change_applications(PAYMENT, key, body, unapply=True)

    def refund_payment(self, key: str, body: Any) -> dict[str, Any]:
        """``POST /v1/payments/{paymentKey}/refunds``: a refund of at most the payment's unapplied
        amount (an applied part must be unapplied first, says zuora-sdk's ``totalAmount``), with its
        refund application to the payment."""
        body = object_body(body, resource=RESOURCE_PAYMENT)
        refund_type = body.get("type")
        if refund_type in (None, ""):
            raise missing("type is required.", resource=RESOURCE_PAYMENT)
        if refund_type not in REFUND_TYPES:
            raise invalid(f"type must be one of {', '.join(REFUND_TYPES)}.", resource=RESOURCE_PAYMENT)
        amount = _amount(body, "totalAmount", RESOURCE_PAYMENT)
        method_type = _text(body, "methodType", RESOURCE_PAYMENT)
        if method_type is not None and method_type not in METHOD_TYPES:
            raise invalid(
                f"methodType {method_type!r} is not a payment method type.", resource=RESOURCE_PAYMENT
            )
        # An external refund says how it was paid out; an electronic one goes back through the
        # payment's gateway on a date Zuora sets (docs/vendor-notes.md, "Corrections in the sandbox").
        if refund_type == "External" and method_type is None:
            raise missing("methodType is required for an external refund.", resource=RESOURCE_PAYMENT)
        if refund_type == "Electronic" and (method_type is not None or body.get("refundDate")):
            raise invalid(
                "methodType and refundDate are for external refunds only.", resource=RESOURCE_PAYMENT
            )
        with self._lock:
            self._advance()
            payment = self._row("Payment", key, RESOURCE_PAYMENT)
            if refund_type == "Electronic" and payment["Type"] != "Electronic":
                raise rule(
                    "Only an electronic payment can be refunded electronically.", resource=RESOURCE_PAYMENT
                )
            if amount > payment["UnappliedAmount"]:
                raise rule(
                    f"The refund amount {amount} exceeds the unapplied amount {payment['UnappliedAmount']} "
                    "of the payment; unapply the payment first.",
                    resource=RESOURCE_PAYMENT,
                )
            refund_date = optional_date(body, "refundDate", RESOURCE_PAYMENT) or self._now_dt().date()
            if refund_date < payment["EffectiveDate"]:
                raise invalid("refundDate must not be before the payment date.", resource=RESOURCE_PAYMENT)
            refund = self._refund_of(
                payment,
                amount,
                refund_type=refund_type,
                method_type=method_type,
                refund_date=refund_date,
                reason=_reason(body, REFUND_REASON, RESOURCE_PAYMENT),
                comment=_text(body, "comment", RESOURCE_PAYMENT),
                reference=_text(body, "referenceId", RESOURCE_PAYMENT),
            )
            return self._refund_v1(refund, payment)

    # -- the shared steps -------------------------------------------------------------------------

    def _memo_dates(self, body: dict[str, Any], not_before: date, resource: int) -> tuple[date, date]:
        """``memoDate`` (not before the corrected document's date) and ``applyEffectiveDate`` (not
        before the memo date); each defaults to today, as the request models say."""
        today = self._now_dt().date()
        memo_date = optional_date(body, "memoDate", resource) or today
        if memo_date < not_before:
            raise invalid(
                "memoDate must not be before the date of the document it corrects.", resource=resource
            )
        effective = optional_date(body, "applyEffectiveDate", resource) or max(today, memo_date)
        if effective < memo_date:
            raise invalid("applyEffectiveDate must not be before memoDate.", resource=resource)
        return memo_date, effective

    def _applied_to(self, kind: str, target_id: str) -> bool:
        """Whether any payment or credit memo is applied to the invoice or debit memo."""
        field = f"{kind}Id"
        return any(
            row[applier.amount] > 0
            for applier in (PAYMENT, CREDIT_MEMO)
            for row in self._tables[applier.table].where(field, target_id)
        )

    def _credit_memo_for(
        self,
        invoice: dict[str, Any],
        amount: Decimal,
        *,
        memo_date: date,
        reason: str,
        comment: str | None,
        revenue_impacting: str | None = None,
    ) -> dict[str, Any]:
        """A posted credit memo of ``amount`` whose items mirror the invoice's items (scaled when
        ``amount`` is less than the invoice's), shaped as the seed's memos of an invoice are."""
        account = self._tables["Account"].rows[invoice["AccountId"]]
        sources = self._tables["InvoiceItem"].where("InvoiceId", invoice["Id"])
        shares = _shares([(i["ChargeAmount"], i["TaxAmount"]) for i in sources], amount)
        memo = memo_row(
            self._factory,
            "CreditMemo",
            account,
            memo_date=memo_date,
            created=self._now_dt(),
            drafts=[],
            invoice=invoice,
            reason=reason,
        )
        memo.pop("_items")
        items = []
        for source, (without_tax, tax) in zip(sources, shares, strict=True):
            item = self._mirrored_item(source, memo, "CreditMemoItem", without_tax, tax)
            # Applied in full at once: nothing of any item is left unapplied.
            codes = memo_item_codes(_revenue_code(source["AccountingCode"]), credit=True)
            items.append({**item, **codes, "UnappliedAmount": ZERO})
        extra: dict[str, Any] = {"Comments": comment}
        if revenue_impacting is not None:
            extra["RevenueImpacting"] = revenue_impacting
        return self._post_memo("CreditMemo", memo, items, extra)

    def _debit_memo_for(
        self, credit: dict[str, Any], *, memo_date: date, reason: str, comment: str | None
    ) -> dict[str, Any]:
        """A posted debit memo mirroring the credit memo and its items (what reversing it creates)."""
        account = self._tables["Account"].rows[credit["AccountId"]]
        sources = self._tables["CreditMemoItem"].where("CreditMemoId", credit["Id"])
        memo = memo_row(
            self._factory,
            "DebitMemo",
            account,
            memo_date=memo_date,
            created=self._now_dt(),
            drafts=[],
            invoice=None,
            reason=reason,
        )
        memo.pop("_items")
        settled = credit["Balance"] == credit["TotalAmount"]  # applied in full: item balances are 0
        items = []
        for source in sources:
            item = self._mirrored_item(
                source, memo, "DebitMemoItem", source["AmountWithoutTax"], source["TaxAmount"]
            )
            item.update(
                {name: source[name] for name in _CODE_IDS},
                CreditMemoItemId=source["Id"],
                InvoiceItemId=source["InvoiceItemId"],
                Balance=ZERO if settled else item["Amount"],
            )
            items.append(item)
        extra = {"Comments": comment, "SourceType": "CreditMemo", "CreditMemoId": credit["Id"]}
        return self._post_memo("DebitMemo", memo, items, extra)

    def _mirrored_item(
        self, source: dict[str, Any], memo: dict[str, Any], kind: str, without_tax: Decimal, tax: Decimal
    ) -> dict[str, Any]:
        """A memo item carrying ``source``'s charge (an invoice item or a credit memo item)."""
        invoice_item = kind == "CreditMemoItem"
        item: dict[str, Any] = {
            "Id": self._factory.new_id(),
            "CreditMemoId" if invoice_item else "DebitMemoId": memo["Id"],
            "Amount": without_tax + tax,
            "AmountWithoutTax": without_tax,
            "TaxAmount": tax,
            "TaxExemptAmount": ZERO,
            "UnitOfMeasure": source["UOM"] if invoice_item else source["UnitOfMeasure"],
            "Sku": source["SKU"] if invoice_item else source["Sku"],
            "InvoiceItemId": source["Id"] if invoice_item else None,
            **{name: source[name] for name in _CARRIED},
            **self._factory.stamp(self._now_dt()),
        }
        return item

    def _post_memo(
        self, kind: str, memo: dict[str, Any], items: list[dict[str, Any]], extra: dict[str, Any]
    ) -> dict[str, Any]:
        """Store a memo with its items and totals, and emit the event a posted memo emits."""
        without_tax = sum((i["AmountWithoutTax"] for i in items), ZERO)
        tax = sum((i["TaxAmount"] for i in items), ZERO)
        memo.update(
            TotalAmount=without_tax + tax,
            TotalAmountWithoutTax=without_tax,
            TaxAmount=tax,
            Balance=without_tax + tax,
            **extra,
        )
        row = self._tables[kind].insert(memo)
        for item in items:
            self._tables[f"{kind}Item"].insert(item)
        self._emit("posted", kind, row["Id"], row["MemoNumber"], POSTED_EVENTS[kind])
        return row

    def _settle_items(self, table: str, parent_field: str, parent_id: str, open_field: str) -> None:
        """Zero the open amount of each item of a document settled in full (a reversal or write-off
        leaves every item's balance at 0)."""
        for item in self._tables[table].where(parent_field, parent_id):
            if item[open_field]:
                self._touch(OBJECTS[table], item, {open_field: ZERO})

    def _change_applications(
        self, applier: _Applier, key: str, body: Any, *, unapply: bool
    ) -> dict[str, Any]:
        """Apply or unapply a payment or credit memo to the invoices and debit memos of ``body``."""
        body = object_body(body, resource=applier.resource)
        effective = optional_date(body, "effectiveDate", applier.resource)
        with self._lock:
            self._advance()
            document = self._row(applier.kind, key, applier.resource)
            moves = list(self._moves(applier, body))
            if not moves:
                raise missing("invoices or debitMemos is required.", resource=applier.resource)
            if unapply:
                self._check_unapply(applier, document, moves)
                moves = [_Move(m.kind, m.target, -m.amount) for m in moves]
            else:
                self._check_apply(applier, document, moves)
            self._apply(applier, document, moves, effective or self._now_dt().date())
            if applier is PAYMENT:
                return self._payment_v1(document)
            return self._credit_memo_v1(document)

    def _moves(self, applier: _Applier, body: dict[str, Any]) -> Iterable[_Move]:
        for list_name, kind, id_field, number_field in _TARGETS:
            entries = body.get(list_name) or []
            if not isinstance(entries, list):
                raise invalid(f"{list_name} must be an array.", resource=applier.resource)
            for entry in entries:
                if not isinstance(entry, dict):
                    raise invalid(f"each of {list_name} must be an object.", resource=applier.resource)
                target_key = entry.get(id_field) or (entry.get(number_field) if applier is PAYMENT else None)
                if not isinstance(target_key, str) or not target_key:
                    raise missing(f"{id_field} is required in {list_name}.", resource=applier.resource)
                target = self._row(kind, target_key, applier.resource)
                number = entry.get(number_field)
                if (
                    entry.get(id_field)
                    and number
                    and target["Id"] != self._row(kind, number, applier.resource)["Id"]
                ):
                    raise invalid(
                        f"{id_field} and {number_field} name different documents.", resource=applier.resource
                    )
                yield _Move(kind, target, _amount(entry, "amount", applier.resource))

    def _check_apply(self, applier: _Applier, document: dict[str, Any], moves: list[_Move]) -> None:
        name = _label(applier.kind)
        if document["Status"] not in ("Posted", "Processed"):
            raise rule(f"Only a posted {name} can be applied.", resource=applier.resource)
        total = sum((m.amount for m in moves), ZERO)
        if total > document[applier.open]:
            raise rule(
                f"The amount to apply {total} exceeds the unapplied amount {document[applier.open]} "
                f"of the {name}.",
                resource=applier.resource,
            )
        for move in moves:
            if move.target["Status"] != "Posted":
                raise rule(f"Only a Posted {_label(move.kind)} can be applied to.", resource=applier.resource)
            if move.target["AccountId"] != document["AccountId"]:
                raise rule(f"The {_label(move.kind)} belongs to another account.", resource=applier.resource)
            due = move.amount + sum(
                (m.amount for m in moves if m.target is move.target and m is not move), ZERO
            )
            if due > move.target["Balance"]:
                raise rule(
                    f"The amount {due} exceeds the balance {move.target['Balance']} of "
                    f"{_label(move.kind)} {_number(move)}.",
                    resource=applier.resource,
                )

    def _check_unapply(self, applier: _Applier, document: dict[str, Any], moves: list[_Move]) -> None:
        for move in moves:
            asked = sum((m.amount for m in moves if m.target is move.target), ZERO)
            found = self._application(applier, document["Id"], move.kind, move.target["Id"])
            applied = found[applier.amount] if found is not None else ZERO
            if asked > applied:
                raise rule(
                    f"The amount to unapply {asked} exceeds the {applied} applied to "
                    f"{_label(move.kind)} {_number(move)}.",
                    resource=applier.resource,
                )

    def _application(
        self, applier: _Applier, document_id: str, kind: str, target_id: str
    ) -> dict[str, Any] | None:
        field = f"{kind}Id"
        return next(
            (
                row
                for row in self._tables[applier.table].where(f"{applier.kind}Id", document_id)
                if row.get(field) == target_id
            ),
            None,
        )

    def _apply(
        self, applier: _Applier, document: dict[str, Any], moves: list[_Move], effective: date
    ) -> None:
        """Move each amount (negative: unapply) between ``document`` and its target: the
        application row, the document's applied and open amounts, the target's balance."""
        table = self._tables[applier.table]
        now = self._now_dt()
        for move in moves:
            found = self._application(applier, document["Id"], move.kind, move.target["Id"])
            if found is None:
                table.insert(
                    {
                        "Id": self._factory.new_id(),
                        f"{applier.kind}Id": document["Id"],
                        f"{move.kind}Id": move.target["Id"],
                        applier.amount: move.amount,
                        "EffectiveDate": effective,
                        **self._factory.stamp(now),
                    }
                )
            elif found[applier.amount] + move.amount == 0:
                table.delete(found["Id"])
            else:
                table.update(
                    found["Id"],
                    {
                        applier.amount: found[applier.amount] + move.amount,
                        "EffectiveDate": effective,
                        "UpdatedDate": now,
                    },
                )
            changes = {"Balance": move.target["Balance"] - move.amount}
            if move.kind == "Invoice":
                changes[applier.invoice_total] = move.target[applier.invoice_total] + move.amount
            self._touch(OBJECTS[move.kind], move.target, changes)
        total = sum((m.amount for m in moves), ZERO)
        self._touch(
            OBJECTS[applier.kind],
            document,
            {
                "AppliedAmount": document["AppliedAmount"] + total,
                applier.open: document[applier.open] - total,
            },
        )

    def _refund_of(
        self,
        payment: dict[str, Any],
        amount: Decimal,
        *,
        refund_type: str,
        method_type: str | None,
        refund_date: date,
        reason: str,
        comment: str | None,
        reference: str | None,
    ) -> dict[str, Any]:
        """The refund row, its application to the payment and the payment's amounts, shaped as the
        seed's refunds of payments."""
        account = self._tables["Account"].rows[payment["AccountId"]]
        method = self._tables["PaymentMethod"].rows.get(payment["PaymentMethodId"] or "")
        now = self._now_dt()
        row = refund_row(
            self._factory,
            account,
            method,
            amount=amount,
            refund_date=refund_date,
            created=now,
            source_type="Payment",
        )
        row.update(Type=refund_type, ReasonCode=reason)
        if refund_type == "External":
            # An external refund is recorded, not sent through a gateway.
            row.update(
                MethodType=method_type,
                Gateway=None,
                GatewayState=None,
                SubmittedOn=None,
                SettledOn=None,
                AccountingCode="Undeposited Funds",
            )
        for name, value in (("Comment", comment), ("ReferenceID", reference)):
            if value is not None:
                row[name] = value
        refund = self._tables["Refund"].insert(row)
        self._tables["RefundApplication"].insert(
            {
                "Id": self._factory.new_id(),
                "RefundId": refund["Id"],
                "PaymentId": payment["Id"],
                "ApplyAmount": amount,
                "EffectiveDate": refund_date,
                **self._factory.stamp(now),
            }
        )
        self._touch(
            OBJECTS["Payment"],
            payment,
            {
                "RefundAmount": payment["RefundAmount"] + amount,
                "UnappliedAmount": payment["UnappliedAmount"] - amount,
            },
        )
        self._emit(
            "posted", "Refund", refund["Id"], refund["RefundNumber"], REFUND_CATEGORY, type=refund["Type"]
        )
        return refund

    # -- answers ----------------------------------------------------------------------------------

    def _payment_v1(self, row: dict[str, Any]) -> dict[str, Any]:
        """A payment as ``PaymentResponse``."""
        zone = self.zone
        return {
            "id": row["Id"],
            "number": row["PaymentNumber"],
            "accountId": row["AccountId"],
            "amount": number_json(row["Amount"]),
            "appliedAmount": number_json(row["AppliedAmount"]),
            "unappliedAmount": number_json(row["UnappliedAmount"]),
            "refundAmount": number_json(row["RefundAmount"]),
            "currency": row["Currency"],
            "effectiveDate": row["EffectiveDate"].isoformat(),
            "paymentMethodId": row["PaymentMethodId"],
            "status": row["Status"],
            "type": row["Type"],
            "createdDate": finance_datetime(row["CreatedDate"], zone),
            "updatedDate": finance_datetime(row["UpdatedDate"], zone),
            "success": True,
        }

    def _credit_memo_v1(self, row: dict[str, Any]) -> dict[str, Any]:
        """A credit memo as ``CreditMemoResponse`` (its open amount is ``unappliedAmount``)."""
        zone = self.zone
        return {
            "id": row["Id"],
            "number": row["MemoNumber"],
            "accountId": row["AccountId"],
            "amount": number_json(row["TotalAmount"]),
            "appliedAmount": number_json(row["AppliedAmount"]),
            "unappliedAmount": number_json(row["Balance"]),
            "refundAmount": number_json(row["RefundAmount"]),
            "creditMemoDate": row["MemoDate"].isoformat(),
            "currency": row["Currency"],
            "reasonCode": row["ReasonCode"],
            "reversed": bool(row["Reversed"]),
            "status": row["Status"],
            "createdDate": finance_datetime(row["CreatedDate"], zone),
            "updatedDate": finance_datetime(row["UpdatedDate"], zone),
            "success": True,
        }

    def _refund_v1(self, row: dict[str, Any], payment: dict[str, Any]) -> dict[str, Any]:
        """A refund as ``RefundResponse``."""
        zone = self.zone
        return {
            "id": row["Id"],
            "number": row["RefundNumber"],
            "accountId": row["AccountId"],
            "amount": number_json(row["Amount"]),
            "paymentId": payment["Id"],
            "paymentNumber": payment["PaymentNumber"],
            "type": row["Type"],
            "methodType": row["MethodType"],
            "reasonCode": row["ReasonCode"],
            "refundDate": row["RefundDate"].isoformat(),
            "status": row["Status"],
            "comment": row.get("Comment"),
            "createdDate": finance_datetime(row["CreatedDate"], zone),
            "updatedDate": finance_datetime(row["UpdatedDate"], zone),
            "success": True,
        }


# Charge fields a mirrored memo item keeps from the item it mirrors.
_CARRIED = (
    "UnitPrice",
    "Quantity",
    "ChargeName",
    "ChargeNumber",
    "ChargeDate",
    "ServiceStartDate",
    "ServiceEndDate",
    "Description",
    "ProcessingType",
    "SourceItemType",
    "SubscriptionId",
    "SubscriptionNumber",
    "RatePlanChargeId",
    "ProductRatePlanChargeId",
    "ExcludeItemBillingFromRevenueAccounting",
)
# The accounting-code ids a debit memo item shares with the credit memo item it mirrors.
_CODE_IDS = (
    "RecognizedRevenueAccountingCodeId",
    "DeferredRevenueAccountingCodeId",
    "AccountReceivableAccountingCodeId",
)


def _revenue_code(code: Any) -> str:
    """The revenue accounting code an invoice item books to (its ``AccountingCode``, a name of
    the chart), which a mirrored credit memo item names by id."""
    if not isinstance(code, str) or code not in ACCOUNTING_CODES:
        raise ValueError(f"invoice item accounting code {code!r} is not in the chart")
    return code


def _shares(parts: list[tuple[Decimal, Decimal]], amount: Decimal) -> list[tuple[Decimal, Decimal]]:
    """Each ``(without tax, tax)`` scaled so that all add up to ``amount`` (the last part takes the
    rounding); unchanged when they already do."""
    total = sum((w + t for w, t in parts), ZERO)
    if total == amount or not parts:
        return parts
    if total == 0:
        return [(ZERO, ZERO) for _ in parts]
    scaled = [(money(w * amount / total), money(t * amount / total)) for w, t in parts]
    rest = amount - sum((w + t for w, t in scaled), ZERO)
    last_without_tax, last_tax = scaled[-1]
    scaled[-1] = (last_without_tax + rest, last_tax)
    return scaled


def _reason(body: dict[str, Any], default: str, resource: int) -> str:
    """``reasonCode``: the operation's default when absent or empty (the request models say so)."""
    return _text(body, "reasonCode", resource) or default


def _text(body: dict[str, Any], name: str, resource: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string.", resource=resource)
    return value


def _amount(entry: dict[str, Any], name: str, resource: int) -> Decimal:
    """A positive amount of at most two decimals."""
    value = entry.get(name)
    if value is None:
        raise missing(f"{name} is required.", resource=resource)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name} must be a number.", resource=resource)
    amount = Decimal(str(value))
    if amount <= 0 or money(amount) != amount:
        raise invalid(f"{name} must be a positive amount of at most two decimals.", resource=resource)
    return amount


def _label(kind: str) -> str:
    return {
        "Invoice": "invoice",
        "DebitMemo": "debit memo",
        "CreditMemo": "credit memo",
        "Payment": "payment",
    }[kind]


def _number(move: _Move) -> str:
    return str(move.target.get("InvoiceNumber") or move.target.get("MemoNumber") or move.target["Id"])
