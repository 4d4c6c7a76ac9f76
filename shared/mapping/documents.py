"""Zuora records -> the ERP's neutral documents: customers, AR documents with their lines, payments
and refunds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Mapping as AbcMapping
from decimal import Decimal
from typing import Literal

from shared.erp.base import ZERO, Application, ArDocument, ArLine, Customer, DocumentKind, Payment
from shared.mapping.file import MEMO_ITEM_CODE_FIELDS, InconsistentRecord, Mapping, MappingError
from shared.mapping.records import (
    Row,
    _amount,
    _currency,
    _date,
    _document_customer,
    _optional_amount,
    _optional_date,
    _optional_text,
    _text,
    customer_id_of,
)
from shared.zuora.records import get_field

# -- Zuora -> neutral documents -------------------------------------------------------------------


def customer_from_account(row: Row, mapping: Mapping) -> Customer:
    """An Object Query account (``billTo`` expanded for contact details) as an ERP customer."""
    number = _text(row, "accountNumber", record=f"account {get_field(row, 'id')}")
    record = f"account {number}"
    contact = get_field(row, "billTo") or get_field(row, "billToContact")
    contact = contact if isinstance(contact, AbcMapping) else None
    return Customer(
        customer_id=customer_id_of(row),
        name=_text(row, "name", record=record),
        currency=_currency(row, mapping, record),
        zuora_account_id=_text(row, "id", record=record),
        zuora_account_number=number,
        email=_optional_text(contact, "workEmail") or _optional_text(contact, "personalEmail"),
        customer_class=mapping.erp.customer_class,
        address_line1=_optional_text(contact, "address1"),
        address_line2=_optional_text(contact, "address2"),
        city=_optional_text(contact, "city"),
        state=_optional_text(contact, "state"),
        postal_code=_optional_text(contact, "postalCode"),
        country=_optional_text(contact, "country"),
    )


def _line_description(item: Row) -> str:
    name = _optional_text(item, "chargeName") or _optional_text(item, "description") or "Zuora charge"
    start, end = _optional_text(item, "serviceStartDate"), _optional_text(item, "serviceEndDate")
    return f"{name} ({start[:10]} to {end[:10]})" if start and end else name


CodeNames = Callable[[str], str | None]
"""The name of a Zuora accounting code by its id (None: Zuora has no such code)."""


class UnknownAccountingCode(MappingError):
    """A memo item names an accounting-code id that Zuora does not list."""


def _invoice_item_code(item: Row, record: str) -> str:
    return _optional_text(item, "accountingCode") or ""


def _memo_item_code(mapping: Mapping, code_names: CodeNames | None) -> Callable[[Row, str], str]:
    """Reads a memo item's GL accounting code name: the id field ``[erp] memo_item_account``
    chooses, resolved through ``code_names``."""
    field_name = MEMO_ITEM_CODE_FIELDS[mapping.erp.memo_item_account]

    def code_of(item: Row, record: str) -> str:
        code_id = _optional_text(item, field_name)
        if code_id is None:
            raise InconsistentRecord(
                f"{record}: {field_name} is empty (the item has no such accounting code)"
            )
        if code_names is None:
            raise InconsistentRecord(f"{record}: cannot resolve accounting code id {code_id}")
        name = code_names(code_id)
        if name is None:
            raise UnknownAccountingCode(
                f"{record}: accounting code id {code_id} ({field_name}) is not among Zuora's accounting "
                "codes (GET /v1/accounting-codes)"
            )
        return name

    return code_of


def _ar_lines(
    items: Sequence[Row],
    mapping: Mapping,
    *,
    record: str,
    amount_field: str,
    net_field: str | None,
    code_of: Callable[[Row, str], str],
) -> list[ArLine]:
    """One line per item (tax-exclusive amount, account from the item's accounting code as
    ``code_of`` reads it) plus one tax line for the items' tax, on the account of
    ``[erp] tax_accounting_code``."""
    lines: list[ArLine] = []
    tax_total = ZERO
    for item in items:
        item_id = get_field(item, "id")
        tax = _optional_amount(item, "taxAmount", record=record) or ZERO
        net = _optional_amount(item, net_field, record=record) if net_field else None
        if net is None:
            amount = _amount(item, amount_field, record=record)
            # A tax-inclusive charge's amount includes its tax (zuora-api.md section 11.2).
            net = amount - tax if _optional_text(item, "taxMode") == "TaxInclusive" else amount
        code = code_of(item, f"{record} item {item_id}")
        target = mapping.account(code, record=f"{record} item {item_id}")
        quantity = _optional_amount(item, "quantity", record=record)
        lines.append(
            ArLine(
                description=_line_description(item),
                amount=net,
                account=target.account,
                subaccount=target.subaccount,
                branch=mapping.erp.branch,
                quantity=quantity if quantity is not None else Decimal(1),
                unit_price=_optional_amount(item, "unitPrice", record=record),
            )
        )
        tax_total += tax
    if tax_total:
        target = mapping.account(mapping.erp.tax_accounting_code, record=f"{record} tax")
        lines.append(
            ArLine(
                description="Tax",
                amount=tax_total,
                account=target.account,
                subaccount=target.subaccount,
                branch=mapping.erp.branch,
            )
        )
    return lines


# Per document kind: number, date, items, item amount, item net amount, document total, label
# (zuora-api.md sections 11.1-11.6: invoice items have chargeAmount, memo items amount and
# amountWithoutTax; memos total in totalAmount).
_DOCUMENT_FIELDS: dict[str, tuple[str, str, str, str, str | None, str, str]] = {
    "invoice": ("invoiceNumber", "invoiceDate", "invoiceItems", "chargeAmount", None, "amount", "invoice"),
    "debit_memo": (
        "memoNumber", "memoDate", "debitMemoItems", "amount", "amountWithoutTax", "totalAmount",
        "debit memo",
    ),
    "credit_memo": (
        "memoNumber", "memoDate", "creditMemoItems", "amount", "amountWithoutTax", "totalAmount",
        "credit memo",
    ),
}  # fmt: skip


def _ar_document(
    kind: DocumentKind,
    row: Row,
    items: Sequence[Row] | None,
    mapping: Mapping,
    *,
    customer_id: str | None,
    applies_to: Sequence[Application] = (),
    code_names: CodeNames | None = None,
) -> ArDocument:
    fields = _DOCUMENT_FIELDS[kind]
    number_field, date_field, items_field, amount_field, net_field, total_field, label = fields
    number = _text(row, number_field, record=f"{label} {get_field(row, 'id')}")
    record = f"{label} {number}"
    if items is None:
        expanded = get_field(row, items_field)
        items = expanded if isinstance(expanded, list) else []
    if not items:
        raise InconsistentRecord(f"{record}: no items")
    code_of = _invoice_item_code if kind == "invoice" else _memo_item_code(mapping, code_names)
    lines = _ar_lines(
        items, mapping, record=record, amount_field=amount_field, net_field=net_field, code_of=code_of
    )
    doc = ArDocument(
        kind=kind,
        natural_key=number,
        customer_id=_document_customer(row, customer_id, record),
        date=_date(row, date_field, record=record),
        due_date=None if kind == "credit_memo" else _optional_date(row, "dueDate", record=record),
        currency=_currency(row, mapping, record),
        description=f"Zuora {record}",
        lines=tuple(lines),
        applies_to=tuple(applies_to),
    )
    # Expanded item lists are cut at the page size (section 9.3): a short list must not post.
    total = _optional_amount(row, total_field, record=record)
    if total is not None and doc.total != total:
        raise InconsistentRecord(f"{record}: items add up to {doc.total}, the document total is {total}")
    return doc


def document_from_invoice(
    row: Row, items: Sequence[Row] | None, mapping: Mapping, *, customer_id: str | None = None
) -> ArDocument:
    """A posted invoice and its items (``items`` None: the row's expanded ``invoiceItems``)."""
    return _ar_document("invoice", row, items, mapping, customer_id=customer_id)


def document_from_debit_memo(
    row: Row,
    items: Sequence[Row] | None,
    mapping: Mapping,
    *,
    customer_id: str | None = None,
    code_names: CodeNames | None = None,
) -> ArDocument:
    """A posted debit memo; its items' accounting-code ids are named through ``code_names``."""
    return _ar_document("debit_memo", row, items, mapping, customer_id=customer_id, code_names=code_names)


def document_from_credit_memo(
    row: Row,
    items: Sequence[Row] | None,
    mapping: Mapping,
    *,
    customer_id: str | None = None,
    applies_to: Sequence[Application] = (),
    code_names: CodeNames | None = None,
) -> ArDocument:
    """A credit memo; ``applies_to`` are its applications to invoices/debit memos (by number); its
    items' accounting-code ids are named through ``code_names``."""
    return _ar_document(
        "credit_memo",
        row,
        items,
        mapping,
        customer_id=customer_id,
        applies_to=applies_to,
        code_names=code_names,
    )


def _method_type(row: Row, given: str | None) -> str | None:
    if given:
        return given
    method = get_field(row, "paymentMethod")
    if isinstance(method, AbcMapping) and _optional_text(method, "type"):
        return _optional_text(method, "type")
    return _optional_text(row, "paymentMethodType") or _optional_text(row, "methodType")


def _payment(
    kind: Literal["payment", "refund"],
    row: Row,
    mapping: Mapping,
    applications: Sequence[Application],
    *,
    customer_id: str | None,
    payment_method_type: str | None,
) -> Payment:
    number_field, date_field = (
        ("paymentNumber", "effectiveDate") if kind == "payment" else ("refundNumber", "refundDate")
    )
    number = _text(row, number_field, record=f"{kind} {get_field(row, 'id')}")
    record = f"{kind} {number}"
    method_type = _method_type(row, payment_method_type)
    if method_type is None:
        raise InconsistentRecord(f"{record}: payment method type unknown: expand paymentmethod")
    target = mapping.payment_method(method_type, record=record)
    return Payment(
        kind=kind,
        natural_key=number,
        customer_id=_document_customer(row, customer_id, record),
        date=_date(row, date_field, record=record),
        amount=_amount(row, "amount", record=record),
        currency=_currency(row, mapping, record),
        payment_method=target.method,
        cash_account=target.cash_account,
        description=f"Zuora {record}",
        applications=tuple(applications),
    )


def payment_from_payment(
    row: Row,
    mapping: Mapping,
    applications: Sequence[Application] = (),
    *,
    customer_id: str | None = None,
    payment_method_type: str | None = None,
) -> Payment:
    """A processed payment. The method type comes from ``payment_method_type``, else the expanded
    ``paymentMethod.type``; ``applications`` name the invoices/debit memos it pays."""
    return _payment(
        "payment",
        row,
        mapping,
        applications,
        customer_id=customer_id,
        payment_method_type=payment_method_type,
    )


def payment_from_refund(
    row: Row,
    mapping: Mapping,
    applications: Sequence[Application] = (),
    *,
    customer_id: str | None = None,
    payment_method_type: str | None = None,
) -> Payment:
    """A processed refund (method type from ``methodType``); ``applications`` name the payments or
    credit memos it refunds."""
    return _payment(
        "refund", row, mapping, applications, customer_id=customer_id, payment_method_type=payment_method_type
    )
