"""Zuora Object Query rows and summary journal entries -> neutral ERP documents."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from shared.erp.base import Application, ArLine, Customer, Journal, JournalLine
from shared.mapping import (
    InconsistentRecord,
    UnknownAccountingCode,
    Unmapped,
    customer_from_account,
    document_from_credit_memo,
    document_from_debit_memo,
    document_from_invoice,
    journal_from_summary_entry,
    load_mapping,
    payment_from_payment,
    payment_from_refund,
)

D = Decimal
ROOT = Path(__file__).resolve().parents[3]


# Memo items carry accounting-code ids (zuora-sdk ExpandedCreditMemoItem/ExpandedDebitMemoItem),
# named through GET /v1/accounting-codes.
CODE_NAMES = {
    "id-subscriptions": "Subscription Revenue",
    "id-late-fees": "Late Fee Revenue",
    "id-deferred": "Deferred Revenue",
    "id-receivable": "Accounts Receivable",
}
MEMO_ITEM_CODES = {
    "recognizedRevenueAccountingCodeId": "id-subscriptions",
    "deferredRevenueAccountingCodeId": "id-deferred",
    "accountReceivableAccountingCodeId": "id-receivable",
}


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(ROOT / "mapping.example.toml")


ACCOUNT = {
    "id": "8ad0",
    "accountNumber": "A00000001",
    "name": "Acme Corp",
    "currency": "USD",
    "billTo": {
        "workEmail": "ap@acme.com",
        "address1": "1 Main St",
        "city": "Austin",
        "state": "TX",
        "postalCode": "78701",
        "country": "United States",
    },
}


def test_customer_id_is_the_account_number_without_erp_id(mapping):
    assert customer_from_account(ACCOUNT, mapping) == Customer(
        customer_id="A00000001",
        name="Acme Corp",
        currency="USD",
        zuora_account_id="8ad0",
        zuora_account_number="A00000001",
        email="ap@acme.com",
        customer_class="DEFAULT",
        address_line1="1 Main St",
        city="Austin",
        state="TX",
        postal_code="78701",
        country="United States",
    )


@pytest.mark.parametrize("key", ["ERPAccountId__c", "eRPAccountId__c", "erpaccountid__c"])
def test_customer_id_is_the_erp_account_id_in_any_case(mapping, key):
    assert customer_from_account({**ACCOUNT, key: "C-000123"}, mapping).customer_id == "C-000123"


def test_customer_blank_erp_account_id_falls_back_to_the_number(mapping):
    assert customer_from_account({**ACCOUNT, "eRPAccountId__c": "  "}, mapping).customer_id == "A00000001"


def test_customer_unmapped_currency_names_it(mapping):
    with pytest.raises(Unmapped) as info:
        customer_from_account({**ACCOUNT, "currency": "JPY"}, mapping)
    assert (info.value.kind, info.value.key) == ("currency", "JPY")
    assert (
        str(info.value)
        == "account A00000001: unmapped currency 'JPY': add it to [currencies] in the mapping file"
    )


INVOICE = {
    "id": "inv-id",
    "invoiceNumber": "INV00000255",
    "invoiceDate": "2025-06-01",
    "dueDate": "2025-07-01",
    "amount": 1115.04,
    "currency": "USD",
    "status": "Posted",
    "account": {"accountNumber": "A00000001", "eRPAccountId__c": "C-000123", "currency": "USD"},
}
ITEMS = [
    {
        "id": "ii1",
        "chargeName": "Platform Subscription",
        "chargeAmount": 499,
        "taxAmount": "41.17",
        "quantity": 1,
        "unitPrice": 499,
        "accountingCode": "Subscription Revenue",
        "serviceStartDate": "2025-06-01",
        "serviceEndDate": "2025-06-30",
    },
    {
        "id": "ii2",
        "chargeName": "User Seats",
        "chargeAmount": "535.00",
        "taxAmount": 39.87,
        "quantity": 22,
        "unitPrice": 25,
        "accountingCode": "Subscription Revenue",
    },
]


def test_invoice_lines_tax_line_and_customer(mapping):
    doc = document_from_invoice(INVOICE, ITEMS, mapping)
    assert (doc.kind, doc.natural_key, doc.customer_id, doc.currency) == (
        "invoice",
        "INV00000255",
        "C-000123",
        "USD",
    )
    assert (doc.date, doc.due_date, doc.post_period) == (dt.date(2025, 6, 1), dt.date(2025, 7, 1), None)
    assert doc.description == "Zuora invoice INV00000255"
    assert doc.lines == (
        ArLine(
            description="Platform Subscription (2025-06-01 to 2025-06-30)",
            amount=D(499),
            account="40000",
            subaccount="000000",
            branch="HQ",
            quantity=D(1),
            unit_price=D(499),
        ),
        ArLine(
            description="User Seats",
            amount=D("535.00"),
            account="40000",
            subaccount="000000",
            branch="HQ",
            quantity=D(22),
            unit_price=D(25),
        ),
        ArLine(description="Tax", amount=D("81.04"), account="24000", subaccount="000000", branch="HQ"),
    )
    assert doc.total == D("1115.04")


def test_invoice_items_from_the_expansion(mapping):
    assert document_from_invoice({**INVOICE, "invoiceItems": ITEMS}, None, mapping).total == D("1115.04")


def test_invoice_tax_inclusive_item_is_split(mapping):
    item = {
        "id": "ii1",
        "chargeName": "Seat",
        "chargeAmount": "108.25",
        "taxAmount": "8.25",
        "taxMode": "TaxInclusive",
        "accountingCode": "Sales Revenue",
    }
    doc = document_from_invoice({**INVOICE, "amount": "108.25"}, [item], mapping)
    assert [(line.description, line.amount) for line in doc.lines] == [
        ("Seat", D("100.00")),
        ("Tax", D("8.25")),
    ]


def test_invoice_whose_items_do_not_add_up_is_refused(mapping):
    with pytest.raises(InconsistentRecord) as info:
        document_from_invoice(INVOICE, ITEMS[:1], mapping)
    assert str(info.value) == "invoice INV00000255: items add up to 540.17, the document total is 1115.04"


def test_invoice_unmapped_accounting_code_names_the_key(mapping):
    items = [{**ITEMS[0], "accountingCode": "Marketing Revenue"}]
    with pytest.raises(Unmapped) as info:
        document_from_invoice(INVOICE, items, mapping)
    assert (info.value.kind, info.value.key) == ("account", "Marketing Revenue")
    assert "invoice INV00000255 item ii1: unmapped account 'Marketing Revenue'" in str(info.value)


def test_invoice_blank_accounting_code_is_unmapped(mapping):
    with pytest.raises(Unmapped) as info:
        document_from_invoice(INVOICE, [{**ITEMS[0], "accountingCode": None}], mapping)
    assert info.value.key == ""


def test_invoice_without_customer_needs_one(mapping):
    row = {k: v for k, v in INVOICE.items() if k != "account"}
    with pytest.raises(InconsistentRecord):
        document_from_invoice(row, ITEMS, mapping)
    assert document_from_invoice(row, ITEMS, mapping, customer_id="A1").customer_id == "A1"


def test_invoice_without_items_is_refused(mapping):
    with pytest.raises(InconsistentRecord):
        document_from_invoice(INVOICE, [], mapping)


def test_credit_memo_uses_amount_without_tax_and_applications(mapping):
    memo = {
        "id": "cm",
        "memoNumber": "CM00000007",
        "memoDate": "2025-06-10",
        "totalAmount": 54.13,
        "currency": "USD",
        "account": {"accountNumber": "A00000001"},
    }
    items = [
        {
            "id": "cmi1",
            "chargeName": "Refund seats",
            "amount": 50,
            "amountWithoutTax": 50,
            "taxAmount": 4.13,
            **MEMO_ITEM_CODES,
        }
    ]
    applied = (Application(natural_key="INV00000255", amount=D("54.13")),)
    doc = document_from_credit_memo(memo, items, mapping, applies_to=applied, code_names=CODE_NAMES.get)
    assert (doc.kind, doc.natural_key, doc.customer_id, doc.due_date) == (
        "credit_memo",
        "CM00000007",
        "A00000001",
        None,
    )
    assert [line.amount for line in doc.lines] == [D(50), D("4.13")]
    assert (
        doc.lines[0].account == mapping.account("Subscription Revenue").account
    )  # the recognized-revenue code
    assert doc.applies_to == applied


def test_debit_memo_items_from_expansion(mapping):
    memo = {
        "id": "dm",
        "memoNumber": "DM00000003",
        "memoDate": "2025-06-12",
        "dueDate": "2025-07-12",
        "totalAmount": "35.00",
        "currency": "USD",
        "account": {"accountNumber": "A00000001"},
        "debitMemoItems": [
            {
                "id": "dmi",
                "chargeName": "Late Payment Fee",
                "amount": "35.00",
                **MEMO_ITEM_CODES,
                "recognizedRevenueAccountingCodeId": "id-late-fees",
            }
        ],
    }
    doc = document_from_debit_memo(memo, None, mapping, code_names=CODE_NAMES.get)
    assert (doc.kind, doc.due_date, doc.total) == ("debit_memo", dt.date(2025, 7, 12), D("35.00"))
    assert doc.lines[0].account == mapping.account("Late Fee Revenue").account


DEBIT_MEMO = {
    "id": "dm",
    "memoNumber": "DM00000004",
    "memoDate": "2025-06-12",
    "totalAmount": "35.00",
    "currency": "USD",
    "account": {"accountNumber": "A00000001"},
}


def _debit_memo_item(**codes):
    return {"id": "dmi", "chargeName": "Late Payment Fee", "amount": "35.00", **codes}


def test_memo_item_accounting_code_id_unknown_to_zuora_is_named_in_the_error(mapping):
    item = _debit_memo_item(**{**MEMO_ITEM_CODES, "recognizedRevenueAccountingCodeId": "id-gone"})
    with pytest.raises(UnknownAccountingCode, match=r"DM00000004 item dmi: accounting code id id-gone"):
        document_from_debit_memo(DEBIT_MEMO, [item], mapping, code_names=CODE_NAMES.get)


def test_memo_item_without_the_chosen_code_id_is_inconsistent(mapping):
    item = _debit_memo_item(deferredRevenueAccountingCodeId="id-deferred")
    with pytest.raises(InconsistentRecord, match="recognizedRevenueAccountingCodeId is empty"):
        document_from_debit_memo(DEBIT_MEMO, [item], mapping, code_names=CODE_NAMES.get)


def test_memo_item_account_can_be_the_deferred_revenue_code(mapping):
    deferred = mapping.model_copy(
        update={"erp": mapping.erp.model_copy(update={"memo_item_account": "deferred_revenue"})}
    )
    item = _debit_memo_item(**MEMO_ITEM_CODES)
    doc = document_from_debit_memo(DEBIT_MEMO, [item], deferred, code_names=CODE_NAMES.get)
    assert doc.lines[0].account == mapping.account("Deferred Revenue").account


def test_memo_item_accountingcode_field_is_not_read(mapping):
    # Zuora sends no accountingCode on memo items: one there must not stand in for the code id.
    item = {
        "id": "dmi",
        "chargeName": "Late Payment Fee",
        "amount": "35.00",
        "accountingCode": "Late Fee Revenue",
    }
    with pytest.raises(InconsistentRecord, match="recognizedRevenueAccountingCodeId is empty"):
        document_from_debit_memo(DEBIT_MEMO, [item], mapping, code_names=CODE_NAMES.get)


PAYMENT = {
    "id": "p1",
    "paymentNumber": "P-00000042",
    "effectiveDate": "2025-06-05",
    "amount": "99.00",
    "currency": "USD",
    "type": "Electronic",
    "paymentMethod": {"type": "CreditCard"},
    "account": {"accountNumber": "A00000001"},
}


def test_payment_maps_method_to_erp_method_and_cash_account(mapping):
    applications = (Application(natural_key="INV00000255", amount=D("99.00")),)
    payment = payment_from_payment(PAYMENT, mapping, applications)
    assert (payment.kind, payment.natural_key, payment.customer_id, payment.date, payment.amount) == (
        "payment",
        "P-00000042",
        "A00000001",
        dt.date(2025, 6, 5),
        D("99.00"),
    )
    assert (payment.payment_method, payment.cash_account, payment.currency) == ("CC", "10200", "USD")
    assert payment.applications == applications
    assert payment.description == "Zuora payment P-00000042"


def test_payment_unmapped_method_names_it(mapping):
    with pytest.raises(Unmapped) as info:
        payment_from_payment({**PAYMENT, "paymentMethod": {"type": "Bitcoin"}}, mapping)
    assert (info.value.kind, info.value.key) == ("payment_method", "Bitcoin")
    assert "unmapped payment method 'Bitcoin': add it to [payment_methods]" in str(info.value)


def test_payment_method_type_can_be_given(mapping):
    row = {k: v for k, v in PAYMENT.items() if k != "paymentMethod"}
    with pytest.raises(InconsistentRecord):
        payment_from_payment(row, mapping)
    assert payment_from_payment(row, mapping, payment_method_type="Check").payment_method == "CHECK"


def test_refund_uses_refund_number_date_and_method_type(mapping):
    refund = {
        "id": "r1",
        "refundNumber": "R-00000009",
        "refundDate": "2025-06-20",
        "amount": 12.5,
        "currency": "EUR",
        "methodType": "WireTransfer",
    }
    result = payment_from_refund(refund, mapping, customer_id="A00000001")
    assert (result.kind, result.natural_key, result.amount, result.payment_method, result.currency) == (
        "refund",
        "R-00000009",
        D("12.5"),
        "WIRE",
        "EUR",
    )


ENTRY = {
    "number": "JE-00000012",
    "status": "Created",
    "journalEntryDate": "2024-12-31",
    "accountingPeriodName": "Dec'24",
    "currency": "USD",
    "transactionType": "Invoice Item",
    "journalEntryItems": [
        {
            "accountingCodeName": "Accounts Receivable",
            "accountingCodeType": "AccountsReceivable",
            "type": "Debit",
            "amount": 100.1,
        },
        {"accountingCodeName": "Sales Revenue", "type": "Credit", "amount": "92.47"},
        {"accountingCodeName": "Sales Tax Payable", "type": "Credit", "amount": 7.63},
    ],
}


def test_journal_from_summary_entry(mapping):
    assert journal_from_summary_entry(ENTRY, mapping) == Journal(
        natural_key="JE-00000012",
        date=dt.date(2024, 12, 31),
        post_period="2024-12",
        currency="USD",
        ledger="ACTUAL",
        branch="HQ",
        description="JE-00000012 Invoice Item Dec'24",
        lines=(
            JournalLine(
                account="11000", subaccount="000000", debit=D("100.1"), description="Accounts Receivable"
            ),
            JournalLine(account="40000", subaccount="000000", credit=D("92.47"), description="Sales Revenue"),
            JournalLine(
                account="24000", subaccount="000000", credit=D("7.63"), description="Sales Tax Payable"
            ),
        ),
    )


def test_journal_negative_amount_moves_to_the_other_side(mapping):
    entry = {
        **ENTRY,
        "journalEntryItems": [
            {"accountingCodeName": "Accounts Receivable", "type": "Debit", "amount": -5},
            {"accountingCodeName": "Sales Revenue", "type": "Credit", "amount": -5},
        ],
    }
    lines = journal_from_summary_entry(entry, mapping).lines
    assert [(line.debit, line.credit) for line in lines] == [(D(0), D(5)), (D(5), D(0))]


def test_journal_unbalanced_entry_is_refused(mapping):
    entry = {**ENTRY, "journalEntryItems": ENTRY["journalEntryItems"][:2]}
    with pytest.raises(InconsistentRecord) as info:
        journal_from_summary_entry(entry, mapping)
    assert "out of balance: debits 100.1 USD != credits 92.47 USD" in str(info.value)


def test_journal_unmapped_accounting_code_names_the_key(mapping):
    entry = {
        **ENTRY,
        "journalEntryItems": [
            *ENTRY["journalEntryItems"],
            {"accountingCodeName": "Bad Debt", "type": "Debit", "amount": 0},
        ],
    }
    with pytest.raises(Unmapped) as info:
        journal_from_summary_entry(entry, mapping)
    assert (info.value.kind, info.value.key) == ("account", "Bad Debt")


def test_journal_unmapped_currency_names_it(mapping):
    with pytest.raises(Unmapped) as info:
        journal_from_summary_entry({**ENTRY, "currency": "CAD"}, mapping)
    assert (info.value.kind, info.value.key) == ("currency", "CAD")


def test_journal_cancelled_entry_is_refused(mapping):
    with pytest.raises(InconsistentRecord):
        journal_from_summary_entry({**ENTRY, "status": "Cancelled"}, mapping)
