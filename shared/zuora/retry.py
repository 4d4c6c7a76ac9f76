"""The retry decision for one Zuora call: a pure function of what the last attempt saw.

:func:`decide` never sleeps and never reads a clock; the transport acts on its
:class:`Decision`. The rules follow Zuora's error-handling guide (zuora-api.md section 2.3) and
the error categories of section 4:

* 429 (or a body with category 70): wait ``Retry-After`` if sent, else ``RateLimit-Reset``,
  else, when the answer carries the token endpoint's per-minute headers
  (``X-RateLimit-Limit-minute``/``X-RateLimit-Remaining-minute``, no ``Retry-After``), until the
  next minute window, else back off. A rate-limited request was not processed, so even an
  unkeyed POST may repeat.
* 500/502/503/504, categories 60/61/99, timeouts and dropped connections: full-jitter
  exponential backoff (a 503 ``Retry-After`` is honoured).
* 409 / category 50: lock contention, or an ``Idempotency-Key`` whose first request is still in
  flight (section 3): back off and repeat with the same key.
* 401 is not retried here: the auth flow already refreshed the token once.
* Anything else (400, 403, 404, 422, ...) is final.

A request is retried after it may have reached Zuora only if it is *idempotent*: GET/PUT/DELETE,
or a POST/PATCH carrying an ``Idempotency-Key`` (this client always sends one). A connection
error (nothing was sent) and a 429 are retried regardless.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from shared.backoff import Jitter, exponential, full_jitter

NetworkError = Literal["timeout", "connect", "read"]

RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})
# Categories Zuora calls retryable (section 2.3) plus 60 (internal error, HTTP 500 in modern
# versions, so a legacy 200 + success:false with category 60 behaves like the 500 it stands for).
RETRYABLE_CATEGORIES = frozenset({50, 60, 61, 99})
RATE_LIMIT_CATEGORY = 70


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. ``base``/``cap``/``floor`` shape the backoff
    ``max(floor, jitter(min(cap, base * 2**(attempt-1))))``; ``max_attempts`` counts the first try."""

    max_attempts: int = 4
    base: float = 0.5
    cap: float = 8.0
    floor: float = 0.05

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base <= 0 or self.cap < self.floor or self.floor < 0:
            raise ValueError(f"invalid retry policy {self!r}")


@dataclass(frozen=True)
class Decision:
    """``retry``: make another attempt after ``wait`` seconds. When ``retry`` is False, ``wait``
    is the delay a later retry (e.g. a Celery countdown) should use, 0 when repeating is futile."""

    retry: bool
    wait: float
    reason: str


def header_seconds(headers: Mapping[str, str], name: str) -> float | None:
    """A header holding a number of seconds (``Retry-After: 120``, ``RateLimit-Reset: 42``).

    Only delta-seconds are understood; an HTTP-date ``Retry-After`` (never sent by Zuora) or a
    malformed value counts as absent. Lookup is case-insensitive.
    """
    raw = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    if raw is None:
        return None
    try:
        value = float(raw.split(",")[0].strip())
    except ValueError:
        return None
    return max(0.0, value)


MINUTE_WINDOW_HEADER = "X-RateLimit-Remaining-minute"


def rate_limit_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """What a 429 asks us to wait: ``Retry-After`` (concurrency 429s) else ``RateLimit-Reset``
    (rate 429s carry no ``Retry-After``, section 2.1), else, for the token endpoint's per-minute
    window (``X-RateLimit-Remaining-minute``, section 1.1), the seconds until the next minute at
    ``now`` (epoch seconds; a fixed window restarts on the minute)."""
    retry_after = header_seconds(headers, "Retry-After")
    if retry_after is not None:
        return retry_after
    reset = header_seconds(headers, "RateLimit-Reset")
    if reset is not None:
        return reset
    if now is not None and header_seconds(headers, MINUTE_WINDOW_HEADER) is not None:
        return 60.0 - now % 60.0
    return None


def decide(
    attempt: int,
    *,
    status: int | None,
    headers: Mapping[str, str],
    error: NetworkError | None,
    body_success_false_category: int | None,
    method: str,
    idempotent: bool,
    policy: RetryPolicy,
    jitter: Jitter = full_jitter,
    now: float | None = None,
) -> Decision:
    """Decide whether attempt number ``attempt`` (1-based) that just failed should be repeated.

    ``status`` is the HTTP status (None when no response arrived, then ``error`` says why);
    ``body_success_false_category`` is the error category (``code % 100``) of the body's first
    reason when the body reports a failure, else None. ``method`` is used only in reasons.
    ``now`` (epoch seconds) places a per-minute window; without it such a 429 backs off.
    """

    def backoff() -> float:
        return exponential(attempt, base=policy.base, cap=policy.cap, floor=policy.floor, jitter=jitter)

    category = body_success_false_category
    rate_limited = status == 429 or category == RATE_LIMIT_CATEGORY
    if rate_limited:
        told = rate_limit_wait(headers, now)
        wait, why = (
            (told, "429: waiting as the rate-limit headers say") if told is not None else (backoff(), "429")
        )
    elif error is not None:
        wait, why = backoff(), f"{method} {error} error"
    elif status == 401:
        return Decision(False, 0.0, "401 after one token refresh: credentials are not accepted")
    elif status == 409 or category == 50:
        wait, why = backoff(), "409/category 50: lock contention or idempotent request in flight"
    elif status in RETRYABLE_STATUSES:
        told = header_seconds(headers, "Retry-After") if status == 503 else None
        wait, why = (told if told is not None else backoff()), f"HTTP {status}"
    elif category in RETRYABLE_CATEGORIES:
        wait, why = backoff(), f"error category {category}"
    else:
        return Decision(False, 0.0, f"HTTP {status} (category {category}) is final")

    if attempt >= policy.max_attempts:
        return Decision(False, wait, f"{why}; gave up after {attempt} attempts")
    # Past this point the request may have reached Zuora, unless nothing was sent (connect) or it
    # was refused for rate (429): only an idempotent request may be repeated blindly.
    if not idempotent and not rate_limited and error != "connect":
        return Decision(False, wait, f"{why}; {method} without Idempotency-Key is not repeated")
    return Decision(True, wait, why)
