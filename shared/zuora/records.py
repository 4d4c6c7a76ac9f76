"""Reading values out of Zuora JSON without losing money or time zones.

* Object Query keys are camelCase with the first letter lowered, also for custom fields whose
  API name starts upper-case: ``ERPAccountId__c`` comes back as ``eRPAccountId__c``, ``SKU`` as
  ``sKU`` (zuora-api.md sections 9.3, 11.7). :func:`get_field` therefore matches keys
  case-insensitively.
* Amounts are JSON numbers in samples but typed ``string(decimal)`` in the specs (section 8.2):
  :func:`to_decimal` accepts both and never goes through ``float``. Responses are parsed with
  ``parse_float=Decimal`` so a float never appears in the first place.
* Three datetime formats (section 13.8): Object Query ``2025-03-21T01:42:47-07:00``, ZOQL
  ``2016-10-20T05:46:14.000+02:00``, finance endpoints ``2014-11-15 22:05:12`` (tenant time,
  no zone).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

_MISSING = object()


def get_field(row: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``row[name]``, else the value of the one key equal to ``name`` ignoring case, else ``default``."""
    if name in row:
        return row[name]
    folded = name.casefold()
    found: Any = _MISSING
    for key, value in row.items():
        if key.casefold() == folded:
            if found is not _MISSING:
                raise KeyError(f"{name!r} matches more than one key ignoring case")
            found = value
    return default if found is _MISSING else found


def to_decimal(value: object) -> Decimal:
    """A JSON amount (number or numeric string) as an exact :class:`Decimal`."""
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))  # the shortest round-tripping text, not the binary expansion
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
    else:
        raise ValueError(f"not an amount: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return result


def decimal_field(row: Mapping[str, Any], name: str) -> Decimal | None:
    """The amount in field ``name`` (case-insensitive), None when absent or null."""
    value = get_field(row, name)
    return None if value is None else to_decimal(value)


def parse_datetime(value: str, *, tz: tzinfo | None = None) -> datetime:
    """Any of Zuora's three datetime formats. A value without an offset (finance endpoints) is
    in the tenant's time zone: it gets ``tz`` when given, else stays naive."""
    text = value.strip()
    if len(text) == 19 and text[10] == " ":
        text = text[:10] + "T" + text[11:]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None and tz is not None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def parse_date(value: str) -> date:
    """``YYYY-MM-DD`` (a datetime value is cut to its date)."""
    return date.fromisoformat(value.strip()[:10])


def optional_datetime(value: object, *, tz: tzinfo | None = None) -> datetime | None:
    return parse_datetime(value, tz=tz) if isinstance(value, str) and value.strip() else None


def optional_date(value: object) -> date | None:
    return parse_date(value) if isinstance(value, str) and value.strip() else None
