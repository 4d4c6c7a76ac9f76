"""Fixtures for the Acumatica sandbox tests: a seeded backend, its app, and a signed-in client."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.acumatica import DEFAULT_PASSWORD, DEFAULT_TENANT, DEFAULT_USERNAME, create_app
from sandbox.acumatica.backend import AcumaticaBackend
from sandbox.acumatica.config import SandboxConfig

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE = "/entity/Default/24.200.001"
CREDENTIALS = {"name": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD, "tenant": DEFAULT_TENANT}


class FakeClock:
    """A wall clock the test moves by hand (sessions, tokens, timed actions)."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:  # 2025-06-15
        self.now = start

    def __call__(self) -> float:
        return self.now


def wrap(values: dict[str, Any]) -> dict[str, Any]:
    """Wrap every scalar as ``{"value": ...}``; lists of dicts are detail lines, dicts linked entities."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("id", "delete"):
            out[key] = value
        elif isinstance(value, list):
            out[key] = [wrap(item) for item in value]
        elif isinstance(value, dict):
            out[key] = wrap(value)
        else:
            out[key] = {"value": value}
    return out


class Api:
    """A signed-in TestClient plus shortcuts for the calls the tests repeat."""

    def __init__(self, client: TestClient, backend: AcumaticaBackend) -> None:
        self.client = client
        self.backend = backend

    def put(self, entity: str, values: dict[str, Any], **params: str) -> Any:
        return self.client.put(f"{BASE}/{entity}", json=wrap(values), params=params)

    def get(self, path: str, **params: str) -> Any:
        return self.client.get(f"{BASE}/{path}", params=params)

    def customer(self, customer_id: str = "C0001", **values: Any) -> None:
        self.backend.add_customer(customer_id, f"{customer_id} Inc.", **values)

    def invoice(
        self, order: str = "INV-1", *, customer: str = "C0001", amount: float = 100.0, **values: Any
    ) -> Any:
        body = {
            "Type": "Invoice",
            "Customer": customer,
            "Date": "2025-06-10T00:00:00",
            "CustomerOrder": order,
            "Hold": False,
            "Details": [
                {"TransactionDescription": "Plan", "Qty": 1, "UnitPrice": amount, "Account": "40000"}
            ],
        }
        body.update(values)
        return self.put("Invoice", body)

    def release(self, entity: str, action: str, entity_body: dict[str, Any]) -> Any:
        started = self.client.post(f"{BASE}/{entity}/{action}", json={"entity": entity_body})
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        for _ in range(10):
            polled = self.client.get(location)
            if polled.status_code != 202:
                return polled
        raise AssertionError("the action never finished")


def make_backend(clock: FakeClock | None = None, **config: Any) -> AcumaticaBackend:
    return AcumaticaBackend(SandboxConfig(**config), clock=clock or FakeClock())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> AcumaticaBackend:
    return make_backend(clock)


@pytest.fixture
def anonymous(backend: AcumaticaBackend) -> Iterator[TestClient]:
    with TestClient(create_app(backend)) as client:
        yield client


@pytest.fixture
def api(anonymous: TestClient, backend: AcumaticaBackend) -> Api:
    response = anonymous.post("/entity/auth/login", json=CREDENTIALS)
    assert response.status_code == 204
    return Api(anonymous, backend)
