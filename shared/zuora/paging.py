"""The per-iteration state of a paged read: current token, finished flag, loop guard."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from shared.errors import Transient


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


def next_page_number(next_page: object, current: int) -> int | None:
    """The page a v1 ``nextPage`` URL points at (None when absent), for the finance lists
    (sections 6, 8.1). Only its ``page`` parameter is used: the URL itself is never requested, so
    the bearer token never leaves the configured base URL."""
    if not next_page:
        return None
    values = parse_qs(urlsplit(str(next_page)).query).get("page")
    return int(values[0]) if values and values[0].isdigit() else current + 1
