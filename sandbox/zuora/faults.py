"""Fault injection: the rules the control plane sets (``POST /_sandbox/faults``) and what firing one does.

A rule (``FaultRule``) names a kind and the endpoints it matches; the ``FaultPlan`` holds the
active rules and picks, per request, the fault to inject and any extra latency; ``inject`` turns
a picked fault into the answer Zuora's gateway would give (429 rate or concurrency limit, a 5xx,
or a hang then 504). The gateway (``gateway.Gateway``) owns one plan; the request pipeline
(``pipeline.dispatch``) asks it before authentication, so an injected fault answers even a request
with a bad token.

``commit_then_drop`` is drawn after the work instead, as the Acumatica sandbox's is: on a request
whose handler succeeded (and whose answer is stored under its Idempotency-Key, if it has one),
the connection is closed without an answer (``sandbox.dropping``), so the client cannot know the
write happened. The plan counts every fault it fires, by kind (``injected``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from .config import WINDOWS, SandboxConfig
from .errors import Api, ConcurrencyLimited, RateLimited, ServerFault

FAULT_KINDS = ("rate_limit", "concurrency_limit", "server_error", "timeout", "latency", "commit_then_drop")
AFTER_WORK = "commit_then_drop"
MAX_HANG_SECONDS = 130.0


@dataclass
class FaultRule:
    """One injected fault.

    ``endpoint`` is a glob over ``"METHOD /route/template"`` (``"GET /object-query/*"``) or over the
    template alone when it has no space (``"/v1/journal-runs*"``). A rule fires for the ``next`` N
    matching requests (deterministic) or for a ``share`` of them (seeded random); with neither it
    fires on every match. ``timeout`` hangs ``hang_seconds`` (bounded) then answers 504; with
    ``after=True`` the request is processed first, so only the response is lost. ``latency`` adds
    ``latency_ms`` and does not stop the request. ``commit_then_drop`` processes the request and,
    if it succeeded, closes the connection without an answer.
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


class FaultPlan:
    """The active fault rules and the seeded RNG their shares draw from; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """No rules, nothing injected yet; the share RNG restarts from seed 0."""
        with self._lock:
            self._rules: list[FaultRule] = []
            self._rng = random.Random(0)
            self._injected: Counter[str] = Counter()

    def injected(self) -> dict[str, int]:
        """How many faults fired, by kind."""
        with self._lock:
            return dict(self._injected)

    def forget_injected(self) -> None:
        with self._lock:
            self._injected.clear()

    def add(self, rules: list[FaultRule], *, replace: bool, seed: int | None) -> None:
        """Add ``rules`` after the active ones (or instead of them); a ``seed`` restarts the RNG."""
        with self._lock:
            if replace:
                self._rules = []
            self._rules.extend(rules)
            if seed is not None:
                self._rng = random.Random(seed)

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.describe() for r in self._rules]

    def pick(self, endpoint: str) -> tuple[FaultRule | None, float]:
        """The fault to inject into this request before its work (first firing rule) and the
        extra latency (ms).

        Counts (``next``) are used up here; a rule whose count reaches 0 is dropped.
        """
        chosen: FaultRule | None = None
        latency = 0.0
        with self._lock:
            for rule in self._rules:
                if rule.kind == AFTER_WORK or not rule.matches(endpoint):
                    continue
                if rule.kind != "latency" and chosen is not None:
                    continue
                if not self._fires(rule):
                    continue
                self._injected[rule.kind] += 1
                if rule.kind == "latency":
                    latency += rule.latency_ms
                else:
                    chosen = rule
            self._rules = [r for r in self._rules if r.next is None or r.next > 0]
        return chosen, latency

    def pick_after_work(self, endpoint: str) -> FaultRule | None:
        """The ``commit_then_drop`` rule that fires on this request, whose work succeeded (None:
        answer as usual). Counts are used up as in :meth:`pick`."""
        with self._lock:
            chosen = next(
                (r for r in self._rules if r.kind == AFTER_WORK and r.matches(endpoint) and self._fires(r)),
                None,
            )
            if chosen is not None:
                self._injected[chosen.kind] += 1
            self._rules = [r for r in self._rules if r.next is None or r.next > 0]
        return chosen

    def _fires(self, rule: FaultRule) -> bool:
        """Whether ``rule`` fires on this matching request (the lock is held); uses up a count."""
        if rule.next is not None:
            if rule.next <= 0:
                return False
            if rule.share is None or self._rng.random() < rule.share:
                rule.next -= 1
                return True
            return False
        return rule.share is None or self._rng.random() < rule.share


async def inject(
    fault: FaultRule,
    *,
    api: Api,
    limit_type: str | None,
    config: SandboxConfig,
    headers: dict[str, str],
) -> None:
    """Answer as ``fault`` says, before the request is processed (always raises but for ``latency``).

    ``headers`` are the response headers gathered so far; a rate-limit fault sets the ones a real
    exhausted window would carry. ``api``/``limit_type`` are the route's dialect and limit type.
    """
    if fault.kind == "rate_limit":
        if api is Api.OAUTH:
            headers["X-RateLimit-Remaining-minute"] = "0"
        else:
            headers["RateLimit-Remaining"] = "0"
            headers["RateLimit-Reset"] = str(fault.reset_seconds)
        raise RateLimited(fault.window, fault.reset_seconds, {})
    if fault.kind == "concurrency_limit":
        limit_type = limit_type or "Default"
        raise ConcurrencyLimited(
            limit_type,
            config.concurrency_limit(limit_type),
            fault.retry_after if fault.retry_after is not None else config.concurrency_retry_after_seconds,
        )
    if fault.kind == "server_error":
        raise ServerFault(fault.status)
    if fault.kind == "timeout":
        await hang(fault)


async def hang(fault: FaultRule) -> NoReturn:
    """Hold the request ``fault.hang_seconds``, then answer 504 (a gateway timeout)."""
    await asyncio.sleep(fault.hang_seconds)
    raise ServerFault(504)
