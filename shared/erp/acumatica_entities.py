"""The neutral documents as Acumatica entities, and the natural-key lookups (contract version 4).

The neutral documents map to entities exactly as acumatica-api.md section 6 names them; the
names differ per entity (section 8 item 1), which is why the builders below are explicit:

=============  ==========================================================================
Customer       PUT by key ``CustomerID`` (an idempotent upsert, section 7).
AR documents   ``Invoice`` (AR301000) with ``Type`` Invoice / Debit Memo / Credit Memo,
               ``Customer`` (not CustomerID), no CurrencyID (it follows the customer),
               ``CustomerOrder`` = Zuora number, lines with ``Branch`` and
               ``TransactionDescription``.
Payments       ``Payment`` (AR302000) with ``Type`` Payment / Refund, ``CustomerID``,
               ``PaymentRef`` = Zuora number, ``DocumentsToApply``.
Journals       ``JournalTransaction`` (GL301000), Module GL, ``BranchID`` on header and
               lines, ``Description`` starting with the Zuora JE number, lines with
               ``TransactionDescription`` (a line's ``Description`` is the account's).
=============  ==========================================================================

Documents are created with ``Hold = false`` (pitfall 7). Natural-key lookups (section 7) use
``$filter`` with a narrow ``$select``. Everything here is pure: plain records in, plain records
out (:func:`~shared.erp.acumatica_wire.wrap` makes them wire bodies); the adapter
(:mod:`shared.erp.acumatica`) sends them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from shared.erp.acumatica_wire import odata_string, post_period
from shared.erp.base import Application, ArDocument, Customer, Document, ErpRef, Journal, Payment, RefKind

INVOICE_TYPES: dict[str, str] = {
    "invoice": "Invoice",
    "debit_memo": "Debit Memo",
    "credit_memo": "Credit Memo",
}
PAYMENT_TYPES: dict[str, str] = {"payment": "Payment", "refund": "Refund"}
# DocType labels of the documents a payment, refund or credit memo is applied to (section 6.4).
APPLICATION_DOC_TYPES: dict[str, str] = {**INVOICE_TYPES, "payment": "Payment"}
# ARDocStatus / BatchStatus labels of a released document (sections 6.2, 6.4, 6.5).
RELEASED_AR = frozenset({"Open", "Closed", "Voided", "Reserved"})
RELEASED_GL = frozenset({"Posted", "Unposted", "Released", "Partially Released", "Completed", "Voided"})

# Field lengths (section 6): longer text is cut rather than refused.
DOC_DESCRIPTION_LEN = 512
AR_LINE_DESCRIPTION_LEN = 256
GL_LINE_DESCRIPTION_LEN = 512
GL_LINE_REFERENCE_LEN = 15
CUSTOMER_NAME_LEN = 255
ACCOUNT_REF_LEN = 50

# Journal batches looked up by one read-back request: an OData `or` of this many Description
# prefixes keeps the query string under ~1,500 characters (IIS refuses more than 2,048 by default).
KEYS_PER_READ = 20
KEY_CHARS_PER_READ = 1_000


def customer_record(customer: Customer) -> dict[str, Any]:
    """The Customer upsert body (section 6.1); the Zuora account id goes in AccountRef."""
    return {
        "CustomerID": customer.customer_id,
        "CustomerName": customer.name[:CUSTOMER_NAME_LEN],
        "CustomerClass": customer.customer_class,
        "CurrencyID": customer.currency,
        "AccountRef": customer.zuora_account_id[:ACCOUNT_REF_LEN],
        "MainContact": {
            "Email": customer.email,
            "Address": {
                "AddressLine1": customer.address_line1,
                "AddressLine2": customer.address_line2,
                "City": customer.city,
                "State": customer.state,
                "PostalCode": customer.postal_code,
                "Country": customer.country,
            },
        },
    }


def _line_quantities(
    quantity: Decimal, unit_price: Decimal | None, amount: Decimal
) -> tuple[Decimal, Decimal]:
    # Acumatica recomputes the line amount from Qty x UnitPrice; a prorated Zuora charge is not
    # quantity x list price, so the quantity is kept only when the product is the amount.
    if unit_price is not None and quantity != 0 and quantity * unit_price == amount:
        return quantity, unit_price
    return Decimal(1), amount


def document_record(doc: ArDocument, applications: Sequence[tuple[str, str, Decimal]] = ()) -> dict[str, Any]:
    """The Invoice body for an AR invoice, debit or credit memo (section 6.2). ``applications``
    are (DocType, ReferenceNbr, amount) of the documents a credit memo applies to."""
    details = []
    for line in doc.lines:
        qty, price = _line_quantities(line.quantity, line.unit_price, line.amount)
        details.append(
            {
                "Branch": line.branch,
                "TransactionDescription": line.description[:AR_LINE_DESCRIPTION_LEN],
                "Qty": qty,
                "UnitPrice": price,
                "ExtendedPrice": line.amount,
                "Amount": line.amount,
                "Account": line.account,
                "Subaccount": line.subaccount,
            }
        )
    record: dict[str, Any] = {
        "Type": INVOICE_TYPES[doc.kind],
        "Customer": doc.customer_id,
        "Date": doc.date,
        "DueDate": doc.due_date,
        "PostPeriod": None if doc.post_period is None else post_period(doc.post_period),
        "CustomerOrder": doc.natural_key,
        "Description": doc.description[:DOC_DESCRIPTION_LEN],
        "Hold": False,
        "Details": details,
    }
    if applications:
        record["ApplicationsCreditMemo"] = [
            {"DocType": doc_type, "ReferenceNbr": nbr, "AmountPaid": amount}
            for doc_type, nbr, amount in applications
        ]
    return record


def payment_record(payment: Payment, applications: Sequence[tuple[str, str, Decimal]] = ()) -> dict[str, Any]:
    """The Payment body for a payment or refund (section 6.4)."""
    record: dict[str, Any] = {
        "Type": PAYMENT_TYPES[payment.kind],
        "CustomerID": payment.customer_id,
        "PaymentMethod": payment.payment_method,
        "CashAccount": payment.cash_account,
        "PaymentAmount": payment.amount,
        "ApplicationDate": payment.date,
        "PaymentRef": payment.natural_key,
        "Description": payment.description[:DOC_DESCRIPTION_LEN],
        "Hold": False,
    }
    if applications:
        record["DocumentsToApply"] = [
            {"DocType": doc_type, "ReferenceNbr": nbr, "AmountPaid": amount}
            for doc_type, nbr, amount in applications
        ]
    return record


def journal_description(journal: Journal) -> str:
    """The batch description: it starts with the JE number, the batch's only findable key."""
    text = journal.description
    if not (text == journal.natural_key or text.startswith(journal.natural_key + " ")):
        text = f"{journal.natural_key} {text}".rstrip()
    return text[:DOC_DESCRIPTION_LEN]


