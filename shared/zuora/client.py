"""``ZuoraClient``: the composition root of the Zuora client (one per connection per process).

Build it once at process start and close it at shutdown: it owns one ``httpx.Client`` (HTTP
keep-alive) shared by every call. Areas hang off it and only build paths and parse bodies; the
transport adds headers, throttles, retries, audits and maps errors; the auth flow keeps the
fleet-wide OAuth token. ``transport``, ``sleep``, ``clock``, ``jitter`` and ``throttle`` are
injectable so tests swap them without patching.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

import httpx
from redis import Redis

from shared.backoff import Jitter, full_jitter
from shared.connections import ZuoraTarget
from shared.coordination.limits import Sleep
from shared.exchange import AuditHook
from shared.zuora.accounting_codes import AccountingCodes
from shared.zuora.actions import Actions
from shared.zuora.auth import ZuoraOAuth
from shared.zuora.journal import JournalEntries, JournalRuns
from shared.zuora.object_query import ObjectQueries
from shared.zuora.paging import PageLimits
from shared.zuora.periods import AccountingPeriods
from shared.zuora.retry import RetryPolicy
from shared.zuora.throttle import RedisThrottle, Throttle
from shared.zuora.transfers import Transfers
from shared.zuora.transport import Clock, ZuoraTransport
from shared.zuora.wire import RateLimitSnapshot
from shared.zuora.zoql import Zoql


class ZuoraClient:
    """Zuora Billing for one connection.

    Areas: ``zoql``, ``periods``, ``journal_runs``, ``journal_entries``, ``objects`` (Object
    Query), ``actions``, ``transfers``, ``accounting_codes`` (names of the code ids on memo items). ``token_requests`` counts this process's token requests;
    ``rate_limits`` is the latest ``RateLimit-*``/``Concurrency-Limit-*`` snapshot (or None).
    Waits longer than ``max_inline_wait`` seconds are not slept but raised as ``RateLimited``.
    """

    def __init__(
        self,
        target: ZuoraTarget,
        *,
        connection: str,
        redis: Redis[Any],
        audit: AuditHook | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep = time.sleep,
        clock: Clock = time.time,
        policy: RetryPolicy | None = None,
        max_inline_wait: float = 20.0,
        jitter: Jitter = full_jitter,
        throttle: Throttle | None = None,
        refresh_margin: float = 300.0,
    ) -> None:
        self.connection = connection
        self.auth = ZuoraOAuth(
            target, connection=connection, redis=redis, clock=clock, refresh_margin=refresh_margin
        )
        self.transport = ZuoraTransport(
            target,
            connection=connection,
            auth=self.auth,
            throttle=throttle or RedisThrottle(redis, connection, target, sleep=sleep),
            audit=audit,
            transport=transport,
            policy=policy,
            sleep=sleep,
            clock=clock,
            jitter=jitter,
            max_inline_wait=max_inline_wait,
            page_limits=PageLimits(connection, redis),
        )
        self.zoql = Zoql(self.transport)
        self.periods = AccountingPeriods(self.transport, self.zoql)
        self.journal_runs = JournalRuns(self.transport)
        self.journal_entries = JournalEntries(self.transport)
        self.objects = ObjectQueries(self.transport)
        self.actions = Actions(self.transport, self.zoql)
        self.transfers = Transfers(self.transport)
        self.accounting_codes = AccountingCodes(self.transport)

    @property
    def token_requests(self) -> int:
        return self.auth.token_requests

    @property
    def rate_limits(self) -> RateLimitSnapshot | None:
        return self.transport.rate_limits

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> ZuoraClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
