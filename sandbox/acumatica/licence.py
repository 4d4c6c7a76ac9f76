"""The licence: API processing cores, the per-minute limit, the queue, and the request counters.

Acumatica's "License Restrictions for API Users" (acumatica-api.md section 5.2), simplified:

- every request under ``/entity`` except logout is licensed; it needs one of ``max_concurrent``
  processing cores, and waits in a FIFO queue while none is free;
- a per-minute window starts at its first request; once half of ``requests_per_minute`` is used,
  each new request is delayed by (time left in the window) / (requests left) while it sits in the
  queue; a request beyond the limit is declined;
- a request that finds more than ``queue_size`` requests waiting, or waits longer than
  ``max_queue_wait_seconds``, is declined; declined requests answer 429 in plain text with no
  ``Retry-After`` and do not use the window.

The counters see what the *clients* did, declined requests included: requests per calendar
minute and in any sliding 60 s window, the most requests in flight at once (arrived and not yet
answered), the most cores busy at once, and 429s by reason. The integration tests read them to
prove a fleet of workers stays inside a licence.

State is guarded by a ``threading.Lock`` and waiters are woken with ``call_soon_threadsafe`` on
their own event loop, so one gate serves Starlette's TestClient (a loop per request) and uvicorn.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sandbox.acumatica.config import SandboxConfig
from sandbox.acumatica.errors import DECLINED_TEXT
from sandbox.dropping import DROP_HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WINDOW_SECONDS = 60.0


@dataclass
class _Waiter:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    granted: bool = False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class _Counts:
    arrived: int = 0
    admitted: int = 0
    declined: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    per_calendar_minute: Counter[str] = field(default_factory=Counter)
    max_per_sliding_minute: int = 0
    max_in_flight: int = 0
    max_active: int = 0
    max_waiting: int = 0
    delayed: int = 0


class Licence:
    """Cores, queue and per-minute window for one sandbox; thread-safe."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._queue: deque[_Waiter] = deque()
        self._arrivals: deque[float] = deque()
        self._active = 0
        self._in_flight = 0
        self._waiting = 0
        self._window_start: float | None = None
        self._window_count = 0
        self._counts = _Counts()

    # -- counting -------------------------------------------------------------------------

    def arrive(self) -> None:
        """A licensed request arrived (declined or not)."""
        now, wall = self._clock(), self._wall()
        minute = datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%MZ")
        with self._lock:
            counts = self._counts
            counts.arrived += 1
            counts.per_calendar_minute[minute] += 1
            self._arrivals.append(now)
            while self._arrivals and self._arrivals[0] <= now - WINDOW_SECONDS:
                self._arrivals.popleft()
            counts.max_per_sliding_minute = max(counts.max_per_sliding_minute, len(self._arrivals))
            self._in_flight += 1
            counts.max_in_flight = max(counts.max_in_flight, self._in_flight)

    def leave(self) -> None:
        """A licensed request was answered (or its connection dropped)."""
        with self._lock:
            self._in_flight -= 1

    def note_status(self, status: int) -> None:
        with self._lock:
            self._counts.statuses[status] += 1

    def reset_counts(self) -> None:
        """Zero the counters and start a fresh per-minute window (in-flight requests are kept)."""
        with self._lock:
            self._counts = _Counts()
            self._arrivals.clear()
            self._window_start, self._window_count = None, 0

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            counts = self._counts
            sliding_now = sum(1 for moment in self._arrivals if moment > now - WINDOW_SECONDS)
            per_minute = dict(sorted(counts.per_calendar_minute.items()))
            return {
                "requests": counts.arrived,
                "admitted": counts.admitted,
                "declined": dict(counts.declined),
                "declined_total": sum(counts.declined.values()),
                "statuses": {str(status): number for status, number in sorted(counts.statuses.items())},
                "per_calendar_minute": per_minute,
                "max_per_calendar_minute": max(per_minute.values(), default=0),
                "max_per_sliding_minute": counts.max_per_sliding_minute,
                "sliding_minute_now": sliding_now,
                "in_flight": self._in_flight,
                "max_concurrent_observed": counts.max_in_flight,
                "active": self._active,
                "max_active": counts.max_active,
                "waiting": self._waiting,
                "max_waiting": counts.max_waiting,
                "delayed": counts.delayed,
                "window_used": self._window_count,
            }

    # -- admission --------------------------------------------------------------------------

    async def enter(self, config: SandboxConfig) -> str | None:
        """Wait for a core; ``None`` once one is held, else the reason the request was declined."""
        limit, cap = config.requests_per_minute, config.max_concurrent
        now = self._clock()
        delay = 0.0
        with self._lock:
            if limit is not None:
                if self._window_start is None or now >= self._window_start + WINDOW_SECONDS:
                    self._window_start, self._window_count = now, 0
                if self._window_count >= limit:
                    self._counts.declined["per_minute"] += 1
                    return "per_minute"
                used = self._window_count
                if config.per_minute_delay and used * 2 >= limit:
                    delay = (self._window_start + WINDOW_SECONDS - now) / (limit - used)
            busy = cap is not None and (self._active >= cap or bool(self._queue))
            if (delay > 0 or busy) and self._waiting >= config.queue_size:
                self._counts.declined["queue_full"] += 1
                return "queue_full"
            if limit is not None:
                self._window_count += 1
            if delay <= 0 and not busy:
                self._take_core()
                return None
            self._waiting += 1
            self._counts.max_waiting = max(self._counts.max_waiting, self._waiting)
            if delay > 0:
                self._counts.delayed += 1
        try:
            if delay > 0:
                await asyncio.sleep(min(delay, config.max_queue_wait_seconds))
            got = await self._wait_for_core(cap, max(0.0, config.max_queue_wait_seconds - delay))
        finally:
            with self._lock:
                self._waiting -= 1
        if not got:
            with self._lock:
                self._counts.declined["queue_timeout"] += 1
            return "queue_timeout"
        return None

    def _take_core(self) -> None:
        self._active += 1
        self._counts.admitted += 1
        self._counts.max_active = max(self._counts.max_active, self._active)

    async def _wait_for_core(self, cap: int | None, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        with self._lock:
            if cap is None or (self._active < cap and not self._queue):
                self._take_core()
                return True
            waiter = _Waiter(loop, loop.create_future())
            self._queue.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except TimeoutError:
            with self._lock:
                if waiter.granted:
                    return True
                self._queue.remove(waiter)
            return False
        except asyncio.CancelledError:
            with self._lock:
                granted = waiter.granted
                if not granted:
                    self._queue.remove(waiter)
            if granted:
                self.release_core()
            raise
        return True

    def release_core(self) -> None:
        """Free a core, handing it straight to the oldest waiter if there is one."""
        with self._lock:
            while self._queue:
                waiter = self._queue.popleft()
                waiter.granted = True
                try:
                    waiter.loop.call_soon_threadsafe(_resolve, waiter.future)
                except RuntimeError:  # the waiter's loop is gone (a finished TestClient call)
                    continue
                self._counts.admitted += 1
                return
            self._active -= 1


class LicenceGate:
    """ASGI middleware putting licensed requests through the ``Licence`` (and the latency knob)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        licence: Licence,
        config: Callable[[], SandboxConfig],
        licensed: Callable[[str], bool],
    ) -> None:
        self.app = app
        self.licence = licence
        self.config = config
        self.licensed = licensed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.licensed(scope["path"]):
            await self.app(scope, receive, send)
            return
        licence = self.licence
        config = self.config()
        licence.arrive()
        state = {"left": False, "core": False}

        def finish() -> None:
            if state["core"]:
                state["core"] = False
                licence.release_core()
            if not state["left"]:
                state["left"] = True
                licence.leave()

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                # A dropped connection has no status; the backend counts it as a drop instead.
                if not any(name.lower() == DROP_HEADER for name, _ in message.get("headers", [])):
                    licence.note_status(int(message["status"]))
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                # Free the core and leave *before* the last byte goes out: a client that sends its
                # next request the moment it has this answer must never look concurrent.
                finish()
            await send(message)

        try:
            reason = await licence.enter(config)
            if reason is not None:
                body = DECLINED_TEXT.encode()
                await counted_send(
                    {
                        "type": "http.response.start",
                        "status": 429,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await counted_send({"type": "http.response.body", "body": body})
                return
            state["core"] = True
            if config.latency_ms > 0:
                await asyncio.sleep(config.latency_ms / 1000.0)
            await self.app(scope, receive, counted_send)
        finally:
            finish()
