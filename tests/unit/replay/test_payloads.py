"""What was sent before, read back from ``posted_payload``; the exact JSON the dry run prints."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal

import pytest

from shared import replay
from shared.close.journals import journal_payload
from shared.erp.acumatica_wire import dumps, wrap
from shared.erp.base import Application, ArDocument, ArLine, Customer, Journal, JournalLine, Payment

CUSTOMER = Customer(
    customer_id="C0001",
    name="Acme",
    currency="USD",
    zuora_account_id="8ad0acct",
    zuora_account_number="A00000001",
    email="ap@acme.example",
    country="US",
)
INVOICE = ArDocument(
    kind="credit_memo",
    natural_key="CM00000001",
    customer_id="C0001",
    date=dt.date(2024, 12, 3),
    currency="USD",
    description="Zuora credit memo CM00000001",
    lines=(
        ArLine(
            description="Refund", amount=Decimal("10.50"), account="40000", subaccount="000000", branch="HQ"
        ),
        ArLine(
            description="Seats",
            amount=Decimal("30.00"),
            account="40000",
            quantity=Decimal("3"),
            unit_price=Decimal("10.00"),
        ),
    ),
    due_date=dt.date(2025, 1, 2),
    post_period="2024-12",
    applies_to=(Application(natural_key="INV00000001", amount=Decimal("40.50"), kind="invoice"),),
)
PAYMENT = Payment(
    kind="refund",
    natural_key="R00000001",
    customer_id="C0001",
    date=dt.date(2024, 12, 9),
    amount=Decimal("12.34"),
    currency="USD",
    payment_method="CARD",
    cash_account="10400",
    description="Zuora refund R00000001",
    applications=(Application(natural_key="P00000001", amount=Decimal("12.34"), kind="payment"),),
)
JOURNAL = Journal(
    natural_key="JE-00000012",
    date=dt.date(2024, 12, 31),
    post_period="2024-12",
    currency="USD",
    ledger="ACTUAL",
    branch="HQ",
    description="JE-00000012 Invoice December 2024",
    lines=(
        JournalLine(account="11000", debit=Decimal("100.10")),
        JournalLine(account="40000", subaccount="000000", credit=Decimal("100.10"), description="Revenue"),
    ),
)


@pytest.mark.parametrize(
    ("method", "document"),
    [("upsert_customer", CUSTOMER), ("create_document", INVOICE), ("create_payment", PAYMENT)],
    ids=["customer", "credit_memo", "refund"],
)
def test_item_level_payload_reads_back_as_the_document_that_was_sent(method, document):
    stored = replay.normalise({"method": method, "document": dataclasses.asdict(document), "not_applied": []})

    assert replay.document_from_payload(stored) == document


def test_journal_payload_reads_back_as_the_journal_that_was_sent():
    stored = replay.normalise(journal_payload(JOURNAL))

    assert replay.document_from_payload(stored) == JOURNAL


def test_payload_of_an_unknown_shape_is_refused():
    with pytest.raises(ValueError, match="unknown posting method 'delete_everything'"):
        replay.document_from_payload({"method": "delete_everything", "document": {}})
    with pytest.raises(KeyError):
        replay.document_from_payload({"natural_key": "JE-1"})


def test_pretty_json_is_the_wire_json_with_exact_amounts():
    body = wrap(
        {"Amount": Decimal("1248.20"), "Qty": Decimal("3"), "Hold": False, "Details": [{"Account": "4"}]}
    )

    text = replay.pretty(body)

    assert json.loads(text, parse_float=Decimal) == json.loads(dumps(body), parse_float=Decimal)
    assert '"Amount": {"value": 1248.20}' in text
    assert text.splitlines()[0] == "{"


def test_pretty_keeps_key_order_and_writes_dates_and_none():
    assert replay.pretty({"b": dt.date(2024, 1, 2), "a": None, "c": []}) == (
        '{\n  "b": "2024-01-02",\n  "a": null,\n  "c": []\n}'
    )
