"""Deterministic seeded data (the seed module)."""

from __future__ import annotations

from collections import Counter
from datetime import date
from decimal import Decimal

import pytest

from sandbox.zuora import Sizes
from sandbox.zuora.formats import tenant_zone
from sandbox.zuora.schema import ENDPOINTS
from sandbox.zuora.seed import period_name, seed_tables

ZONE = tenant_zone(-480)


def _seed(seed: int = 1, **sizes) -> dict:
    return seed_tables(seed, Sizes().with_changes(sizes), ZONE, {})


def test_same_seed_gives_identical_records():
    first, second = _seed(5), _seed(5)

    assert [r for r in first["Invoice"]] == [r for r in second["Invoice"]]
    assert [r["Id"] for r in first["Payment"]] != [r["Id"] for r in _seed(6)["Payment"]]


def test_sizes_are_honoured():
    tables = _seed(accounts=9, invoices=33, payments=21, refunds=4, credit_memos=6, debit_memos=3)

    counts = {
        name: len(tables[name])
        for name in ("Account", "Invoice", "Payment", "Refund", "CreditMemo", "DebitMemo", "AccountingPeriod")
    }
    assert counts == {
        "Account": 9,
        "Invoice": 33,
        "Payment": 21,
        "Refund": 4,
        "CreditMemo": 6,
        "DebitMemo": 3,
        "AccountingPeriod": 3,
    }


def test_most_accounts_carry_an_erp_account_id():
    accounts = list(_seed(accounts=200)["Account"])

    share = sum(1 for a in accounts if a["ERPAccountId__c"]) / len(accounts)
    assert 0.7 < share < 0.9


def test_tied_updated_dates_per_table():
    tables = _seed(invoices=400, payments=100, tie_count=150)

    assert Counter(r["UpdatedDate"] for r in tables["Invoice"]).most_common(1)[0][1] == 150
    assert Counter(r["UpdatedDate"] for r in tables["Payment"]).most_common(1)[0][1] == 50


def test_large_invoices_have_more_than_99_items():
    tables = _seed(invoices=20, large_invoices=2, large_invoice_items=120)

    per_invoice = Counter(i["InvoiceId"] for i in tables["InvoiceItem"])
    assert sorted(per_invoice.values())[-2:] == [120, 120]


def test_invoice_totals_match_their_items_and_applications():
    tables = _seed()

    for invoice in tables["Invoice"]:
        items = tables["InvoiceItem"].where("InvoiceId", invoice["Id"])
        paid = sum(
            (a["ApplyAmount"] for a in tables["PaymentApplication"].where("InvoiceId", invoice["Id"])),
            Decimal(0),
        )
        credited = sum(
            (a["Amount"] for a in tables["CreditMemoApplication"].where("InvoiceId", invoice["Id"])),
            Decimal(0),
        )
        assert invoice["AmountWithoutTax"] == sum(i["ChargeAmount"] for i in items)
        assert invoice["Amount"] == invoice["AmountWithoutTax"] + invoice["TaxAmount"]
        assert invoice["Balance"] == invoice["Amount"] - paid - credited >= 0


def test_transactions_fall_in_the_seed_month_and_several_currencies():
    tables = _seed(month="2025-03")

    assert all(i["InvoiceDate"].strftime("%Y-%m") == "2025-03" for i in tables["Invoice"])
    assert all(p["EffectiveDate"].strftime("%Y-%m") == "2025-03" for p in tables["Payment"])
    assert {i["Currency"] for i in tables["Invoice"]} == {"USD", "EUR", "GBP"}
    assert {p["Type"] for p in tables["Payment"]} == {"Electronic", "External"}


def test_payments_reference_methods_of_several_types():
    tables = _seed(payments=150)

    types = {tables["PaymentMethod"].rows[p["PaymentMethodId"]]["Type"] for p in tables["Payment"]}
    assert {"CreditCard", "ACH", "Check"} <= types


def test_updated_is_never_before_created():
    tables = _seed()

    for name in ("Account", "Invoice", "InvoiceItem", "Payment", "Refund", "CreditMemo", "DebitMemo"):
        assert all(r["UpdatedDate"] >= r["CreatedDate"] for r in tables[name]), name


@pytest.mark.parametrize(
    "style, name", [("long", "December 2016"), ("short", "Dec 2016"), ("apostrophe", "Dec'16")]
)
def test_period_name_styles(style: str, name: str):
    assert period_name(date(2016, 12, 1), style) == name


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError):
        Sizes().with_changes({"open_periods": 0})
    with pytest.raises(ValueError):
        Sizes().with_changes({"month": "December"})


def test_every_documented_filter_field_exists_on_its_object():
    for endpoint in ENDPOINTS.values():
        for name in endpoint.filterable | endpoint.filter_only:
            assert endpoint.obj.field_named(name) is not None, (endpoint.path, name)
