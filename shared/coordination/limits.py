"""Fleet-wide rate and concurrency limits kept in Redis.

Every worker process talking to one API of one connection shares a :class:`TokenBucket`
(requests per unit of time) and a :class:`ConcurrencyLimiter` (requests in flight), so the
fleet as a whole stays under the API's limits. Both use Redis server time, so processes with
skewed clocks agree. Redis keeps nothing on disk here; losing these keys only resets the
limits, which refill within seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from shared.coordination.identity import process_alive, this_process
from shared.coordination.scripts import (
    BUCKET_LUA,
    COMPARE_AND_DELETE,
    PAUSE_LUA,
    SLOT_AND_PERMIT_LUA,
    SLOT_LUA,
)

Sleep = Callable[[float], None]

REAP_EVERY = 1.0  # seconds of waiting for a slot or a lock between looks for holders that died


def holder_token() -> str:
    """A lock or slot value naming this process (``host|pid|start|nonce``): see :func:`holder_gone`."""
    host, pid, started = this_process()
    return f"{host}|{pid}|{started}|{uuid.uuid4().hex}"


def holder_gone(value: Any) -> bool:
    """Whether the holder named by ``value`` (a :func:`holder_token`) is a process of this host
    that died. Other hosts' holders and values of another format are never judged gone."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    parts = text.split("|")
    if len(parts) != 4:
        return False
    host, pid, started, _nonce = parts
    try:
        return not process_alive(host, int(pid), float(started))
    except ValueError:
        return False


def reap_key(client: Any, key: str) -> bool:
    """Delete the lock ``key`` if its holder died on this host; True when it was deleted."""
    value = client.get(key)
    if value is None or not holder_gone(value):
        return False
    return bool(client.eval(COMPARE_AND_DELETE, 1, key, value))


def acquire_lock(lock: Any, client: Any, key: str, wait: float) -> bool:
    """``lock.acquire`` (a redis-py lock on ``key``) for up to ``wait`` seconds, with this
    process's :func:`holder_token`; a lock left by a process of this host that died is broken at
    once instead of being waited out. True when acquired."""
    deadline = time.monotonic() + wait
    token = holder_token()
    while True:
        remaining = deadline - time.monotonic()
        if lock.acquire(blocking=True, blocking_timeout=max(0.0, min(REAP_EVERY, remaining)), token=token):
            return True
        if reap_key(client, key):
            continue
        if time.monotonic() >= deadline:
            return False


