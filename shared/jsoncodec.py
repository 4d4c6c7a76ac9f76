"""The one JSON codec: money stays :class:`~decimal.Decimal` on the way in and out.

Every JSON the product writes or reads (Zuora and Acumatica bodies, the ledger's JSON columns,
entry files) goes through :func:`dumps` and :func:`loads`, built on ``simplejson``: a number with
a fraction is read as a ``Decimal`` (never a float) and a ``Decimal`` is written as the digits it
holds, in plain notation (``100.50`` stays ``100.50``, ``1E+3`` is written ``1000``). Dates and
datetimes are written as ISO-8601 strings; non-finite numbers are refused.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import simplejson

# What :func:`loads` raises for text that is not JSON (a ValueError).
DecodeError = simplejson.JSONDecodeError


def _default(value: object) -> object:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write the non-finite amount {value} as JSON")
        return simplejson.RawJSON(format(value, "f"))
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON (UTF-8 text as is) with exact decimals; ``sort_keys`` for a canonical form."""
    return simplejson.dumps(
        value,
        use_decimal=False,  # Decimals go through _default: plain digits, never an exponent
        allow_nan=False,
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=sort_keys,
        default=_default,
    )


def loads(text: str | bytes) -> Any:
    """Parse JSON; every number with a fraction or an exponent comes back as ``Decimal``. Text that
    is not JSON raises :data:`DecodeError`."""
    return simplejson.loads(text, use_decimal=True)
