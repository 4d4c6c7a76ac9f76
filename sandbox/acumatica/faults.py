"""Fault injection: error answers, slowness, and connections dropped before or after a commit.

A rule fires on the calls it matches (``method``, ``entity``), either on the ``next`` N of them
or on a ``share`` of them (drawn from a seeded RNG, so a run is repeatable), or both (a share, at
most ``next`` times); with neither, on every match. The keys follow the Zuora sandbox's rules
(``count`` and ``ms`` are accepted as aliases of ``next`` and ``latency_ms``). Kinds:

- ``status``: answer ``status`` (500 HttpError, 429 plain text, 503 ...) without doing the work;
- ``lock_violation``: 500 ``PXLockViolationException`` without doing the work (section 5.1);
- ``latency``: wait ``latency_ms`` more before doing the work;
- ``drop``: close the connection without an answer and without doing the work;
- ``commit_then_drop``: on a PUT that *creates* a record, store it and then close the connection
  without an answer, so the client cannot know the create happened (section 7). A client must
  find the document by its natural key instead of creating it twice.

The control plane sets the rules (``POST /_sandbox/faults``) on the backend's ``FaultPlan``; a
handler calls ``inject`` before the work and answers with what it returns, if anything.

Dropping is done by ``sandbox.dropping``: a handler answers with ``dropped()``, and
``ConnectionDropper``, the outermost ASGI middleware, aborts the TCP connection instead (under
Starlette's TestClient it raises ``ConnectionDropped``).
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Literal

from starlette.responses import Response

from sandbox.acumatica import errors
from sandbox.acumatica.entities import ENTITIES
from sandbox.acumatica.errors import ApiFailure
from sandbox.dropping import dropped

FaultKind = Literal["status", "lock_violation", "latency", "drop", "commit_then_drop"]
_KINDS = ("status", "lock_violation", "latency", "drop", "commit_then_drop")
BEFORE_WORK = frozenset({"status", "lock_violation", "latency", "drop"})


class FaultError(ValueError):
    """A fault rule the control plane cannot accept."""


@dataclass
class FaultRule:
    kind: FaultKind
    status: int = 500
    latency_ms: float = 0.0
    next: int | None = None  # fire on at most this many more matching calls; None = no limit
    share: float | None = None  # fire on this share of matching calls; None = every one
    method: str | None = None  # "PUT", "GET", "POST", "DELETE"
    entity: str | None = None  # "Invoice", "Payment", ..., "auth" for login
    fired: int = 0

    @classmethod
    def from_json(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise FaultError("a fault rule must be a JSON object")
        known = {"kind", "status", "latency_ms", "ms", "next", "count", "share", "method", "entity"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultError(f"unknown fault rule keys: {', '.join(unknown)}")
        kind = data.get("kind")
        if kind not in _KINDS:
            raise FaultError(f"kind must be one of {', '.join(_KINDS)}")
        times = data.get("next", data.get("count"))
        rule = cls(
            kind=kind,
            status=int(data.get("status", 500)),
            latency_ms=float(data.get("latency_ms", data.get("ms")) or 0.0),
            next=None if times is None else int(times),
            share=None if data.get("share") is None else float(data["share"]),
            method=None if data.get("method") is None else str(data["method"]).upper(),
            entity=data.get("entity"),
        )
        if rule.share is not None and not 0.0 <= rule.share <= 1.0:
            raise FaultError("share must be between 0 and 1")
        if rule.next is not None and rule.next < 0:
            raise FaultError("next must not be negative")
        if rule.kind == "status" and not 400 <= rule.status <= 599:
            raise FaultError("status must be an HTTP error status (400-599)")
        return rule


class FaultPlan:
    """The active fault rules; thread-safe."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._random = random.Random(seed)
        self.injected: Counter[str] = Counter()

    def add(self, rules: list[FaultRule], *, replace: bool = False, seed: int | None = None) -> None:
        """Add rules (or replace all with them); a ``seed`` restarts the share RNG."""
        with self._lock:
            self._rules = list(rules) if replace else [*self._rules, *rules]
            if seed is not None:
                self._random = random.Random(seed)

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def draw(self, kinds: frozenset[str], method: str, entity: str) -> list[FaultRule]:
        """The rules of ``kinds`` that fire on this call (counts are used up here)."""
        fired = []
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds:
                    continue
                if rule.method is not None and rule.method != method:
                    continue
                if rule.entity is not None and rule.entity != entity:
                    continue
                if rule.next is not None and rule.fired >= rule.next:
                    continue
                if rule.share is not None and self._random.random() >= rule.share:
                    continue
                rule.fired += 1
                self.injected[rule.kind] += 1
                fired.append(rule)
        return fired


async def inject(plan: FaultPlan, method: str, entity: str) -> Response | None:
    """Fire the before-work rules of ``plan`` on this call: wait out latency, then raise the
    injected error answer or return the response that drops the connection; None: carry on."""
    fired = plan.draw(BEFORE_WORK, method, entity)
    for rule in fired:
        if rule.kind == "latency" and rule.latency_ms > 0:
            await asyncio.sleep(rule.latency_ms / 1000.0)
    for rule in fired:
        if rule.kind == "drop":
            return dropped()
        if rule.kind == "lock_violation":
            raise errors.lock_violation(ENTITIES[entity].cache_name if entity in ENTITIES else entity)
        if rule.kind == "status":
            if rule.status == 429:
                raise errors.declined()
            if rule.status > 500:
                raise ApiFailure(rule.status, "Service Unavailable", text=True)
            raise errors.http_error(rule.status, "An error occurred while processing the request (injected).")
    return None