def journal_record(journal: Journal) -> dict[str, Any]:
    """The JournalTransaction body (section 6.5): one debit or one credit per line."""
    reference = journal.natural_key if len(journal.natural_key) <= GL_LINE_REFERENCE_LEN else None
    details = []
    for line in journal.lines:
        amount_field = "DebitAmount" if line.debit else "CreditAmount"
        details.append(
            {
                "BranchID": journal.branch,
                "Account": line.account,
                "Subaccount": line.subaccount,
                amount_field: line.debit or line.credit,
                "TransactionDescription": line.description[:GL_LINE_DESCRIPTION_LEN] or None,
                "ReferenceNbr": reference,
            }
        )
    return {
        "Module": "GL",
        "TransactionDate": journal.date,
        "PostPeriod": post_period(journal.post_period),
        "BranchID": journal.branch,
        "LedgerID": journal.ledger,
        "CurrencyID": journal.currency,
        "Description": journal_description(journal),
        "Hold": False,
        "Details": details,
    }


def entity_record(
    document: Document, applications: Sequence[tuple[str, str, Decimal]] = ()
) -> tuple[str, dict[str, Any]]:
    """(entity, body) of the PUT that writes ``document``; ``applications`` as for
    :func:`document_record` (a customer and a journal apply to nothing)."""
    if isinstance(document, Customer):
        return "Customer", customer_record(document)
    if isinstance(document, ArDocument):
        return "Invoice", document_record(document, applications)
    if isinstance(document, Payment):
        return "Payment", payment_record(document, applications)
    return "JournalTransaction", journal_record(document)