class ThrottleTimeout(Exception):
    """No permit within the caller's deadline; ``wait`` is the estimated remaining wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate limit: next permit in {wait:.2f}s")
        self.wait = wait


class TokenBucket:
    """A token bucket shared through Redis: ``rate`` permits per second, bursts up to ``capacity``.

    :meth:`pause` stops every holder of the bucket for a while (used when the API answers 429).
    """

    def __init__(
        self,
        client: redis.Redis[Any],
        key: str,
        *,
        rate: float,
        capacity: float,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate <= 0 or capacity < 1:
            raise ValueError("rate must be > 0 and capacity >= 1")
        self._redis = client
        self.key = key
        self.pause_key = key + ":pause"
        self.rate = rate
        self.capacity = capacity
        self._sleep = sleep
        self._take = client.register_script(BUCKET_LUA)
        self._pause = client.register_script(PAUSE_LUA)

    @classmethod
    def per_minute(cls, client: Any, key: str, limit: int, *, burst: float | None = None) -> TokenBucket:
        """A bucket that admits ``limit`` requests per minute, bursting up to ``burst``
        (default: one second's worth, at least one)."""
        rate = limit / 60.0
        return cls(client, key, rate=rate, capacity=max(1.0, burst if burst is not None else rate))

    def try_acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` if available and return 0, else return the seconds to wait."""
        return float(self._take(keys=[self.key, self.pause_key], args=[self.rate, self.capacity, tokens]))

    def acquire(self, tokens: float = 1.0, *, max_wait: float = 30.0) -> float:
        """Block until ``tokens`` are taken; return the time waited.

        Raises :class:`ThrottleTimeout` instead of waiting longer than ``max_wait`` seconds in
        total, so a worker never sleeps through a long pause (the caller retries later).
        """
        waited = 0.0
        while True:
            wait = self.try_acquire(tokens)
            if wait <= 0:
                return waited
            if waited + wait > max_wait:
                raise ThrottleTimeout(wait)
            self._sleep(wait)
            waited += wait

    def pause(self, seconds: float) -> float:
        """Hold every process off this bucket for ``seconds`` (never shortens a longer pause)."""
        return float(self._pause(keys=[self.pause_key], args=[max(0.0, seconds)]))

    def paused_for(self) -> float:
        value = self._redis.get(self.pause_key)
        if value is None:
            return 0.0
        sec, usec = self._redis.time()
        now = float(sec) + float(usec) / 1e6
        return max(0.0, float(value) - now)


class ConcurrencyLimiter:
    """At most ``limit`` concurrent holders across the fleet; a lease expires after ``lease``
    seconds so a killed process cannot hold a slot forever. Each slot names its holder process;
    a caller kept waiting frees the slots of holders on its host that died (:meth:`reap`), so a
    worker restarted after a SIGKILL does not wait out its predecessor's leases."""

    def __init__(
        self,
        client: Any,
        key: str,
        *,
        limit: int,
        lease: float = 180.0,
        poll: float = 0.005,
        sleep: Sleep = time.sleep,
    ) -> None:
        self._redis = client
        self.key = key
        self.limit = limit
        self.lease = lease
        self._poll = poll
        self._sleep = sleep
        self._take = client.register_script(SLOT_LUA)
        self._take_with_permit = client.register_script(SLOT_AND_PERMIT_LUA)

    def try_enter(self) -> str | None:
        token = holder_token()
        return token if int(self._take(keys=[self.key], args=[self.limit, self.lease, token])) else None

    def try_enter_with(self, bucket: TokenBucket, tokens: float = 1.0) -> tuple[str | None, float]:
        """A slot and ``tokens`` of ``bucket`` together, or neither: ``(token, 0)`` when taken,
        ``(None, 0)`` when every slot is held, ``(None, seconds)`` when the bucket has no permit
        for that long."""
        token = holder_token()
        answer = float(
            self._take_with_permit(
                keys=[bucket.key, bucket.pause_key, self.key],
                args=[bucket.rate, bucket.capacity, tokens, self.limit, self.lease, token],
            )
        )
        if answer == 0:
            return token, 0.0
        return None, max(0.0, answer)

    def reap(self) -> int:
        """Free the slots held by processes of this host that no longer exist (a killed worker's
        requests never end); return how many. Holders on other hosts wait for their lease."""
        dead = [m for m in self._redis.zrange(self.key, 0, -1) if holder_gone(m)]
        return int(self._redis.zrem(self.key, *dead)) if dead else 0

    def leave(self, token: str) -> None:
        self._redis.zrem(self.key, token)

    @contextmanager
    def slot(self, *, max_wait: float = 30.0, bucket: TokenBucket | None = None) -> Iterator[float]:
        """Hold one slot for the block; yields the time waited. Raises :class:`ThrottleTimeout`.

        With ``bucket``, a permit of it is taken in the same step as the slot (one Redis round
        trip): the request is both counted and admitted the moment before it is sent."""
        waited = 0.0
        delay = self._poll
        reaped_at = 0.0  # a wait shorter than REAP_EVERY is ordinary contention: no look at holders
        while True:
            if bucket is None:
                token, permit_wait = self.try_enter(), 0.0
            else:
                token, permit_wait = self.try_enter_with(bucket)
            if token is not None:
                break
            if permit_wait > 0:
                if waited + permit_wait > max_wait:
                    raise ThrottleTimeout(permit_wait)
                self._sleep(permit_wait)
                waited += permit_wait
                continue
            if waited - reaped_at >= REAP_EVERY:
                reaped_at = waited
                # One look per REAP_EVERY for the whole fleet, however many are waiting.
                turn = self._redis.set(self.key + ":reap", "1", nx=True, px=int(REAP_EVERY * 1000))
                if turn and self.reap():
                    continue
            if waited >= max_wait:
                raise ThrottleTimeout(self._poll)
            self._sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.1)
        try:
            yield waited
        finally:
            self.leave(token)

    def in_use(self) -> int:
        sec, usec = self._redis.time()
        return int(self._redis.zcount(self.key, sec + usec / 1e6, "+inf"))
