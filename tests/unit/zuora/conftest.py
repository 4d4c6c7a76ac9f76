"""Helpers for the Zuora client unit tests: a respx router as Zuora's wire (no network), a fake
clock and sleep, a recording audit hook and a recording throttle."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import respx

from shared.connections import ZuoraTarget
from shared.exchange import Exchange
from shared.zuora import RetryPolicy, ZuoraClient

BASE = "https://rest.test.zuora.com"
CLIENT_ID = "0b1e5f6a-1234-4c3d-9e8f-abcdefabcdef"
CLIENT_SECRET = "s3cr3t-Valu3-that-must-never-leak"
T0 = 1_700_000_000.0


def token_response(token: str = "tok-1", expires_in: int = 3599) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "access_token": token,
            "token_type": "bearer",
            "expires_in": expires_in,
            "scope": "tenant.19",
            "jti": token + "-jti",
        },
    )


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps(list[float]):
    """An injected sleep that records every wait instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class RecordingThrottle:
    """Admits everything; records fleet pauses (a real bucket's pause would block later permits
    on Redis server time, which a fake clock cannot move)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self.permits = 0

    @contextmanager
    def permit(self, *, max_wait: float) -> Iterator[object]:
        self.permits += 1
        yield None

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


@pytest.fixture
def target() -> ZuoraTarget:
    return ZuoraTarget(
        base_url=BASE,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        requests_per_minute=60_000,
        max_concurrent=10,
        timeout_seconds=30.0,
    )


@pytest.fixture
def router() -> respx.Router:
    """Zuora's wire: the token endpoint answers tok-1; tests add API routes."""
    r = respx.Router(base_url=BASE, assert_all_called=False)
    r.post("/oauth/token", name="token").mock(return_value=token_response())
    return r


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def audit() -> list[Exchange]:
    return []


@pytest.fixture
def make_client(
    target, router, fake_redis, connection_name, clock, sleeps, audit
) -> Iterator[Callable[..., ZuoraClient]]:
    clients: list[ZuoraClient] = []

    def make(**overrides: Any) -> ZuoraClient:
        kwargs: dict[str, Any] = {
            "connection": connection_name,
            "redis": fake_redis,
            "audit": audit.append,
            "transport": httpx.MockTransport(router.handler),
            "sleep": sleeps,
            "clock": clock,
            "policy": RetryPolicy(max_attempts=4, base=0.5, cap=8.0, floor=0.05),
            "jitter": lambda ceiling: ceiling,  # deterministic backoff: the ceiling itself
        }
        kwargs.update(overrides)
        client = ZuoraClient(kwargs.pop("target", target), **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
