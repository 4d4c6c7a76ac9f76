"""Field lookup, amounts and datetimes as Zuora returns them (sections 9.3, 8.2, 13.8)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from shared.zuora.records import decimal_field, get_field, parse_date, parse_datetime, to_decimal


def test_get_field_finds_lowered_first_letter():
    row = {"id": "1", "eRPAccountId__c": "C-42", "sKU": "S1", "uOM": "Each"}
    assert get_field(row, "ERPAccountId__c") == "C-42"
    assert get_field(row, "SKU") == "S1"
    assert get_field(row, "uom") == "Each"
    assert get_field(row, "missing") is None
    assert get_field(row, "missing", "d") == "d"


def test_get_field_prefers_exact_key_and_refuses_ambiguity():
    assert get_field({"Name": "a", "name": "b"}, "name") == "b"
    with pytest.raises(KeyError):
        get_field({"Name": "a", "NAME": "b"}, "name")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (7300, Decimal("7300")),
        ("400.90", Decimal("400.90")),
        (Decimal("0.1"), Decimal("0.1")),
        (0.1, Decimal("0.1")),
    ],
)
def test_to_decimal_is_exact(value, expected):
    assert to_decimal(value) == expected
    assert str(to_decimal(value)) == str(expected)


@pytest.mark.parametrize("value", [True, None, "abc", "NaN", "Infinity", [1]])
def test_to_decimal_refuses_non_amounts(value):
    with pytest.raises(ValueError):
        to_decimal(value)


def test_decimal_field_case_insensitive_and_null():
    assert decimal_field({"chargeAmount": "12.50"}, "ChargeAmount") == Decimal("12.50")
    assert decimal_field({"chargeAmount": None}, "chargeAmount") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-21T01:42:47-07:00", datetime(2025, 3, 21, 1, 42, 47, tzinfo=timezone(timedelta(hours=-7)))),
        (
            "2016-10-20T05:46:14.000+02:00",
            datetime(2016, 10, 20, 5, 46, 14, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2014-11-15 22:05:12", datetime(2014, 11, 15, 22, 5, 12)),
        ("2025-05-01T00:00:00Z", datetime(2025, 5, 1, tzinfo=UTC)),
    ],
)
def test_parse_datetime_three_formats(text, expected):
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


def test_parse_datetime_attaches_tenant_zone_to_finance_times():
    tz = timezone(timedelta(hours=-8))
    assert parse_datetime("2014-11-15 22:05:12", tz=tz) == datetime(2014, 11, 15, 22, 5, 12, tzinfo=tz)


def test_parse_date():
    assert parse_date("2016-12-31") == date(2016, 12, 31)
    assert parse_date("2016-12-31T10:00:00-07:00") == date(2016, 12, 31)
