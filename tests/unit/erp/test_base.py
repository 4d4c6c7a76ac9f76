"""The neutral documents refuse what cannot be posted: floats, unbalanced journals, bad kinds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from shared.erp.base import (
    Application,
    ArDocument,
    ArLine,
    Journal,
    JournalLine,
    Payment,
    Totals,
    UnbalancedJournal,
    period_of,
)

D = Decimal


def _journal(*lines: JournalLine) -> Journal:
    return Journal(
        natural_key="JE-00000001",
        date=dt.date(2025, 6, 30),
        post_period="2025-06",
        currency="USD",
        ledger="ACTUAL",
        branch="HQ",
        description="JE-00000001",
        lines=lines,
    )


def test_journal_balanced_to_the_cent_is_accepted():
    journal = _journal(
        JournalLine(account="11000", debit=D("0.10")),
        JournalLine(account="11000", debit=D("0.20")),
        JournalLine(account="40000", credit=D("0.30")),
    )
    assert (journal.total_debit, journal.total_credit) == (D("0.30"), D("0.30"))
    assert journal.period == "2025-06"


def test_journal_out_of_balance_by_one_cent_is_refused():
    with pytest.raises(UnbalancedJournal) as info:
        _journal(
            JournalLine(account="11000", debit=D("100.00")), JournalLine(account="40000", credit=D("99.99"))
        )
    assert str(info.value) == "journal JE-00000001 is out of balance: debits 100.00 USD != credits 99.99 USD"
    assert (info.value.debit, info.value.credit) == (D("100.00"), D("99.99"))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"account": "1", "debit": 1.0}, TypeError),
        ({"account": "1", "debit": D(1), "credit": D(1)}, ValueError),
        ({"account": "1", "debit": D(-1)}, ValueError),
        ({"account": "", "debit": D(1)}, ValueError),
        ({"account": "1", "debit": D("Infinity")}, ValueError),
    ],
)
def test_journal_line_refuses_bad_amounts(kwargs, error):
    with pytest.raises(error):
        JournalLine(**kwargs)


def test_journal_without_lines_is_refused():
    with pytest.raises(ValueError):
        _journal()


def _doc(**overrides) -> ArDocument:
    values: dict[str, Any] = {
        "kind": "invoice",
        "natural_key": "INV1",
        "customer_id": "C1",
        "date": dt.date(2025, 6, 1),
        "currency": "USD",
        "description": "d",
        "lines": [ArLine(description="x", amount=D("1.50"), account="40000")],
    }
    values.update(overrides)
    return ArDocument(**values)


def test_document_lines_become_a_tuple_and_total_is_exact():
    doc = _doc(
        lines=[
            ArLine(description="a", amount=D("0.10"), account="4"),
            ArLine(description="b", amount=D("0.20"), account="4"),
        ]
    )
    assert isinstance(doc.lines, tuple)
    assert doc.total == D("0.30")
    assert doc.period == "2025-06"
    assert _doc(post_period=dt.date(2025, 7, 1)).period == "2025-07"


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "receipt"},
        {"lines": []},
        {"date": "2025-06-01"},
        {"post_period": "202506"},
        {"applies_to": [Application(natural_key="INV0", amount=D(1))]},
    ],
)
def test_document_refuses_invalid_values(overrides):
    with pytest.raises((ValueError, TypeError)):
        _doc(**overrides)


def test_payment_cannot_apply_more_than_its_amount():
    with pytest.raises(ValueError):
        Payment(
            kind="payment",
            natural_key="P-1",
            customer_id="C1",
            date=dt.date(2025, 6, 1),
            amount=D("10.00"),
            currency="USD",
            payment_method="CC",
            cash_account="10200",
            description="d",
            applications=(Application(natural_key="INV1", amount=D("10.01")),),
        )


def test_dataclasses_are_keyword_only_and_frozen():
    line = ArLine(description="x", amount=D(1), account="4")
    with pytest.raises(TypeError):
        ArLine("x", D(1), "4")  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        line.amount = D(2)  # type: ignore[misc]


def test_period_of():
    assert period_of(dt.date(2025, 1, 31)) == "2025-01"
    assert period_of("2025-12") == "2025-12"
    with pytest.raises(ValueError):
        period_of("2025-00")


def test_totals_add():
    assert Totals(D(1), D(2)) + Totals(D("0.5"), D(0)) == Totals(D("1.5"), D(2))


@pytest.mark.parametrize(
    ("kind", "target", "accepted"),
    [
        ("payment", "invoice", True),
        ("payment", "debit_memo", True),
        ("payment", "payment", False),
        ("refund", "payment", True),
        ("refund", "credit_memo", True),
        ("refund", "invoice", False),
    ],
)
def test_payment_applications_target_the_right_kinds(kind, target, accepted):
    def build() -> Payment:
        return Payment(
            kind=kind,
            natural_key="X-1",
            customer_id="C1",
            date=dt.date(2025, 6, 1),
            amount=D("10.00"),
            currency="USD",
            payment_method="CC",
            cash_account="10200",
            description="d",
            applications=(Application(natural_key="DOC1", amount=D("1.00"), kind=target),),
        )

    if accepted:
        assert build().applications[0].kind == target
    else:
        with pytest.raises(ValueError):
            build()
