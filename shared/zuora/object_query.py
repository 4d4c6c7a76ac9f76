"""Object Query: ``GET /object-query/{object}`` and ``/object-query/{object}/{key}``
(zuora-api.md section 9).

A query is data (:class:`ObjectQuery`); :meth:`ObjectQueries.pages` yields one :class:`Page` per
response so the caller can commit each page before moving its mark. Paging follows the response's
``nextPage`` by passing it back verbatim as ``cursor`` (opaque base64, section 9.3); the key is
absent on the last page; a cursor seen twice raises :class:`~shared.zuora.paging.PagingLoop`.

Rows come back with camelCase keys whose first letter is lowered (``eRPAccountId__c``): read them
with :func:`shared.zuora.records.get_field`. Expanded child arrays are cut at ``pageSize`` with no
cursor of their own; fetch large children from their own object (section 9.3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from shared.errors import Rejected
from shared.zuora.paging import REFERENCE_LIMITS, Pager
from shared.zuora.transport import Params, ZuoraTransport
from shared.zuora.wire import is_text, query_string, segment

# The objects the sync reads (section 9.1) and the few it may expand into on its own.
OBJECTS = frozenset(
    {
        "accounts",
        "invoices",
        "invoice-items",
        "payments",
        "refunds",
        "credit-memos",
        "credit-memo-items",
        "debit-memos",
        "debit-memo-items",
        "contacts",
        "subscriptions",
        "payment-applications",
        "refund-applications",
        "credit-memo-applications",
    }
)
# invoice-items rejects a list request without filter[] (section 9.1).
FILTER_REQUIRED = frozenset({"invoice-items"})
# The largest pageSize any source allows (Zuora's reference pages); a tenant that holds to the
# OpenAPI document's 50 is met by stepping down (shared.zuora.paging.PageLimits).
MAX_PAGE_SIZE = REFERENCE_LIMITS["object-query"]
OPERATORS = ("EQ", "NE", "LT", "GT", "LE", "GE", "SW", "IN")

_FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
# Object Query has no escape for filter values (section 9.2; docs/vendor-notes.md): a value that
# would read back as something else is refused rather than sent.
EMPTY_STRING = "\x02\x03"  # Zuora's spelling of the empty string; EQ:'' is unsupported (section 9.2)
_LIST_SYNTAX = frozenset(",[]")
# The filters' share of a request URL once percent-encoded: httpx refuses a URL over 65,536
# characters, and the rest of the query (page size, fields, cursor) needs room too.
MAX_FILTER_CHARS = 60_000
_FILTER_RE = re.compile(r"^[A-Za-z_][\w.]*\.(EQ|NE|LT|GT|LE|GE|SW|IN):.*$", re.IGNORECASE | re.DOTALL)
_SORT_RE = re.compile(r"^[A-Za-z_][\w]*\.(ASC|DESC)$", re.IGNORECASE)


def _value(value: object, *, in_list: bool = False) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("Object Query datetimes need an offset or Z (section 9.2)")
        return value.isoformat(timespec="seconds")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot filter on the amount {value}")
        return format(value, "f")  # plain digits, as the guide's quantity.LT:200; never 1E+2
    if isinstance(value, date | int):
        return str(value)
    if isinstance(value, str):
        return _text(value, in_list=in_list)
    raise TypeError(f"cannot filter on {value!r}")


def _text(value: str, *, in_list: bool) -> str:
    """A string filter value as sent, or ValueError when Zuora would read it as another value."""
    if value == "":
        return EMPTY_STRING
    if value.lower() == "null" or value == EMPTY_STRING:
        raise ValueError(f"cannot filter on the string {value!r}: Object Query reads it as null or ''")
    if not is_text(value):
        raise ValueError(f"cannot filter on {value!r}: a lone surrogate is not text")
    if in_list and (_LIST_SYNTAX & set(value) or value != value.strip()):
        raise ValueError(
            f"cannot put {value!r} in an IN list: Object Query has no escape for ',', '[' or ']', "
            "and may trim an item's spaces"
        )
    return value


def condition(field_name: str, op: str, value: object) -> str:
    """One ``filter[]`` value: ``condition("updateddate", "GT", dt)`` -> ``updateddate.GT:2025-...``.
    ``IN`` takes a sequence and renders ``[a,b]``; None is ``null``."""
    if not _FIELD_RE.fullmatch(field_name):
        raise ValueError(f"{field_name!r} is not an Object Query field name")
    op = op.upper()
    if op not in OPERATORS:
        raise ValueError(f"unknown Object Query operator {op!r}")
    if op == "IN":
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ValueError("IN takes a sequence of values")
        rendered = "[" + ",".join(_value(v, in_list=True) for v in value) + "]"
    else:
        rendered = _value(value)
    return f"{field_name}.{op}:{rendered}"


@dataclass(frozen=True)
class ObjectQuery:
    """A list query over one object. (Zuora's reference pages also describe ``<expand>.fields[]``
    to pick an expansion's fields; its OpenAPI document declares no such parameter, so it is not
    sent: docs/vendor-notes.md.)"""

    object: str
    filters: tuple[str, ...] = ()
    sort: str | None = None
    fields: tuple[str, ...] = ()
    expand: tuple[str, ...] = ()
    page_size: int = MAX_PAGE_SIZE
    include_null_fields: bool = False

    def __post_init__(self) -> None:
        if self.object not in OBJECTS:
            raise ValueError(
                f"unknown Object Query object {self.object!r}; expected one of {sorted(OBJECTS)}"
            )
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"pageSize must be 1..{MAX_PAGE_SIZE} (Zuora answers 400 otherwise)")
        for f in self.filters:
            if not _FILTER_RE.match(f):
                raise ValueError(f"filter {f!r} is not '<field>.<OP>:<value>'")
        encoded = len(query_string([("filter[]", f) for f in self.filters]))
        if encoded > MAX_FILTER_CHARS:
            longest = max(self.filters, key=len)
            raise ValueError(
                f"the filters take {encoded} characters in the URL, more than {MAX_FILTER_CHARS}: "
                f"{longest[:60]!r}... is {len(longest)} characters long"
            )
        if self.sort is not None and not _SORT_RE.match(self.sort):
            raise ValueError(f"sort {self.sort!r} is not '<field>.ASC|DESC' (one field only)")
        if self.object in FILTER_REQUIRED and not self.filters:
            raise ValueError(f"{self.object} needs at least one filter")

    def at(self, cursor: str | None) -> Callable[[int], list[tuple[str, str]]]:
        """The query string of the page at ``cursor``, for a given page size."""
        return lambda page_size: self.params(cursor, page_size=page_size)

    def params(self, cursor: str | None = None, *, page_size: int | None = None) -> list[tuple[str, str]]:
        """The query string; ``page_size`` (at most the query's own) overrides the query's."""
        return [
            ("pageSize", str(min(self.page_size, page_size or self.page_size))),
            *_shape_params(self.fields, self.expand, self.include_null_fields),
            *(("filter[]", f) for f in self.filters),
            *((("sort[]", self.sort),) if self.sort else ()),
            *((("cursor", cursor),) if cursor is not None else ()),
        ]


def _shape_params(
    fields: Sequence[str],
    expand: Sequence[str],
    include_nulls: bool,
) -> Params:
    params: list[tuple[str, str]] = []
    if fields:
        params.append(("fields[]", ",".join(fields)))
    params.extend(("expand[]", e) for e in expand)
    params.append(("includeNullFields", "true" if include_nulls else "false"))
    return params


@dataclass(frozen=True)
class Page:
    """One Object Query response: ``data`` rows, the ``cursor`` that fetched it (None for the
    first page), the raw ``nextPage`` (None on the last page), the whole body and the
    ``page_size`` it was asked with (expanded children are cut at it)."""

    data: list[dict[str, Any]]
    cursor: str | None
    next_cursor: str | None
    response: dict[str, Any]
    page_size: int = MAX_PAGE_SIZE


class ObjectQueries:
    def __init__(self, transport: ZuoraTransport) -> None:
        self._t = transport

    def pages(self, query: ObjectQuery, *, cursor: str | None = None) -> Iterator[Page]:
        """The pages of ``query``, starting at ``cursor`` (a ``next_cursor`` kept from an earlier
        run) or at the first page."""
        pager = Pager(f"object-query {query.object}", cursor)
        while not pager.finished:
            current = pager.current
            body, size = self._t.call_paged(
                "object-query",
                query.page_size,
                "GET",
                f"/object-query/{query.object}",
                operation=f"object-query.{query.object}",
                params=query.at(current),
            )
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise Rejected(f"object-query {query.object}: the response has no data list", api="zuora")
            next_cursor = body.get("nextPage") or None
            yield Page(data=data, cursor=current, next_cursor=next_cursor, response=body, page_size=size)
            pager.advance(next_cursor)

    @property
    def max_page_size(self) -> int:
        """The largest pageSize this connection's tenant accepts now: expanded children arrive cut
        at most at it."""
        return self._t.page_limits.size("object-query", MAX_PAGE_SIZE)

    def rows(self, query: ObjectQuery) -> Iterator[dict[str, Any]]:
        for page in self.pages(query):
            yield from page.data

    def get(
        self,
        object: str,
        key: str,
        *,
        fields: Sequence[str] = (),
        expand: Sequence[str] = (),
        include_null_fields: bool = False,
    ) -> dict[str, Any]:
        """The object with this id or number (no ``data`` wrapper). NotFound if it does not exist."""
        if object not in OBJECTS:
            raise ValueError(f"unknown Object Query object {object!r}")
        body = self._t.call(
            "GET",
            f"/object-query/{object}/{segment(key)}",
            operation=f"object-query.{object}.get",
            params=_shape_params(fields, expand, include_null_fields),
        )
        if not isinstance(body, dict):
            raise Rejected(f"object-query {object}/{key}: the response is not an object", api="zuora")
        return body
