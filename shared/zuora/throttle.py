"""The fleet-wide admission of Zuora requests: a rate permit and a concurrency slot per attempt."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from redis import Redis

from shared.connections import ZuoraTarget
from shared.coordination.limits import ConcurrencyLimiter, Sleep, TokenBucket


class Throttle(Protocol):
    """Admission for one attempt, shared by every process of a connection."""

    def permit(self, *, max_wait: float) -> AbstractContextManager[object]:
        """Hold a rate permit and a concurrency slot for the block; raise
        :class:`~shared.coordination.limits.ThrottleTimeout` rather than wait longer than ``max_wait``."""
        ...

    def pause(self, seconds: float) -> None:
        """Stop every process from starting requests for ``seconds``."""
        ...


class RedisThrottle:
    """:class:`TokenBucket` ``ledgerbridge:{connection}:zuora:bucket`` (requests per minute) plus
    :class:`ConcurrencyLimiter` ``ledgerbridge:{connection}:zuora:inflight`` (in flight)."""

    def __init__(
        self, redis: Redis[Any], connection: str, target: ZuoraTarget, *, sleep: Sleep = time.sleep
    ) -> None:
        rate = target.requests_per_minute / 60.0
        self.bucket = TokenBucket(
            redis, f"ledgerbridge:{connection}:zuora:bucket", rate=rate, capacity=max(1.0, rate), sleep=sleep
        )
        self.limiter = ConcurrencyLimiter(
            redis,
            f"ledgerbridge:{connection}:zuora:inflight",
            limit=target.max_concurrent,
            lease=max(180.0, 2 * target.timeout_seconds),
            sleep=sleep,
        )

    @contextmanager
    def permit(self, *, max_wait: float) -> Iterator[object]:
        with self.limiter.slot(max_wait=max_wait, bucket=self.bucket):  # one Redis round trip
            yield None

    def pause(self, seconds: float) -> None:
        self.bucket.pause(seconds)
