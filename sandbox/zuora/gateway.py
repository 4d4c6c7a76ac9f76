"""Per-request bookkeeping in front of the handlers: counters, limits, faults, idempotency.

This is the state behind the API gateway Zuora runs in front of its services (sections 2 and 3):
request counters per endpoint (``"GET /object-query/invoices"``), fixed-window rate limits per
tenant and per IP for ``/oauth/token``, concurrency slots per limit type, the injected faults (a
``faults.FaultPlan``), the count behind ``revoke_token_every`` and the Idempotency-Key store. Thread-safe: one lock guards it (the fault
plan has its own), separate from the backend's data lock. ``pipeline.dispatch`` drives it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .config import WINDOWS
from .faults import FaultPlan, FaultRule


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
        self._faults = FaultPlan()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._counts: dict[str, int] = {}
            self._statuses: dict[str, dict[str, int]] = {}
            self._windows: dict[tuple[str, int], int] = {}
            self._ip_windows: dict[tuple[str, int], int] = {}
            self._inflight: dict[str, int] = {}
            self._idempotency: dict[str, Stored] = {}
            self._authenticated_calls = 0
            self._revocations = 0
        self._faults.reset()

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
                "tokens_revoked": self._revocations,
            }

    def reset_requests(self) -> None:
        with self._lock:
            self._counts.clear()
            self._statuses.clear()
            self._revocations = 0
        self._faults.forget_injected()

    # -- token revocation (config.revoke_token_every) -------------------------------------------

    def revoke_due(self, every: int) -> bool:
        """Count one call that needs a bearer token; True when it is the ``every``-th since the
        last revocation (``every`` <= 0: never), and the tokens are to be revoked before it is
        checked."""
        if every <= 0:
            return False
        with self._lock:
            self._authenticated_calls += 1
            if self._authenticated_calls < every:
                return False
            self._authenticated_calls = 0
            self._revocations += 1
            return True

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

    # -- faults (faults.py) ---------------------------------------------------------------------

    def add_faults(self, rules: list[FaultRule], *, replace: bool, seed: int | None) -> None:
        self._faults.add(rules, replace=replace, seed=seed)

    def clear_faults(self) -> None:
        self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        return self._faults.rules()

    def faults_injected(self) -> dict[str, int]:
        return self._faults.injected()

    def pick_faults(self, endpoint: str) -> tuple[FaultRule | None, float]:
        """The fault to inject into this request and the extra latency (ms): ``FaultPlan.pick``."""
        return self._faults.pick(endpoint)

    def pick_fault_after_work(self, endpoint: str) -> FaultRule | None:
        """The ``commit_then_drop`` fault for a request whose work succeeded: ``FaultPlan.pick_after_work``."""
        return self._faults.pick_after_work(endpoint)

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
