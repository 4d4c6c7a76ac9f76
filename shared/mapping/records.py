"""Reading Zuora rows for the mapping: case-insensitive keys, exact amounts, dates, the customer
and the currency of a document (zuora-api.md sections 9.3 and 8.2)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping as AbcMapping
from decimal import Decimal
from typing import Any

from shared.mapping.file import InconsistentRecord, Mapping
from shared.zuora.records import get_field, parse_date, to_decimal

Row = AbcMapping[str, Any]


# -- reading Zuora records ------------------------------------------------------------------------


def _text(row: Row, name: str, *, record: str) -> str:
    value = get_field(row, name)
    if value is None or not str(value).strip():
        raise InconsistentRecord(f"{record}: field {name} is missing")
    return str(value).strip()


def _optional_text(row: Row | None, name: str) -> str | None:
    if not row:
        return None
    value = get_field(row, name)
    if value is None:
        return None
    return str(value).strip() or None


def _amount(row: Row, name: str, *, record: str) -> Decimal:
    value = get_field(row, name)
    if value is None:
        raise InconsistentRecord(f"{record}: amount {name} is missing")
    try:
        return to_decimal(value)
    except ValueError as exc:
        raise InconsistentRecord(f"{record}: {name}: {exc}") from None


def _optional_amount(row: Row, name: str, *, record: str) -> Decimal | None:
    return None if get_field(row, name) is None else _amount(row, name, record=record)


def _date(row: Row, name: str, *, record: str) -> dt.date:
    value = get_field(row, name)
    if not isinstance(value, str) or not value.strip():
        raise InconsistentRecord(f"{record}: date {name} is missing")
    try:
        return parse_date(value)
    except ValueError:
        raise InconsistentRecord(f"{record}: {name} is not a date: {value!r}") from None


def _optional_date(row: Row, name: str, *, record: str) -> dt.date | None:
    return None if get_field(row, name) in (None, "") else _date(row, name, record=record)


def customer_id_of(account: Row) -> str:
    """The ERP customer key of a Zuora account: ``ERPAccountId__c`` when set, else the account
    number (both looked up case-insensitively)."""
    erp_id = _optional_text(account, "ERPAccountId__c")
    return erp_id or _text(account, "accountNumber", record=f"account {get_field(account, 'id')}")


def _document_customer(row: Row, customer_id: str | None, record: str) -> str:
    if customer_id:
        return customer_id
    account = get_field(row, "account")
    if not isinstance(account, AbcMapping):
        raise InconsistentRecord(f"{record}: no customer: expand the account or pass customer_id")
    return customer_id_of(account)


def _currency(row: Row, mapping: Mapping, record: str) -> str:
    code = _optional_text(row, "currency")
    account = get_field(row, "account")
    if code is None and isinstance(account, AbcMapping):
        code = _optional_text(account, "currency")
    if code is None:
        raise InconsistentRecord(f"{record}: currency is missing")
    return mapping.currency(code, record=record)
