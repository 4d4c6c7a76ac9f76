# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""Fixtures for the ERP contract tests: the Acumatica sandbox on a loopback port, driven through
its control plane over HTTP, and Acumatica adapters built the way ``shared.ports`` builds them
(real Redis, a connection name unique to the test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest

from sandbox.acumatica import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_ENDPOINT,
    DEFAULT_PASSWORD,
    DEFAULT_TENANT,
    DEFAULT_USERNAME,
    create_app,
)
from sandbox.server import ThreadedServer
from shared.backoff import no_jitter
from shared.connections import AcumaticaTarget
from shared.erp.acumatica import AcumaticaErp
from shared.erp.acumatica_policy import RetryPolicy
from shared.exchange import Exchange


@dataclass
class Sandbox:
    """A running Acumatica sandbox and its control plane (``/_sandbox``, never counted)."""

    server: ThreadedServer
    control: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.control = httpx.Client(base_url=self.server.url + "/_sandbox", timeout=10.0)

    @property
    def url(self) -> str:
        return self.server.url

    def _ok(self, response: httpx.Response) -> Any:
        assert response.status_code == 200, response.text
        return response.json()

    def config(self, **changes: Any) -> dict[str, Any]:
        return dict(self._ok(self.control.post("/config", json=changes)))

    def seed(self, **payload: Any) -> dict[str, int]:
        return dict(self._ok(self.control.post("/seed", json=payload)))

    def faults(self, *rules: dict[str, Any], seed: int | None = None) -> None:
        body: dict[str, Any] = {"rules": list(rules), "replace": True}
        if seed is not None:
            body["seed"] = seed
        self._ok(self.control.post("/faults", json=body))

    def clear_faults(self) -> None:
        self._ok(self.control.delete("/faults"))

    def state(self, entity: str) -> list[dict[str, Any]]:
        return list(self._ok(self.control.get(f"/state/{entity}")))

    def counts(self) -> dict[str, Any]:
        return dict(self._ok(self.control.get("/requests")))

    def reset_counts(self) -> None:
        self._ok(self.control.post("/requests/reset"))

    def expire_sessions(self) -> int:
        return int(self._ok(self.control.post("/sessions/expire"))["expired"])

    def advance_clock(self, seconds: float) -> None:
        self._ok(self.control.post("/clock", json={"advance": seconds}))

    def period_status(self, period: str, status: str) -> None:
        """``period`` as MMYYYY; ``status`` Open, Closed, Inactive or Locked."""
        self._ok(self.control.post("/period-status", json={"period": period, "status": status}))

    def close(self) -> None:
        self.control.close()
        self.server.stop()


@pytest.fixture
def acumatica_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """``acumatica_sandbox(endpoint=..., site_path=...)`` -> a seeded sandbox on a free port."""
    started: list[Sandbox] = []

    def start(**options: Any) -> Sandbox:
        sandbox = Sandbox(ThreadedServer(create_app(**options)).start())
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.close()


def cookie_target(url: str, **changes: Any) -> AcumaticaTarget:
    """The sandbox's default user, signing in with the cookie login (section 2.1). The sandbox
    has no licence limit unless a test sets one (a trial licence, section 5.2), so the client's
    fleet limit is raised from the production default (150/min) to keep the tests quick."""
    target = AcumaticaTarget(
        url=url,
        endpoint=DEFAULT_ENDPOINT,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        tenant=DEFAULT_TENANT,
        requests_per_minute=60_000,
        max_concurrent=4,
    )
    return replace(target, **changes)


def oauth_target(url: str, **changes: Any) -> AcumaticaTarget:
    """The sandbox's connected application with the password grant (section 2.2)."""
    return cookie_target(url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, **changes)


@dataclass
class Exchanges:
    """The audit hook: every HTTP attempt the adapter reports (already redacted)."""

    seen: list[Exchange] = field(default_factory=list)

    def __call__(self, exchange: Exchange) -> None:
        self.seen.append(exchange)

    def token_grants(self) -> list[str]:
        """The ``grant_type`` of every token request, in order."""
        grants = []
        for exchange in self.seen:
            if exchange.url.endswith("/identity/connect/token"):
                body = exchange.request_body or ""
                grants.append(dict(part.split("=", 1) for part in body.split("&"))["grant_type"])
        return grants


# Fast polling and short waits: the sandbox answers in milliseconds (tests stay quick), and the
# retry policy keeps its production shape (4 attempts) with small, jitter-free waits.
FAST = {
    "poll_interval": 0.02,
    "poll_max_interval": 0.05,
    "action_timeout": 10.0,
    "timeout": 10.0,
    "policy": RetryPolicy(max_attempts=4, base=0.05, cap=0.5, floor=0.01),
    "jitter": no_jitter,
}


@pytest.fixture
def make_erp(real_redis, connection_name) -> Iterator[Callable[..., AcumaticaErp]]:
    """``make_erp(target, connection=..., **client_options)`` -> an AcumaticaErp on the real Redis
    (the test's connection name unless given); every adapter is closed (logged out) at teardown."""
    made: list[AcumaticaErp] = []

    def make(target: AcumaticaTarget, *, connection: str | None = None, **options: Any) -> AcumaticaErp:
        erp = AcumaticaErp.from_target(
            target, connection=connection or connection_name, redis=real_redis, **{**FAST, **options}
        )
        made.append(erp)
        return erp

    yield make
    for erp in made:
        erp.close()
    # The adapters' shared session, limits and refresh token live under the connection's prefix.
    for key in real_redis.scan_iter(match=f"ledgerbridge:{connection_name}:*"):
        real_redis.delete(key)
