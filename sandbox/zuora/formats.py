"""Wire formats of the Zuora sandbox: money, dates and the three datetime spellings.

Zuora spells a datetime differently per API (zuora-api.md section 13 item 8):
Object Query ``2025-03-21T01:42:47-07:00`` (tenant offset, no millis), ZOQL
``2016-10-20T05:46:14.000+02:00`` and the finance endpoints ``2014-11-15 22:05:12`` (tenant time,
no zone). The sandbox stores aware datetimes truncated to whole seconds, so a value rendered without
millis and parsed back compares equal to the stored one (Object Query keyset cursors rely on that).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

CENT = Decimal("0.01")

_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def tenant_zone(offset_minutes: int) -> timezone:
    """The tenant's time zone as a fixed UTC offset."""
    return timezone(timedelta(minutes=offset_minutes))


def money(value: Any) -> Decimal:
    """``value`` as a Decimal rounded half-up to cents; raises ``ValueError`` when not a number."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number.quantize(CENT, rounding=ROUND_HALF_UP)


def decimal(value: Any) -> Decimal:
    """``value`` as an unrounded Decimal; raises ``ValueError`` when not a number."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"{value!r} is not a number") from exc
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def number_json(value: Decimal) -> int | float:
    """A Decimal as a JSON number: ``100`` for whole values, else ``400.9`` (Zuora's samples)."""
    # float() of a 2-decimal amount has a shortest repr equal to the decimal text, so the JSON
    # text is exact (``123.45``) for a client that parses floats as Decimal.
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def from_epoch(seconds: float, zone: timezone) -> datetime:
    return whole_seconds(datetime.fromtimestamp(seconds, zone))


def oq_datetime(moment: datetime, zone: timezone) -> str:
    """Object Query spelling: ``2025-03-21T01:42:47-07:00``."""
    return moment.astimezone(zone).isoformat(timespec="seconds")


def zoql_datetime(moment: datetime, zone: timezone) -> str:
    """ZOQL spelling: ``2016-10-20T05:46:14.000+02:00``."""
    return moment.astimezone(zone).isoformat(timespec="milliseconds")


def finance_datetime(moment: datetime | None, zone: timezone) -> str | None:
    """Finance-endpoint spelling: ``2014-11-15 22:05:12`` in tenant time."""
    if moment is None:
        return None
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def parse_date(text: str) -> date:
    """``YYYY-MM-DD``; raises ``ValueError`` otherwise."""
    if not isinstance(text, str) or not _DATE.match(text):
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)")
    return date.fromisoformat(text)


def parse_datetime(text: str, zone: timezone, *, allow_date: bool = True) -> datetime:
    """An ISO-8601 datetime with ``Z`` or an offset; naive values and bare dates are tenant time.

    Raises ``ValueError`` for anything else (for example a ``+`` offset that arrived as a space
    because the client did not percent-encode it, zuora-api.md section 9.2).
    """
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a datetime")
    text = text.strip()
    if allow_date and _DATE.match(text):
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), zone)
    match = _DATETIME.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an ISO-8601 datetime")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    tz: timezone = zone
    if offset == "Z":
        tz = UTC
    elif offset:
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    micro = int((fraction or "0").ljust(6, "0"))
    return datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=tz
    )


def month_bounds(month: str) -> tuple[date, date]:
    """First and last day of ``YYYY-MM``."""
    start = date.fromisoformat(f"{month}-01")
    following = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, following - timedelta(days=1)


def add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + (day.month - 1) + months
    return date(index // 12, index % 12 + 1, 1)
