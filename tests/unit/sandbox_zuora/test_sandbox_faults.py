"""Rate and concurrency limits and injected faults (zuora-api.md sections 2 and 4)."""

from __future__ import annotations

import time

import pytest

from sandbox.dropping import ConnectionDropped
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, ZuoraBackend

from .conftest import TestClient, fetch_token

CONCURRENCY_MESSAGE = (
    "The total number of concurrent requests has exceeded the limit allowed by the system. "
    "Please resubmit your request later."
)


def _faults(client: TestClient, *rules: dict) -> None:
    response = client.post("/_sandbox/faults", json={"rules": list(rules), "replace": True})
    assert response.status_code == 200, response.text


def test_every_api_response_carries_rate_and_concurrency_headers(client: TestClient, auth: dict):
    oq = client.get("/object-query/accounts", headers=auth)
    v1 = client.get("/v1/accounting-periods", headers=auth)

    assert oq.headers["RateLimit-Limit"] == "50000, 50000;w=60, 2250000;w=3600, 27000000;w=86400"
    assert int(oq.headers["RateLimit-Remaining"]) == 49999
    assert (oq.headers["Concurrency-Limit-Type"], oq.headers["Concurrency-Limit-Limit"]) == (
        "Object Query",
        "80",
    )
    assert oq.headers["Concurrency-Limit-Remaining"] == "79"
    assert (v1.headers["Concurrency-Limit-Type"], v1.headers["Concurrency-Limit-Limit"]) == ("Default", "40")


def test_injected_rate_limit_has_headers_and_code_70(client: TestClient, auth: dict):
    _faults(client, {"kind": "rate_limit", "endpoint": "GET /object-query/*", "next": 1, "reset_seconds": 7})

    limited = client.get("/object-query/invoices", headers=auth)
    after = client.get("/object-query/invoices", headers=auth)

    assert limited.status_code == 429
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert limited.headers["RateLimit-Reset"] == "7"
    assert "Retry-After" not in limited.headers
    assert limited.json() == {
        "reasons": [{"code": 70, "message": "API Rate limit exceeded for the minute, retry after 7 seconds"}]
    }
    assert after.status_code == 200


def test_injected_concurrency_limit_has_retry_after_and_code_50000070(client: TestClient, auth: dict):
    _faults(
        client,
        {"kind": "concurrency_limit", "endpoint": "/v1/accounting-periods", "next": 1, "retry_after": 3},
    )

    response = client.get("/v1/accounting-periods", headers=auth)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.headers["Concurrency-Limit-Remaining"] == "0"
    body = response.json()
    assert body["success"] is False and body["reasons"] == [
        {"code": 50000070, "message": CONCURRENCY_MESSAGE}
    ]


def test_next_n_faults_then_normal_service(client: TestClient, auth: dict):
    _faults(
        client, {"kind": "server_error", "status": 503, "endpoint": "GET /object-query/accounts", "next": 2}
    )

    statuses = [client.get("/object-query/accounts", headers=auth).status_code for _ in range(3)]
    other = client.get("/object-query/invoices", headers=auth).status_code

    assert statuses == [503, 503, 200]
    assert other == 200
    assert client.get("/_sandbox/faults").json() == {"rules": [], "injected": {"server_error": 2}}


@pytest.mark.parametrize(
    "path, shape",
    [
        ("/object-query/accounts", {"reasons", "requestId"}),
        ("/v1/accounting-periods", {"success", "processId", "reasons"}),
    ],
)
def test_injected_500_uses_the_api_error_shape(client: TestClient, auth: dict, path: str, shape: set):
    _faults(client, {"kind": "server_error", "status": 500, "next": 1})

    response = client.get(path, headers=auth)

    assert response.status_code == 500
    assert set(response.json()) == shape


def test_share_of_faults_is_reproducible_with_a_seed(client: TestClient, auth: dict):
    def run() -> list[int]:
        client.post(
            "/_sandbox/faults",
            json={"rules": [{"kind": "server_error", "share": 0.5}], "replace": True, "seed": 42},
        )
        return [client.get("/object-query/accounts", headers=auth).status_code for _ in range(20)]

    first, second = run(), run()

    assert first == second
    assert 0 < first.count(503) < 20


def test_real_rate_limit_is_enforced_per_minute(client: TestClient, auth: dict):
    client.post("/_sandbox/config", json={"rate_limit_per_minute": 2})

    statuses = [client.get("/object-query/accounts", headers=auth).status_code for _ in range(3)]
    limited = client.get("/object-query/accounts", headers=auth)

    assert statuses == [200, 200, 429]
    assert limited.json()["reasons"][0]["message"].startswith("API Rate limit exceeded for the minute")
    assert limited.headers["RateLimit-Limit"].startswith("2, 2;w=60")


