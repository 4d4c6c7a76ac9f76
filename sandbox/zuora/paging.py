"""Zuora's three paging schemes (zuora-api.md sections 5.1, 8.1, 9.2-9.3).

- Object Query: keyset cursors. ``nextPage`` is base64 of a JSON list of ``{value, orderBy}`` pairs,
  one for the sort field and one for ``Id``; the next page starts strictly after that key. Ties on
  the sort field (equal ``updatedDate`` across a page boundary) are broken by ``Id``, so every row
  appears exactly once while nothing changes. ``nextPage`` is absent on the last page.
- ZOQL: batches of at most 2,000 with an opaque ``queryLocator`` (15 minutes of inactivity).
- Finance lists: ``page``/``pageSize`` with an absolute ``nextPage`` URL.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import heapq
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

OQ_MIN_PAGE_SIZE = 1
OQ_MAX_PAGE_SIZE = 99
OQ_DEFAULT_PAGE_SIZE = 10
ZOQL_MAX_BATCH = 2000


class CursorError(ValueError):
    """The cursor is not one this sandbox issued for this sort order."""


@dataclass(frozen=True)
class SortKey:
    """One keyset column: API field name, direction and the rendered value of the last row."""

    field: str
    order: str  # "ASC" | "DESC"
    value: Any


def encode_cursor(keys: Sequence[SortKey]) -> str:
    payload = [{"value": key.value, "orderBy": {"field": key.field, "order": key.order}} for key in keys]
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str) -> list[SortKey]:
    """The keyset of an opaque cursor; raises ``CursorError`` when it is not one of ours."""
    try:
        payload = json.loads(base64.b64decode(cursor.encode(), validate=True))
        keys = [
            SortKey(str(item["orderBy"]["field"]), str(item["orderBy"]["order"]), item["value"])
            for item in payload
        ]
    except (binascii.Error, ValueError, TypeError, KeyError) as exc:
        raise CursorError(f"invalid cursor {cursor[:40]!r}") from exc
    if not keys:
        raise CursorError("empty cursor")
    return keys


def null_first(value: Any) -> tuple[int, Any]:
    """Sort key placing None before every value (and never comparing None with a value)."""
    return (0, 0) if value is None else (1, value)


def keyset_page(
    rows: Iterable[dict[str, Any]],
    key: Callable[[dict[str, Any]], tuple[Any, ...]],
    *,
    descending: bool,
    after: tuple[Any, ...] | None,
    page_size: int,
) -> tuple[list[dict[str, Any]], bool]:
    """The ``page_size`` rows after ``after`` in ``key`` order, and whether more rows follow."""
    if after is not None:
        rows = (row for row in rows if (key(row) < after if descending else key(row) > after))
    pick = heapq.nlargest if descending else heapq.nsmallest
    chosen = pick(page_size + 1, rows, key=key)
    return chosen[:page_size], len(chosen) > page_size


def keyset_scan(
    keys: Sequence[Any],
    rows: Sequence[dict[str, Any]],
    *,
    descending: bool,
    after: tuple[Any, ...] | None,
    page_size: int,
    accept: Callable[[dict[str, Any]], bool],
) -> tuple[list[dict[str, Any]], bool]:
    """Like ``keyset_page`` over rows already sorted ascending by ``keys``: bisect, then walk."""
    if descending:
        index = (bisect.bisect_left(keys, after) if after is not None else len(keys)) - 1
        step = -1
    else:
        index = bisect.bisect_right(keys, after) if after is not None else 0
        step = 1
    chosen: list[dict[str, Any]] = []
    while 0 <= index < len(rows) and len(chosen) <= page_size:
        if accept(rows[index]):
            chosen.append(rows[index])
        index += step
    return chosen[:page_size], len(chosen) > page_size


def page_url(base: str, path: str, page: int, page_size: int) -> str:
    """Absolute ``nextPage`` URL of a finance list (exact form unconfirmed, section 8.1)."""
    return f"{base.rstrip('/')}{path}?{urlencode({'page': page, 'pageSize': page_size})}"


def page_slice(items: Sequence[Any], page: int, page_size: int) -> tuple[list[Any], bool]:
    """Items of 1-based ``page`` and whether a later page exists."""
    start = (page - 1) * page_size
    return list(items[start : start + page_size]), len(items) > start + page_size


@dataclass
class LocatorBatch:
    rows: list[dict[str, Any]]
    position: int
    touched_at: float


class QueryLocators:
    """Open ZOQL result sets: a locator is a snapshot of the rest of the result (section 5.1).

    As Zuora's, a locator names the result set and the position of the next batch
    (``<32 hex>-<position>``), so each batch hands out a new one; a locator already used is
    invalid."""

    def __init__(self) -> None:
        self._open: dict[str, LocatorBatch] = {}

    def clear(self) -> None:
        self._open.clear()

    def first_batch(
        self, rows: list[dict[str, Any]], batch_size: int, now: float, ttl: float
    ) -> tuple[list[dict[str, Any]], str | None]:
        self._expire(now, ttl)
        if len(rows) <= batch_size:
            return rows, None
        result_set = secrets.token_hex(16)
        self._open[result_set] = LocatorBatch(rows, batch_size, now)
        return rows[:batch_size], f"{result_set}-{batch_size}"

    def next_batch(
        self, locator: str, batch_size: int, now: float, ttl: float
    ) -> tuple[list[dict[str, Any]], str | None] | None:
        """The next batch and the locator to continue with (None when done); None if expired
        or not the locator of the next batch."""
        self._expire(now, ttl)
        result_set, _, position = locator.rpartition("-")
        batch = self._open.get(result_set)
        if batch is None or not position.isdigit() or int(position) != batch.position:
            return None
        rows = batch.rows[batch.position : batch.position + batch_size]
        batch.position += batch_size
        batch.touched_at = now
        if batch.position >= len(batch.rows):
            del self._open[result_set]
            return rows, None
        return rows, f"{result_set}-{batch.position}"

    def _expire(self, now: float, ttl: float) -> None:
        for locator in [k for k, v in self._open.items() if now - v.touched_at > ttl]:
            del self._open[locator]
