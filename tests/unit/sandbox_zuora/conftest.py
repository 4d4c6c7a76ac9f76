"""Fixtures for the Zuora sandbox tests: a manual clock, a seeded backend, an in-process client."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes, ZuoraBackend, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's notice about httpx; TestClient is still an httpx.Client
    from starlette.testclient import TestClient

MODERN = "2025-08-12"
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: after every seeded date


class ManualClock:
    """A clock tests move by hand, so nothing depends on real elapsed time."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SMALL = Sizes(accounts=12, invoices=60, payments=40, refunds=6, credit_memos=8, debit_memos=5, tie_count=10)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def backend(clock: ManualClock) -> ZuoraBackend:
    backend = ZuoraBackend(clock=clock)
    backend.seed(7, SMALL, startup=True)
    return backend


@pytest.fixture
def client(backend: ZuoraBackend) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as test_client:
        yield test_client


def fetch_token(client: TestClient) -> str:
    response = client.post(
        "/oauth/token",
        data={
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "grant_type": "client_credentials",
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def auth(client: TestClient) -> dict[str, str]:
    """Headers of an authenticated modern-version request."""
    return {"Authorization": f"Bearer {fetch_token(client)}", "Zuora-Version": MODERN}


__all__ = ["MODERN", "ManualClock", "TestClient", "fetch_token", "open_period"]


def open_period(client: TestClient, auth: dict[str, str]) -> dict:
    periods = client.get("/v1/accounting-periods", headers=auth).json()["accountingPeriods"]
    return next(p for p in periods if p["status"] == "Open")