def test_concurrency_limit_is_enforced_on_in_flight_requests(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    client.post("/_sandbox/config", json={"concurrency_object_query": 1})
    # Hold the only Object Query slot as a request in flight would.
    assert backend.gateway.acquire("Object Query", 1) == 0

    refused = client.get("/object-query/accounts", headers=auth)
    other_type = client.get("/v1/accounting-periods", headers=auth)
    backend.gateway.release("Object Query")
    allowed = client.get("/object-query/accounts", headers=auth)

    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "120"
    assert set(refused.json()) == {"reasons", "requestId"}
    assert other_type.status_code == 200
    assert allowed.status_code == 200


def test_legacy_version_returns_200_with_success_false(client: TestClient, auth: dict):
    legacy = {"Authorization": auth["Authorization"], "Zuora-Version": "211.0"}

    response = client.get("/v1/journal-runs/JR-99999999", headers=legacy)
    modern = client.get("/v1/journal-runs/JR-99999999", headers=auth)

    assert response.status_code == 200
    assert response.json()["success"] is False
    assert modern.status_code == 404


def test_tenant_default_version_applies_without_header(client: TestClient, auth: dict):
    client.post("/_sandbox/config", json={"default_version": "2024-05-20"})

    response = client.get("/v1/journal-runs/JR-99999999", headers={"Authorization": auth["Authorization"]})

    assert response.status_code == 404


def test_track_id_is_echoed(client: TestClient, auth: dict):
    response = client.get("/object-query/accounts", headers={**auth, "Zuora-Track-Id": "sync-42"})

    assert response.headers["Zuora-Track-Id"] == "sync-42"


def test_bad_fault_rule_is_400(client: TestClient):
    response = client.post("/_sandbox/faults", json={"rules": [{"kind": "explode"}]})

    assert response.status_code == 400


def test_latency_rule_delays_matching_requests_only(client: TestClient, auth: dict):
    _faults(client, {"kind": "latency", "endpoint": "GET /object-query/accounts", "latency_ms": 150})

    started = time.monotonic()
    delayed = client.get("/object-query/accounts", headers=auth)
    elapsed = time.monotonic() - started

    assert delayed.status_code == 200
    assert elapsed >= 0.15  # a lower bound only: sleeping never ends early
    assert client.get("/_sandbox/faults").json()["rules"][0]["kind"] == "latency"  # latency rules persist


def test_injected_fault_on_token_endpoint_uses_token_headers(client: TestClient):
    _faults(client, {"kind": "rate_limit", "endpoint": "POST /oauth/token", "next": 1})

    response = client.post(
        "/oauth/token",
        data={
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "grant_type": "client_credentials",
        },
    )

    assert response.status_code == 429
    assert response.headers["X-RateLimit-Remaining-minute"] == "0"


def test_concurrency_slots_are_released_after_each_request(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    _faults(client, {"kind": "server_error", "status": 500, "endpoint": "GET /v1/*", "next": 1})
    client.get("/object-query/accounts", headers=auth)
    client.get("/v1/accounting-periods", headers=auth)
    client.get("/v1/journal-runs/JR-99999999", headers=auth)

    assert backend.gateway.in_flight() == {"Object Query": 0, "Default": 0}


def test_commit_then_drop_does_the_work_stores_the_key_and_gives_no_answer(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    _faults(client, {"kind": "commit_then_drop", "endpoint": "POST /v1/journal-runs", "next": 1})
    period = next(p for p in backend.state("accounting-periods") if p["status"] == "Open")
    body = {
        "accountingPeriodName": period["name"],
        "journalEntryDate": period["endDate"],
        "transactionTypes": [{"type": "Invoice Item"}],
    }
    headers = {**auth, "Idempotency-Key": "dropped-answer"}

    with pytest.raises(ConnectionDropped):
        client.post("/v1/journal-runs", json=body, headers=headers)
    retried = client.post("/v1/journal-runs", json=body, headers=headers)

    assert retried.json() == {"journalRunNumber": "JR-00000001", "success": True}
    assert len(backend.state("journal-runs")) == 1
    assert client.get("/_sandbox/faults").json() == {"rules": [], "injected": {"commit_then_drop": 1}}


def test_commit_then_drop_leaves_a_failed_request_answered(client: TestClient, auth: dict):
    _faults(client, {"kind": "commit_then_drop", "endpoint": "PUT /v1/journal-entries/*", "next": 1})

    missing = client.put(
        "/v1/journal-entries/JE-99999999/basic-information",
        json={"transferredToAccounting": "Yes"},
        headers=auth,
    )

    assert missing.status_code == 404
    assert client.get("/_sandbox/faults").json()["injected"] == {}


def test_injected_faults_are_counted_by_kind(client: TestClient, auth: dict):
    _faults(
        client,
        {"kind": "server_error", "status": 500, "endpoint": "GET /object-query/accounts", "next": 2},
        {"kind": "latency", "endpoint": "GET /object-query/accounts", "latency_ms": 1, "next": 1},
    )

    for _ in range(3):
        client.get("/object-query/accounts", headers=auth)

    assert client.get("/_sandbox/faults").json()["injected"] == {"server_error": 2, "latency": 1}
    client.post("/_sandbox/requests/reset")
    assert client.get("/_sandbox/faults").json()["injected"] == {}


def test_revoke_token_every_n_calls_refuses_the_nth_until_a_new_token(client: TestClient, auth: dict):
    client.post("/_sandbox/config", json={"revoke_token_every": 3}).raise_for_status()

    statuses = [client.get("/object-query/accounts", headers=auth).status_code for _ in range(3)]
    renewed = {**auth, "Authorization": f"Bearer {fetch_token(client)}"}
    after = [client.get("/object-query/accounts", headers=renewed).status_code for _ in range(3)]

    assert statuses == [200, 200, 401]
    assert after == [200, 200, 401]
    assert client.get("/_sandbox/requests").json()["tokens_revoked"] == 2
