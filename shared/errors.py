"""Errors from an external API, typed by what the caller should do.

Flows branch on the type only, never on a message:

* :class:`RateLimited` - wait ``retry_after`` seconds, then retry the same call.
* :class:`Transient` - 5xx, timeout, dropped connection, lock contention: retry with backoff.
  For a non-idempotent create the outcome is *unknown*: look the document up first.
* :class:`AuthFailed` - credentials are wrong or revoked: a person must fix configuration.
* :class:`NotFound` - the object does not exist.
* :class:`Rejected` - the API refused the request for a business or validation reason; retrying
  the same payload will not help. ``reasons`` lists what the API said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        return f"{where}{self.message} ({self.code})" if self.code else f"{where}{self.message}"


class ApiError(Exception):
    """Root of every external-API error. ``api`` is ``"zuora"`` or ``"acumatica"``."""

    def __init__(
        self,
        message: str,
        *,
        api: str,
        status: int | None = None,
        method: str | None = None,
        url: str | None = None,
        request_id: str | None = None,
        body: str | None = None,
        reasons: Sequence[Reason] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.api = api
        self.status = status
        self.method = method
        self.url = url
        self.request_id = request_id
        self.body = body
        self.reasons = tuple(reasons)

    def __str__(self) -> str:
        where = f"{self.method} {self.url} -> {self.status}" if self.method else ""
        rid = f" [request {self.request_id}]" if self.request_id else ""
        detail = "; ".join(str(r) for r in self.reasons)
        parts = [p for p in (self.message, detail) if p]
        return f"{self.api}: {' - '.join(parts)}" + (f" ({where})" if where else "") + rid


class RateLimited(ApiError):
    def __init__(self, message: str, *, retry_after: float, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Transient(ApiError):
    pass


class AuthFailed(ApiError):
    pass


class NotFound(ApiError):
    pass


class Rejected(ApiError):
    pass
