"""What goes on Zuora's wire besides the bodies: path segments, the Idempotency-Key and Track-Id
headers, the rate-limit headers (zuora-api.md sections 2 and 3), and reading any of Zuora's error
shapes into typed errors (section 4)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import httpx

from shared.errors import ApiError, AuthFailed, NotFound, RateLimited, Reason, Rejected, Transient

# -- headers --------------------------------------------------------------------------------------


def segment(value: str) -> str:
    """``value`` as one quoted path segment, so an id or number can never change the path."""
    if not value:
        raise ValueError("empty path parameter")
    return quote(value, safe="")


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """The URL query of ``params``: every reserved character percent-encoded, a space as ``%20``
    and ``+`` as ``%2B`` (Object Query filters, section 9.2), so no value can add a parameter."""
    return urlencode(list(params), quote_via=quote)


def is_text(value: str) -> bool:
    """``value`` can go on the wire as UTF-8 (a lone surrogate, which a JSON ``\\ud800`` escape
    reads into a str, cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def make_idempotency_key(connection: str, parts: Sequence[str]) -> str:
    """``lb-`` + sha256 over the connection and ``parts``: the same logical write gets the same key
    in every process and every retry; another connection (tenant) never shares it."""
    digest = hashlib.sha256(json.dumps([connection, *parts], separators=(",", ":")).encode()).hexdigest()
    return f"lb-{digest}"


def make_track_id(connection: str, operation: str, call_id: str | None = None) -> str:
    """``lb-{connection}-{operation}-{call id}``, cut to Zuora's 64 chars, only ``[A-Za-z0-9._-]``."""
    call_id = call_id or uuid.uuid4().hex[:12]
    head = re.sub(r"[^A-Za-z0-9._-]+", "-", f"lb-{connection}-{operation}")[: 63 - len(call_id)]
    return f"{head}-{call_id}"


@dataclass(frozen=True)
class RateLimitSnapshot:
    """The rate and concurrency headers of the latest API response (section 2); None = absent."""

    limit: int | None
    remaining: int | None
    reset: float | None
    concurrency_type: str | None
    concurrency_limit: int | None
    concurrency_remaining: int | None
    observed_at: float


def _int(value: str | None) -> int | None:
    try:
        return int(value.split(",")[0].split(";")[0].strip()) if value is not None else None
    except ValueError:
        return None


def parse_rate_limits(headers: Mapping[str, str], *, at: float) -> RateLimitSnapshot | None:
    """Read ``RateLimit-Limit`` (first number = the window closest to exhaustion), ``-Remaining``,
    ``-Reset`` (seconds) and ``Concurrency-Limit-Type/-Limit/-Remaining``; None if none is present."""
    h = httpx.Headers(headers)
    snapshot = RateLimitSnapshot(
        limit=_int(h.get("RateLimit-Limit")),
        remaining=_int(h.get("RateLimit-Remaining")),
        reset=None if (reset := _int(h.get("RateLimit-Reset"))) is None else float(reset),
        concurrency_type=h.get("Concurrency-Limit-Type"),
        concurrency_limit=_int(h.get("Concurrency-Limit-Limit")),
        concurrency_remaining=_int(h.get("Concurrency-Limit-Remaining")),
        observed_at=at,
    )
    values = (snapshot.limit, snapshot.remaining, snapshot.reset, snapshot.concurrency_type)
    return None if all(v is None for v in (*values, snapshot.concurrency_limit)) else snapshot


# -- error bodies ---------------------------------------------------------------------------------


def parse_reasons(body: object) -> tuple[Reason, ...]:
    """The reasons of any Zuora error shape (section 4): v1 and Object Query ``reasons[]``,
    finance 403 ``{code, message}``, 401/Actions ``{message}``, SOAP-style ``FaultCode``."""
    if not isinstance(body, Mapping):
        return ()
    if isinstance(reasons := body.get("reasons"), list):
        return tuple(
            Reason(code=str(r.get("code", "")), message=str(r.get("message", "")))
            for r in reasons
            if isinstance(r, Mapping)
        )
    if "FaultCode" in body:
        return (Reason(code=str(body["FaultCode"]), message=str(body.get("FaultMessage", ""))),)
    if "message" in body:
        return (Reason(code=str(body.get("code", "")), message=str(body["message"])),)
    return ()


def error_category(reasons: Sequence[Reason]) -> int | None:
    """``code % 100`` of the first numeric reason code (8-digit codes or a bare category like 70);
    codes may arrive as int or string (section 4.1)."""
    for reason in reasons:
        code = reason.code.strip()
        if code.isdigit():
            return int(code) % 100
    return None


def reports_failure(body: object) -> bool:
    """A 2xx body that is nevertheless a failure: ``"success": false`` (legacy mapping) or an
    error ``reasons`` list without ``success: true`` (pre-2025-08-12 Object Query)."""
    if not isinstance(body, Mapping):
        return False
    if body.get("success") is False:
        return True
    return bool(body.get("reasons")) and body.get("success") is not True and "data" not in body


_CATEGORY_ERRORS: dict[int, type[ApiError]] = {11: AuthFailed, 40: NotFound, 50: Transient, 60: Transient}
_CATEGORY_ERRORS.update({61: Transient, 99: Transient, 70: RateLimited})


def error_class(status: int, category: int | None) -> type[ApiError]:
    """The typed error for a failed response: the category when the body has one, else the
    status. 10/20/21/22/23/27/30/45/90 are all ``Rejected`` (retrying the payload cannot help)."""
    if status == 401:
        return AuthFailed
    if status == 429:
        return RateLimited
    if category is not None:
        return _CATEGORY_ERRORS.get(category, Rejected)
    if status == 404:
        return NotFound
    if status == 409 or status >= 500:
        return Transient
    return Rejected