def applications_of(document: Document) -> tuple[Application, ...]:
    """What a credit memo, payment or refund applies to (nothing for the other documents)."""
    if isinstance(document, ArDocument):
        return document.applies_to
    if isinstance(document, Payment):
        return document.applications
    return ()


def find_query(kind: RefKind, natural_key: str, customer_id: str | None = None) -> tuple[str, str, list[str]]:
    """(entity, ``$filter``, ``$select``) that finds the documents carrying ``natural_key``
    (section 7). The customer narrows payments and documents when known."""
    key = odata_string(natural_key)
    if kind in INVOICE_TYPES:
        where = f"CustomerOrder eq {key} and Type eq {odata_string(INVOICE_TYPES[kind])}"
        if customer_id:
            where += f" and Customer eq {odata_string(customer_id)}"
        return "Invoice", where, ["Type", "ReferenceNbr", "Status", "CustomerOrder"]
    if kind in PAYMENT_TYPES:
        where = f"PaymentRef eq {key} and Type eq {odata_string(PAYMENT_TYPES[kind])}"
        if customer_id:
            where += f" and CustomerID eq {odata_string(customer_id)}"
        return "Payment", where, ["Type", "ReferenceNbr", "Status", "PaymentRef"]
    if kind == "journal":
        return (
            "JournalTransaction",
            f"startswith(Description,{key}) and Module eq 'GL'",
            ["Module", "BatchNbr", "Status", "Description"],
        )
    if kind == "customer":
        return "Customer", f"CustomerID eq {key}", ["CustomerID", "Status"]
    raise ValueError(f"unknown document kind {kind!r}")


def key_groups(keys: Iterable[str]) -> list[list[str]]:
    """Natural keys in groups of at most KEYS_PER_READ keys and KEY_CHARS_PER_READ characters,
    each group one read-back request."""
    groups: list[list[str]] = []
    chars = 0
    for key in dict.fromkeys(keys):
        if not groups or len(groups[-1]) >= KEYS_PER_READ or chars + len(key) > KEY_CHARS_PER_READ:
            groups.append([])
            chars = 0
        groups[-1].append(key)
        chars += len(key)
    return groups


def carries(kind: RefKind, row: Mapping[str, Any], natural_key: str) -> bool:
    """Whether a row found by the (case-insensitive, prefix) filter carries exactly the key."""
    if kind in INVOICE_TYPES:
        return row.get("CustomerOrder") == natural_key
    if kind in PAYMENT_TYPES:
        return row.get("PaymentRef") == natural_key
    if kind == "journal":
        text = str(row.get("Description") or "")
        return text == natural_key or text.startswith(natural_key + " ")
    return row.get("CustomerID") == natural_key


def ref_from_row(kind: RefKind, row: Mapping[str, Any]) -> ErpRef:
    status = row.get("Status")
    status = str(status) if status is not None else None
    if kind == "customer":
        return ErpRef(kind, str(row["CustomerID"]), True, erp_id=row.get("id"), status=status)
    if kind == "journal":
        key = f"{row.get('Module') or 'GL'}/{row['BatchNbr']}"
        return ErpRef(kind, key, status in RELEASED_GL, erp_id=row.get("id"), status=status)
    key = f"{row['Type']}/{row['ReferenceNbr']}"
    return ErpRef(kind, key, status in RELEASED_AR, erp_id=row.get("id"), status=status)
