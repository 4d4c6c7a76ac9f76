"""What to do after one Acumatica attempt: pure functions, no clock, no sleep, no I/O.

:func:`decide` says whether to repeat an attempt and how long to wait; :func:`error_for` turns a
final response into the typed error the flows branch on. The rules follow acumatica-api.md:

* 429 (section 5.2): the licence declined the request; declined requests are not processed, so
  any request may be repeated. There is no ``Retry-After``: back off exponentially with jitter.
* A connection that failed before anything was sent may be repeated.
* A timeout, a dropped connection or a 502/503/504 after the request went out: a *repeatable*
  request (GET, an upsert by key, a status poll) is repeated; a create is not, because Acumatica
  has no idempotency key and a timed-out PUT may have been committed (section 7). It ends as
  :class:`~shared.erp.errors.OutcomeUnknown` and the flow looks the document up by natural key.
* ``PXLockViolationException`` (section 5.1): the server rolled the change back, repeat.
* Deterministic 500s are final (section 4.2): ``NoEntitySatisfiesTheCondition`` (a missing record
  is 500, not 404) -> NotFound; ``KeyNotFoundException`` (a ``$select`` typo), the list
  optimizer failure and ``PXSetupNotEnteredException`` -> Rejected (retrying cannot help).
* 401 is not decided here: the session layer re-logs in once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from shared.backoff import Jitter, exponential, full_jitter
from shared.erp.acumatica_wire import error_reasons, exception_text
from shared.erp.errors import OutcomeUnknown
from shared.errors import ApiError, AuthFailed, NotFound, RateLimited, Rejected, Transient

API = "acumatica"

# A network failure: "connect" = nothing reached the server; "timeout"/"read" = it may have.
NetworkError = Literal["connect", "timeout", "read"]

GATEWAY_STATUSES = frozenset({502, 503, 504})

NOT_FOUND_MARK = "NoEntitySatisfiesTheCondition"
LOCK_MARK = "PXLockViolationException"
# 500s that repeat identically however often they are sent (section 4.2 / 8 item 12).
DETERMINISTIC_MARKS = (
    "KeyNotFoundException",
    "Optimization cannot be performed",
    "PXSetupNotEnteredException",
    "PXUndefinedCompanyException",
    "incompatible types",
    # Sign-in refusals (section 2.1): repeating them changes nothing and may lock the user out.
    "Invalid credentials",
    "locked out",
    "account is disabled",
    "change your password",
    "API Login Limit",
)


@dataclass(frozen=True)
class RetryPolicy:
    """Inline retries of one call. ``max_attempts`` counts the first try; backoff is
    ``max(floor, jitter(min(cap, base * 2**(attempt-1))))``. A wait longer than
    ``max_inline_wait`` is not slept through: the call raises and the caller (a Celery retry)
    waits instead."""

    max_attempts: int = 4
    base: float = 1.0
    cap: float = 30.0
    floor: float = 0.1
    max_inline_wait: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base <= 0 or self.cap < self.floor or self.floor < 0:
            raise ValueError(f"invalid retry policy {self!r}")


@dataclass(frozen=True)
class Decision:
    """``retry`` after ``wait`` seconds, or stop. When stopping, ``wait`` is the delay a later
    retry should use and ``in_doubt`` says the request may have taken effect."""

    retry: bool
    wait: float
    reason: str
    in_doubt: bool = False


def classify_500(body: Any) -> Literal["not_found", "deterministic", "lock", "transient"]:
    text = exception_text(body)
    if NOT_FOUND_MARK in text:
        return "not_found"
    if LOCK_MARK in text:
        return "lock"
    if any(mark in text for mark in DETERMINISTIC_MARKS):
        return "deterministic"
    return "transient"


def decide(
    attempt: int,
    *,
    status: int | None,
    error: NetworkError | None,
    body: Any,
    method: str,
    repeatable: bool,
    policy: RetryPolicy,
    jitter: Jitter = full_jitter,
) -> Decision:
    """Whether attempt ``attempt`` (1-based), which got ``status`` and ``body`` (or, with no
    response, the network ``error``), should be repeated. ``repeatable`` is True for requests
    that are safe to send twice (reads, upserts by key, status polls)."""

    def backoff() -> float:
        return exponential(attempt, base=policy.base, cap=policy.cap, floor=policy.floor, jitter=jitter)

    in_doubt = False
    if status == 429:
        wait, why, may_repeat = backoff(), "429: licence limit (no Retry-After)", True
    elif error == "connect":
        wait, why, may_repeat = backoff(), f"{method}: connection failed before sending", True
    elif error is not None:
        wait, why, may_repeat = backoff(), f"{method}: {error} after sending", repeatable
        in_doubt = not repeatable
    elif status is not None and status >= 500:
        kind = classify_500(body) if status == 500 else "transient"
        if kind in ("not_found", "deterministic"):
            return Decision(False, 0.0, f"HTTP {status} ({kind}) is final")
        if kind == "lock":
            wait, why, may_repeat = backoff(), "500: lock violation, the change was rolled back", True
        else:
            wait, why, may_repeat = backoff(), f"HTTP {status}", repeatable
            in_doubt = not repeatable
    else:
        return Decision(False, 0.0, f"HTTP {status} is final")

    if not may_repeat:
        return Decision(False, wait, f"{why}; {method} is not repeated blindly", in_doubt)
    if attempt >= policy.max_attempts:
        return Decision(False, wait, f"{why}; gave up after {attempt} attempts")
    if wait > policy.max_inline_wait:
        return Decision(False, wait, f"{why}; wait {wait:.1f}s is too long to sleep inline")
    return Decision(True, wait, why)


def error_for(
    *,
    status: int | None,
    body: Any,
    method: str,
    url: str,
    decision: Decision,
    error: NetworkError | None = None,
    detail: str = "",
    body_text: str | None = None,
) -> ApiError:
    """The typed error for a final outcome (404 is handled by the client: it needs discovery)."""
    reasons = error_reasons(body)
    message = reasons[0].message if reasons else detail or (f"HTTP {status}" if status else str(error))
    kw: dict[str, Any] = {
        "api": API,
        "status": status,
        "method": method,
        "url": url,
        "reasons": reasons,
        "body": body_text,
    }
    if status == 429:
        return RateLimited(f"licence limit: {message}", retry_after=decision.wait or 1.0, **kw)
    if decision.in_doubt:
        return OutcomeUnknown(f"outcome unknown ({decision.reason}): look the document up first", **kw)
    if error is not None:
        return Transient(f"network error: {decision.reason}", **kw)
    if status == 401:
        return AuthFailed(f"not signed in after a fresh login: {message}", **kw)
    if status == 403:
        return Rejected(f"insufficient rights: {message}", **kw)
    if status is not None and status >= 500:
        kind = classify_500(body) if status == 500 else "transient"
        if kind == "not_found":
            return NotFound(message, **kw)
        if kind == "deterministic":
            return Rejected(message, **kw)
        return Transient(message, **kw)
    if status == 422:
        return Rejected("validation failed", **kw)
    return Rejected(message, **kw)
