"""Per-request bookkeeping in front of the handlers: counters, limits, faults, idempotency.

This is the state behind the API gateway Zuora runs in front of its services (sections 2 and 3):
request counters per endpoint (``"GET /object-query/invoices"``), fixed-window rate limits per
tenant and per IP for ``/oauth/token``, concurrency slots per limit type, injected faults and the
Idempotency-Key store. Thread-safe: one lock guards it, separate from the data lock.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("rate_limit", "concurrency_limit", "server_error", "timeout", "latency")
MAX_HANG_SECONDS = 130.0
WINDOWS = (("minute", 60), ("hour", 3600), ("day", 86400))


@dataclass
class FaultRule:
    """One injected fault.

    ``endpoint`` is a glob over ``"METHOD /route/template"`` (``"GET /object-query/*"``) or over the
    template alone when it has no space (``"/v1/journal-runs*"``). A rule fires for the ``next`` N
    matching requests (deterministic) or for a ``share`` of them (seeded random); with neither it
    fires on every match. ``timeout`` hangs ``hang_seconds`` (bounded) then answers 504; with
    ``after=True`` the request is processed first, so only the response is lost. ``latency`` adds
    ``latency_ms`` and does not stop the request.
    """

    kind: str
    endpoint: str = "*"
    next: int | None = None
    share: float | None = None
    status: int = 503
    hang_seconds: float = 2.0
    after: bool = False
    latency_ms: float = 0.0
    retry_after: int | None = None
    reset_seconds: int = 1
    window: str = "minute"

    @classmethod
    def parse(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, Mapping):
            raise ValueError("a fault rule is an object")
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(known)}")
        rule = cls(**dict(raw))
        if rule.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        if rule.next is not None and (
            isinstance(rule.next, bool) or not isinstance(rule.next, int) or rule.next < 0
        ):
            raise ValueError("next must be a non-negative integer")
        if rule.share is not None and not 0 <= float(rule.share) <= 1:
            raise ValueError("share must be within 0..1")
        if rule.kind == "server_error" and rule.status not in (500, 502, 503, 504):
            raise ValueError("server_error status must be 500, 502, 503 or 504")
        if rule.window not in {name for name, _ in WINDOWS}:
            raise ValueError("window must be minute, hour or day")
        rule.hang_seconds = min(max(float(rule.hang_seconds), 0.0), MAX_HANG_SECONDS)
        return rule

    def matches(self, endpoint: str) -> bool:
        target = endpoint if " " in self.endpoint else endpoint.partition(" ")[2]
        return fnmatch.fnmatchcase(target, self.endpoint)

    def describe(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Stored:
    """The first response to an Idempotency-Key (or the marker that it is still in flight)."""

    method: str
    url: str
    tenant: str
    created_at: float
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def in_flight(self) -> bool:
        return self.status is None


@dataclass(frozen=True)
class RateState:
    limited_window: str | None
    reset_seconds: int
    headers: dict[str, str]


class Gateway:
    """Counters, limits, faults and idempotency records of one sandbox."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts: dict[str, int] = {}
            self._statuses: dict[str, dict[str, int]] = {}
            self._windows: dict[tuple[str, int], int] = {}
            self._ip_windows: dict[tuple[str, int], int] = {}
            self._inflight: dict[str, int] = {}
            self._rules: list[FaultRule] = []
            self._rng = random.Random(0)
            self._idempotency: dict[str, Stored] = {}

    # -- counters ------------------------------------------------------------------------------

    def count(self, endpoint: str) -> None:
        with self._lock:
            self._counts[endpoint] = self._counts.get(endpoint, 0) + 1

    def count_status(self, endpoint: str, status: int) -> None:
        with self._lock:
            per = self._statuses.setdefault(endpoint, {})
            per[str(status)] = per.get(str(status), 0) + 1

    def requests(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counts": dict(self._counts),
                "statuses": {k: dict(v) for k, v in self._statuses.items()},
                "total": sum(self._counts.values()),
            }

    def reset_requests(self) -> None:
        with self._lock:
            self._counts.clear()
            self._statuses.clear()

    # -- rate limits (section 2.1) -------------------------------------------------------------

    def hit_rate(self, now: float, limits: tuple[int, int, int]) -> RateState:
        """Count one tenant request in every window; say which window (if any) is exhausted."""
        with self._lock:
            states = []
            for (name, width), limit in zip(WINDOWS, limits, strict=True):
                key = (name, int(now // width))
                self._windows[key] = count = self._windows.get(key, 0) + 1
                reset = max(1, int(width - now % width))
                states.append((name, limit, max(0, limit - count), reset, count > limit))
            self._windows = {
                k: v for k, v in self._windows.items() if k[1] >= int(now // dict(WINDOWS)[k[0]])
            }
        exhausted = next((s for s in states if s[4]), None)
        closest = exhausted or min(states, key=lambda s: s[2])
        return RateState(exhausted[0] if exhausted else None, closest[3], rate_headers(states, closest))

    def hit_token_rate(self, now: float, ip: str, limit: int) -> tuple[bool, dict[str, str]]:
        """Per-IP minute window of ``/oauth/token``; returns (allowed, X-RateLimit-* headers)."""
        with self._lock:
            key = (ip, int(now // 60))
            self._ip_windows[key] = count = self._ip_windows.get(key, 0) + 1
            self._ip_windows = {k: v for k, v in self._ip_windows.items() if k[1] >= int(now // 60)}
        headers = {
            "X-RateLimit-Limit-minute": str(limit),
            "X-RateLimit-Remaining-minute": str(max(0, limit - count)),
        }
        return count <= limit, headers

    # -- concurrency (section 2.2) -------------------------------------------------------------

    def acquire(self, limit_type: str, limit: int) -> int | None:
        """Take a slot; returns the remaining count, or None when the limit is reached."""
        with self._lock:
            current = self._inflight.get(limit_type, 0)
            if current >= limit:
                return None
            self._inflight[limit_type] = current + 1
            return limit - current - 1

    def release(self, limit_type: str) -> None:
        with self._lock:
            self._inflight[limit_type] = max(0, self._inflight.get(limit_type, 0) - 1)

    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._inflight)

    # -- faults --------------------------------------------------------------------------------

    def add_faults(self, rules: list[FaultRule], *, replace: bool, seed: int | None) -> None:
        with self._lock:
            if replace:
                self._rules = []
            self._rules.extend(rules)
            if seed is not None:
                self._rng = random.Random(seed)

    def clear_faults(self) -> None:
        with self._lock:
            self._rules = []

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.describe() for r in self._rules]

    def pick_faults(self, endpoint: str) -> tuple[FaultRule | None, float]:
        """The fault to inject into this request (first firing rule) and the extra latency (ms)."""
        chosen: FaultRule | None = None
        latency = 0.0
        with self._lock:
            for rule in self._rules:
                if not rule.matches(endpoint) or (rule.kind != "latency" and chosen is not None):
                    continue
                if rule.next is not None:
                    if rule.next <= 0:
                        continue
                    if rule.share is None or self._rng.random() < rule.share:
                        rule.next -= 1
                    else:
                        continue
                elif rule.share is not None and self._rng.random() >= rule.share:
                    continue
                if rule.kind == "latency":
                    latency += rule.latency_ms
                else:
                    chosen = rule
            self._rules = [r for r in self._rules if r.next is None or r.next > 0]
        return chosen, latency

    # -- idempotency (section 3) ---------------------------------------------------------------

    def begin(
        self, key: str, *, method: str, url: str, tenant: str, now: float, retention: float
    ) -> tuple[str, Stored | None]:
        """``("new", None)`` after reserving the key, else ``("replay"|"conflict"|"mismatch", stored)``."""
        with self._lock:
            for old in [k for k, v in self._idempotency.items() if now - v.created_at > retention]:
                del self._idempotency[old]
            stored = self._idempotency.get(key)
            if stored is None:
                self._idempotency[key] = Stored(method, url, tenant, now)
                return "new", None
            if (stored.method, stored.url, stored.tenant) != (method, url, tenant):
                return "mismatch", stored
            if stored.in_flight:
                return "conflict", stored
            return "replay", stored

    def finish(self, key: str, status: int, headers: dict[str, str], body: bytes) -> None:
        with self._lock:
            stored = self._idempotency.get(key)
            if stored is not None:
                stored.status, stored.headers, stored.body = status, dict(headers), body

    def abandon(self, key: str) -> None:
        """Forget an in-flight key whose request never produced a response of its own."""
        with self._lock:
            stored = self._idempotency.get(key)
            if stored is not None and stored.in_flight:
                del self._idempotency[key]

    def idempotency_keys(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                k: {"method": v.method, "url": v.url, "status": v.status, "in_flight": v.in_flight}
                for k, v in self._idempotency.items()
            }


def rate_headers(
    states: list[tuple[str, int, int, int, bool]], closest: tuple[str, int, int, int, bool]
) -> dict[str, str]:
    """``RateLimit-Limit: 50000, 50000;w=60, 2250000;w=3600, ...`` (draft-polli-ratelimit-headers-02)."""
    windows = ", ".join(
        f"{limit};w={width}" for (_, limit, *_), (_, width) in zip(states, WINDOWS, strict=True)
    )
    return {
        "RateLimit-Limit": f"{closest[1]}, {windows}",
        "RateLimit-Remaining": str(closest[2]),
        "RateLimit-Reset": str(closest[3]),
    }
