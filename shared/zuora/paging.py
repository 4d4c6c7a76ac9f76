"""Paged reads: the per-iteration state (current token, finished flag, loop guard) and the
largest page size a connection's tenant accepts."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from redis import Redis
from redis.exceptions import RedisError

from shared.errors import Rejected, Transient

log = logging.getLogger("ledgerbridge.zuora")


class PagingLoop(Transient):
    """Zuora handed back a page token it had already given: following it would never end.

    A :class:`~shared.errors.Transient`: the server misbehaved, a later retry may succeed."""


class Pager:
    """Tracks the token of the next page (an Object Query cursor, a ZOQL locator, a page number).

    ``advance(token)`` moves to the page the response pointed at (None = no more pages); a token
    seen before raises :class:`PagingLoop` instead of looping.
    """

    def __init__(self, what: str, start: str | None = None) -> None:
        self.what = what
        self.current = start
        self.finished = False
        self._seen: set[str] = set() if start is None else {start}

    def advance(self, token: str | None) -> None:
        if token is None or token == "":
            self.finished = True
            self.current = None
            return
        if token in self._seen:
            raise PagingLoop(f"{self.what}: page token {token[:80]!r} came back twice", api="zuora")
        self._seen.add(token)
        self.current = token


class PageSizeChanged(Transient):
    """A numbered list's page size had to change after its first page: the page numbers no longer
    line up, so the read starts over (a :class:`~shared.errors.Transient`: a retry succeeds)."""


def page_params(page: int) -> Callable[[int], list[tuple[str, str]]]:
    """The ``page``/``pageSize`` query of a v1 list's page ``page``, for a given page size."""
    return lambda size: [("page", str(page)), ("pageSize", str(size))]


def next_page_number(next_page: object, current: int) -> int | None:
    """The page a v1 ``nextPage`` URL points at (None when absent), for the finance lists
    (sections 6, 8.1). Only its ``page`` parameter is used: the URL itself is never requested, so
    the bearer token never leaves the configured base URL."""
    if not next_page:
        return None
    values = parse_qs(urlsplit(str(next_page)).query).get("page")
    return int(values[0]) if values and values[0].isdigit() else current + 1


# -- page limits ----------------------------------------------------------------------------------

PageFamily = Literal["object-query", "list"]
# Zuora's sources disagree on the largest pageSize (docs/vendor-notes.md): its reference pages
# allow Object Query 99 and the v1 finance lists (accounting periods and codes, journal entries
# of a run) 300; its OpenAPI document (zuora-sdk) 50 and 40. The larger costs fewer calls, so a
# connection starts there and steps down for good on a 400 that names the page size.
REFERENCE_LIMITS: dict[PageFamily, int] = {"object-query": 99, "list": 300}
OPENAPI_LIMITS: dict[PageFamily, int] = {"object-query": 50, "list": 40}
_PAGE_SIZE_WORDS = ("pagesize", "page size")


def names_page_size(error: Rejected) -> bool:
    """Whether a 400 says the page size is what it refuses."""
    texts = [error.message, *(r.message for r in error.reasons)]
    return any(word in text.lower() for text in texts for word in _PAGE_SIZE_WORDS)


class PageLimits:
    """The largest ``pageSize`` a connection's tenant accepts, per family.

    Starts at Zuora's reference-page limits; :meth:`refused` steps down to the OpenAPI limits when
    the tenant answers 400 naming the page size. What was learned is kept in this process and, with
    ``redis``, fleet-wide under ``ledgerbridge:{connection}:zuora:page-limit:{family}`` (read once
    per process), so each process pays at most one refused call. The step is logged once per
    process; the refused exchange itself is in the audit trail like every other.
    """

    def __init__(self, connection: str, redis: Redis[Any] | None = None) -> None:
        self.connection = connection
        self._redis = redis
        self._known: dict[PageFamily, int] = {}
        self._lock = threading.Lock()

    def _key(self, family: PageFamily) -> str:
        return f"ledgerbridge:{self.connection}:zuora:page-limit:{family}"

    def limit(self, family: PageFamily) -> int:
        with self._lock:
            known = self._known.get(family)
        if known is not None:
            return known
        limit = REFERENCE_LIMITS[family]
        if self._redis is not None:
            try:
                stored = self._redis.get(self._key(family))
            except RedisError:
                stored = None  # Redis is a hint here; a refused call teaches us again
            if stored is not None and stored.isdigit():
                limit = min(limit, int(stored))
        with self._lock:
            return self._known.setdefault(family, limit)

    def size(self, family: PageFamily, wanted: int) -> int:
        """``wanted`` capped at what the tenant accepts."""
        return min(wanted, self.limit(family))

    def refused(self, family: PageFamily, size: int, error: Rejected) -> int | None:
        """The smaller page size to try after ``error`` refused ``size``, or None when the error is
        not about the page size or there is nothing smaller to step down to."""
        lower = OPENAPI_LIMITS[family]
        if size <= lower or not names_page_size(error):
            return None
        with self._lock:
            first = self._known.get(family) != lower
            self._known[family] = lower
        if first:
            log.warning(
                "zuora connection %s refused pageSize %d (%s); using %d for %s from now on",
                self.connection,
                size,
                error.message,
                lower,
                family,
                extra={"connection": self.connection},
            )
        if self._redis is not None:
            with contextlib.suppress(RedisError):  # Redis is a hint; this process knows already
                self._redis.set(self._key(family), str(lower))
        return lower
