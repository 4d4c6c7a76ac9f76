"""The sandbox over real loopback HTTP (uvicorn in a thread), as the demo and benchmarks use it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sandbox.server import ThreadedServer
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes, create_app

MODERN = "2025-08-12"


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    app = create_app(
        seed=4, sizes=Sizes(accounts=6, invoices=40, payments=20, refunds=2, credit_memos=3, debit_memos=2)
    )
    with ThreadedServer(app) as running:
        yield running


@pytest.fixture
def http(server: ThreadedServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        token = client.post(
            "/oauth/token",
            data={
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "grant_type": "client_credentials",
            },
        ).json()["access_token"]
        client.headers.update({"Authorization": f"Bearer {token}", "Zuora-Version": MODERN})
        yield client


def test_close_flow_over_loopback(http: httpx.Client):
    http.post("/_sandbox/config", json={"trial_balance": {"polls": 2}, "journal_run": {"polls": 2}})
    period = next(
        p for p in http.get("/v1/accounting-periods").json()["accountingPeriods"] if p["status"] == "Open"
    )

    http.put(f"/v1/accounting-periods/{period['id']}/close")
    tb = [
        http.get(f"/v1/accounting-periods/{period['id']}").json()["runTrialBalanceStatus"] for _ in range(2)
    ]
    run = http.post(
        "/v1/journal-runs",
        headers={"Idempotency-Key": "loopback-run"},
        json={
            "accountingPeriodName": period["name"],
            "journalEntryDate": period["endDate"],
            "transactionTypes": [{"type": "Invoice Item"}, {"type": "Taxation Item"}],
        },
    ).json()["journalRunNumber"]
    jr = [http.get(f"/v1/journal-runs/{run}").json()["status"] for _ in range(2)]
    entries = http.get(f"/v1/journal-entries/journal-runs/{run}", params={"pageSize": 300}).json()

    assert tb == ["Processing", "Completed"]
    assert jr == ["Processing", "Completed"]
    assert entries["journalEntries"] and all(e["status"] == "Created" for e in entries["journalEntries"])
    assert http.get("/_sandbox/requests").json()["counts"]["GET /v1/journal-runs/{jr_number}"] == 2


def test_object_query_paging_over_loopback(http: httpx.Client):
    seen, cursor = [], None
    for _ in range(20):
        params = {"pageSize": 7, "sort[]": "updateddate.ASC"} | ({"cursor": cursor} if cursor else {})
        body = http.get("/object-query/invoices", params=params).json()
        seen += [row["id"] for row in body["data"]]
        cursor = body.get("nextPage")
        if cursor is None:
            break

    assert len(seen) == len(set(seen)) == 40


def test_timeout_fault_hangs_past_the_client_timeout(server: ThreadedServer, http: httpx.Client):
    http.post(
        "/_sandbox/faults",
        json={
            "rules": [
                {"kind": "timeout", "endpoint": "GET /object-query/accounts", "next": 1, "hang_seconds": 1.0}
            ]
        },
    )

    with pytest.raises(httpx.ReadTimeout):
        http.get("/object-query/accounts", timeout=0.2)
    recovered = http.get("/object-query/accounts")

    assert recovered.status_code == 200
