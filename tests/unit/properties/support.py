"""Zuora's wire for the property tests: a real :class:`ZuoraClient` whose requests go to a handler
in the test (no network), every request kept for the test to read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import fakeredis
import httpx

from shared.connections import ZuoraTarget
from shared.zuora import RetryPolicy, ZuoraClient

BASE = "https://rest.test.zuora.com"
Handler = Callable[[httpx.Request], httpx.Response]


def token(request: httpx.Request) -> httpx.Response | None:
    """The token endpoint's answer, or None for any other request."""
    if request.url.path != "/oauth/token":
        return None
    return httpx.Response(200, json={"access_token": "tok", "token_type": "bearer", "expires_in": 3599})


@contextmanager
def zuora_client(handler: Handler, sent: list[httpx.Request]) -> Iterator[ZuoraClient]:
    """A client whose every API request is appended to ``sent`` and answered by ``handler``."""

    def wire(request: httpx.Request) -> httpx.Response:
        answer = token(request)
        if answer is not None:
            return answer
        request.read()
        sent.append(request)
        return handler(request)

    target = ZuoraTarget(
        base_url=BASE,
        client_id="client",
        client_secret="secret",
        requests_per_minute=600_000,
        max_concurrent=10,
        timeout_seconds=30.0,
    )
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    client = ZuoraClient(
        target,
        connection="properties",
        redis=redis,
        transport=httpx.MockTransport(wire),
        sleep=lambda seconds: None,
        policy=RetryPolicy(max_attempts=1, base=0.5, cap=8.0, floor=0.05),
    )
    try:
        yield client
    finally:
        client.close()
        redis.close()
