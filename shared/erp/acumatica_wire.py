"""The contract-based REST wire format, contract version 4 (acumatica-api.md sections 3 and 4).

Callers describe a record with plain Python values; :func:`wrap` is the only way a body is built,
so an unwrapped field cannot reach the server (Acumatica answers 400 for one, section 3.3):

* every field becomes ``{"value": X}``, except the bare system properties ``id``, ``rowNumber``
  and ``delete`` (section 3.1);
* a nested mapping is a linked entity (``MainContact``) or the ``custom`` block and is wrapped
  recursively; a list or tuple is a detail collection of records (``Details``);
* ``None`` means "leave unchanged" and is omitted (only the fields sent are touched), and so is
  a linked entity left with no field;
* ``Decimal`` and ``int`` become JSON numbers, written exactly by :func:`dumps` (never through
  ``float``); a ``float`` is refused; ``date`` becomes ``YYYY-MM-DDT00:00:00``: the definitions
  type every date as a ``DateTimeValue`` (an ISO date-time), and midnight without an offset is
  read in the server's zone, so the day cannot shift (section 8 item 4, docs/vendor-notes.md).

:func:`unwrap` reads a response back into plain values (``{}`` is None, section 3.2) and
:func:`loads` parses amounts as Decimal. :func:`error_reasons` collects the field errors of a 422
record or an HttpError body, recursively into detail lines (section 3.3).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from shared import jsoncodec
from shared.erp.base import period_of
from shared.errors import Reason

SYSTEM_KEYS = frozenset({"id", "rowNumber", "delete"})
# Keys that would make a wrapped record ambiguous: a field may never be called "value" or "error".
_RESERVED = frozenset({"value", "error"})
# Response-only bookkeeping that unwrap() passes through untouched.
_PASSTHROUGH = frozenset({"_links", "files"})

Record = Mapping[str, Any]


def _scalar(value: object, path: str) -> object:
    if isinstance(value, bool | str | int | Decimal):
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError(f"{path}: {value} is not a finite number")
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        # A DateTimeValue is a date-time; a date-only field takes midnight with no offset, which
        # the server reads in its own zone (a UTC midnight may shift the day, section 8.4).
        return f"{value.isoformat()}T00:00:00"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, float):
        raise TypeError(f"{path}: send amounts as Decimal, not float")
    raise TypeError(f"{path}: cannot send a {type(value).__name__}")


def wrap(record: Record, *, _path: str = "") -> dict[str, Any]:
    """The CV4 request body for ``record`` (see the module docstring for the rules)."""
    if not isinstance(record, Mapping):
        raise TypeError(f"{_path or 'record'}: a record must be a mapping, not {type(record).__name__}")
    out: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{_path}: field names must be non-empty strings, not {key!r}")
        path = f"{_path}.{key}" if _path else key
        if key in _RESERVED:
            raise ValueError(f"{path}: {key!r} is not a field name (it is part of the wrapper)")
        if value is None:
            continue
        if key in SYSTEM_KEYS:
            out[key] = _system(key, value, path)
        elif isinstance(value, Mapping):
            inner = wrap(value, _path=path)
            if inner:  # a linked entity with nothing to set is not sent at all
                out[key] = inner
        elif isinstance(value, list | tuple):
            out[key] = [wrap(item, _path=f"{path}[{i}]") for i, item in enumerate(value)]
        else:
            out[key] = {"value": _scalar(value, path)}
    return out


def _system(key: str, value: object, path: str) -> object:
    if key == "id" and isinstance(value, str | uuid.UUID):
        return str(value)
    if key == "rowNumber" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if key == "delete" and isinstance(value, bool):
        return value
    raise TypeError(f"{path}: invalid {key} {value!r}")


def unwrap(body: Any) -> Any:
    """Plain values from a response record or list: ``{"value": X}`` -> X, ``{}`` -> None, linked
    entities and detail lines recursively; ``id``/``rowNumber``/``_links`` stay as they are."""
    if isinstance(body, list):
        return [unwrap(item) for item in body]
    if not isinstance(body, dict):
        return body
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in SYSTEM_KEYS or key in _PASSTHROUGH or key == "error":
            out[key] = value
        elif isinstance(value, dict):
            if "value" in value:
                out[key] = (
                    unwrap(value["value"]) if isinstance(value["value"], dict | list) else value["value"]
                )
            elif not value:
                out[key] = None
            else:
                out[key] = unwrap(value)
        elif isinstance(value, list):
            out[key] = [unwrap(item) for item in value]
        else:
            out[key] = value
    return out


# Bodies go through the product's one codec (exact decimals both ways).
dumps = jsoncodec.dumps
loads = jsoncodec.loads


def post_period(value: date | str) -> str:
    """A posting period in the wire form ``MMYYYY`` (section 6.2; never ``YYYYMM``)."""
    year, month = period_of(value).split("-")
    return f"{month}{year}"


def odata_string(value: str) -> str:
    """A ``$filter`` string literal: single quotes, an embedded quote doubled (section 4.2)."""
    return "'" + value.replace("'", "''") + "'"


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """``$filter=...&$select=...`` with every value percent-encoded (spaces as ``%20``, quotes,
    ``&``, ``+`` and ``#`` escaped, section 8 item 13); ``,`` and ``/`` stay readable."""
    return "&".join(f"{quote(k, safe='$')}={quote(v, safe=',/')}" for k, v in params)


def key_path(*keys: str) -> str:
    """Key values as URL path segments (``Credit Memo`` -> ``Credit%20Memo``, section 6)."""
    return "/".join(quote(k, safe="") for k in keys)


# -- errors ---------------------------------------------------------------------------------------


def error_reasons(body: Any) -> list[Reason]:
    """Every error an Acumatica error body carries: a 422 record's top-level ``error`` and each
    field's ``error`` (recursively into linked entities and detail lines, with a field path such
    as ``Details[1].Account``), and an HttpError's ``exceptionMessage``/``message``/``modelState``
    (with ``innerException``)."""
    reasons: list[Reason] = []
    if isinstance(body, dict):
        # An HttpError has a bare string "message"; a record's fields are all objects.
        if isinstance(body.get("message"), str) or "exceptionMessage" in body or "exceptionType" in body:
            _http_error_reasons(body, reasons)
        else:
            _record_reasons(body, "", reasons)
    elif isinstance(body, list):
        for i, item in enumerate(body):
            _record_reasons(item, f"[{i + 1}]", reasons)
    return reasons


def _record_reasons(record: Any, path: str, out: list[Reason]) -> None:
    if not isinstance(record, dict):
        return
    if isinstance(record.get("error"), str) and record["error"]:
        out.append(Reason("record", record["error"], path or None))
    for key, value in record.items():
        if key in SYSTEM_KEYS or key in _PASSTHROUGH or key == "error":
            continue
        where = f"{path}.{key}" if path else key
        if key == "entity" and isinstance(value, dict):  # action 422s may wrap the record
            _record_reasons(value, path, out)
        elif isinstance(value, dict):
            if set(value) <= {"value", "error"}:  # a field (``{}`` is a null field)
                error = value.get("error")
                if isinstance(error, str) and error:
                    out.append(Reason("field", error, where))
            else:
                _record_reasons(value, where, out)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                _record_reasons(item, f"{where}[{i + 1}]", out)


def _http_error_reasons(body: dict[str, Any], out: list[Reason]) -> None:
    code = str(body.get("exceptionType") or "").rsplit(".", 1)[-1] or "error"
    message = body.get("exceptionMessage") or body.get("messageDetail") or body.get("message")
    if isinstance(message, str) and message:
        out.append(Reason(code, message, None))
    model_state = body.get("modelState")
    if isinstance(model_state, dict):
        for field_name, messages in model_state.items():
            for text in messages if isinstance(messages, list) else [messages]:
                out.append(Reason("invalid", str(text), str(field_name)))
    inner = body.get("innerException")
    if isinstance(inner, dict):
        _http_error_reasons(inner, out)


def exception_text(body: Any) -> str:
    """``exceptionType`` and ``exceptionMessage``/``message`` of an HttpError body (with inner
    exceptions), joined, for classifying 500s; '' when the body is not an HttpError."""
    parts: list[str] = []
    while isinstance(body, dict):
        parts.extend(str(body.get(k) or "") for k in ("exceptionType", "exceptionMessage", "message"))
        body = body.get("innerException")
    return " ".join(p for p in parts if p)


def first_message(body: Any, default: str) -> str:
    reasons = error_reasons(body)
    return reasons[0].message if reasons else default
