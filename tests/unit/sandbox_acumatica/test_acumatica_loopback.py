"""The sandbox over real loopback HTTP (uvicorn in a thread): dropped connections and the licence.

These need a socket, not the network; each test starts and stops its own server on port 0.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest

from sandbox.acumatica import create_app
from sandbox.acumatica.backend import AcumaticaBackend
from sandbox.server import ThreadedServer

from .conftest import BASE, CREDENTIALS, wrap

DROPPED = (httpx.RemoteProtocolError, httpx.ReadError)


@pytest.fixture
def server() -> Iterator[tuple[ThreadedServer, AcumaticaBackend]]:
    backend = AcumaticaBackend()
    backend.add_customer("C0001")
    with ThreadedServer(create_app(backend)) as running:
        yield running, backend


def _signed_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10.0)
    assert client.post("/entity/auth/login", json=CREDENTIALS).status_code == 204
    return client


def _invoice(order: str) -> dict[str, Any]:
    return wrap(
        {
            "Type": "Invoice",
            "Customer": "C0001",
            "CustomerOrder": order,
            "Hold": False,
            "Details": [{"UnitPrice": 10.0, "Account": "40000"}],
        }
    )


def test_commit_then_drop_stores_the_record_and_the_client_sees_no_response(server):
    running, backend = server
    with closing(_signed_in(running.url)) as client:
        client.post("/_sandbox/faults", json={"rules": [{"kind": "commit_then_drop", "next": 1}]})

        with pytest.raises(DROPPED):
            client.put(f"{BASE}/Invoice", json=_invoice("INV-1"))
        after = client.get(f"{BASE}/Invoice", params={"$filter": "CustomerOrder eq 'INV-1'"})

    assert after.status_code == 200
    assert [row["CustomerOrder"]["value"] for row in after.json()] == ["INV-1"]
    counts = backend.counts()
    assert (counts["dropped_connections"], counts["in_flight"]) == (1, 0)


def _create_once(client: httpx.Client, order: str) -> None:
    """Create an invoice exactly once: after a dropped answer, look it up by its natural key."""
    for _ in range(10):
        try:
            response = client.put(f"{BASE}/Invoice", json=_invoice(order))
        except DROPPED:
            found = client.get(f"{BASE}/Invoice", params={"$filter": f"CustomerOrder eq '{order}'"})
            assert found.status_code == 200
            if found.json():
                return
            continue
        assert response.status_code == 200, response.text
        return
    raise AssertionError(f"{order} was never created")


def test_commit_then_drop_on_50_creates_ends_with_50_invoices_when_the_client_looks_up_by_key(server):
    running, backend = server
    with closing(_signed_in(running.url)) as client:
        client.post(
            "/_sandbox/faults",
            json={"rules": [{"kind": "commit_then_drop", "share": 0.3, "entity": "Invoice"}], "seed": 11},
        )

        for number in range(50):
            _create_once(client, f"INV-{number:03d}")

    invoices = backend.state("Invoice")
    assert len(invoices) == 50
    assert sorted(row["CustomerOrder"] for row in invoices) == [f"INV-{n:03d}" for n in range(50)]
    counts = backend.counts()
    assert counts["dropped_connections"] == counts["faults_injected"]["commit_then_drop"] > 0


def test_a_naive_retry_after_a_dropped_create_duplicates_the_invoice(server):
    running, backend = server
    with closing(_signed_in(running.url)) as client:
        client.post("/_sandbox/faults", json={"rules": [{"kind": "commit_then_drop", "next": 1}]})
        with pytest.raises(DROPPED):
            client.put(f"{BASE}/Invoice", json=_invoice("INV-1"))

        client.put(f"{BASE}/Invoice", json=_invoice("INV-1"))

    assert [row["CustomerOrder"] for row in backend.state("Invoice")] == ["INV-1", "INV-1"]


def test_concurrent_clients_never_get_more_cores_than_the_licence_allows(server):
    running, backend = server
    backend.config.update({"max_concurrent": 2, "latency_ms": 50.0})
    login = _signed_in(running.url)
    backend.reset_counts()
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def worker() -> None:
        with httpx.Client(base_url=running.url, cookies=login.cookies, timeout=10.0) as client:
            barrier.wait(timeout=10)
            for _ in range(3):
                statuses.append(client.get(f"{BASE}/Currency/USD").status_code)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    login.close()

    counts = backend.counts()
    assert statuses == [200] * 18
    assert counts["requests"] == counts["admitted"] == 18
    assert counts["max_active"] <= 2
    assert counts["max_concurrent_observed"] >= counts["max_active"]
    assert (counts["in_flight"], counts["active"], counts["waiting"]) == (0, 0, 0)


def test_per_minute_limit_over_loopback_answers_plain_429(server):
    running, _ = server
    with closing(_signed_in(running.url)) as client:
        client.post("/_sandbox/config", json={"requests_per_minute": 3, "per_minute_delay": False})
        client.post("/_sandbox/counts/reset")

        responses = [client.get(f"{BASE}/Currency/USD") for _ in range(4)]
        counts = client.get("/_sandbox/counts").json()

    assert [response.status_code for response in responses] == [200, 200, 200, 429]
    assert responses[3].headers["content-type"].startswith("text/plain")
    assert "retry-after" not in responses[3].headers
    assert (counts["requests"], counts["max_per_sliding_minute"], counts["max_per_calendar_minute"] >= 1) == (
        4,
        4,
        True,
    )


def test_dropped_connections_are_not_counted_as_answered_statuses(server):
    running, backend = server
    with closing(_signed_in(running.url)) as client:
        client.post("/_sandbox/faults", json={"rules": [{"kind": "commit_then_drop", "next": 1}]})
        client.post("/_sandbox/counts/reset")
        with pytest.raises(DROPPED):
            client.put(f"{BASE}/Invoice", json=_invoice("INV-1"))

    counts = backend.counts()
    assert counts["statuses"] == {}
    assert (counts["requests"], counts["dropped_connections"]) == (1, 1)
