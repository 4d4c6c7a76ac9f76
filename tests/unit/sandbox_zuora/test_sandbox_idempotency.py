"""Idempotency-Key semantics (zuora-api.md section 3)."""

from __future__ import annotations

import pytest

from sandbox.zuora import ZuoraBackend

from .conftest import ManualClock, TestClient, fetch_token, open_period


def _run_body(period: dict) -> dict:
    return {
        "accountingPeriodName": period["name"],
        "journalEntryDate": period["endDate"],
        "transactionTypes": [{"type": "Invoice Item"}],
    }


def test_replay_returns_the_stored_response_and_creates_one_run(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    body = _run_body(open_period(client, auth))
    headers = {**auth, "Idempotency-Key": "close-dec-2024-run"}

    first = client.post("/v1/journal-runs", json=body, headers=headers)
    second = client.post("/v1/journal-runs", json=body, headers=headers)

    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert first.headers["Zuora-Request-Id"] == second.headers["Zuora-Request-Id"]
    assert [r["number"] for r in backend.state("journal-runs")] == ["JR-00000001"]


@pytest.mark.vendor_contract_exempt  # an invalid journal run, on purpose
def test_replay_of_a_failure_is_the_same_failure(client: TestClient, auth: dict):
    headers = {**auth, "Idempotency-Key": "bad-run"}

    first = client.post("/v1/journal-runs", json={"transactionTypes": []}, headers=headers)
    second = client.post("/v1/journal-runs", json=_run_body(open_period(client, auth)), headers=headers)

    assert first.status_code == second.status_code == 400
    assert first.content == second.content


@pytest.mark.vendor_contract_exempt  # an incomplete journal entry, on purpose
def test_key_reused_on_another_url_is_422(client: TestClient, auth: dict):
    headers = {**auth, "Idempotency-Key": "shared-key"}
    client.post("/v1/journal-runs", json=_run_body(open_period(client, auth)), headers=headers)

    response = client.post("/v1/journal-entries", json={}, headers=headers)

    assert response.status_code == 422


def test_key_still_in_flight_is_409(client: TestClient, auth: dict, backend: ZuoraBackend):
    # Simulate the first request being mid-flight: the gateway holds the key without a response.
    decision, _ = backend.gateway.begin(
        "busy-key", method="POST", url="/v1/journal-runs", tenant="9999", now=backend.now(), retention=86400
    )

    response = client.post(
        "/v1/journal-runs",
        json=_run_body(open_period(client, auth)),
        headers={**auth, "Idempotency-Key": "busy-key"},
    )

    assert decision == "new"
    assert response.status_code == 409
    assert response.json()["success"] is False


def test_keys_expire_after_24_hours(client: TestClient, auth: dict, clock: ManualClock):
    body = _run_body(open_period(client, auth))
    headers = {**auth, "Idempotency-Key": "daily"}
    client.post("/v1/journal-runs", json=body, headers=headers)
    clock.advance(86401)
    headers["Authorization"] = f"Bearer {fetch_token(client)}"  # tokens last an hour
    second = client.post("/v1/journal-runs", json=body, headers=headers)

    assert second.json()["journalRunNumber"] == "JR-00000002"


def test_response_lost_after_processing_is_replayed_on_retry(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    client.post(
        "/_sandbox/faults",
        json={
            "rules": [
                {
                    "kind": "timeout",
                    "endpoint": "POST /v1/journal-runs",
                    "next": 1,
                    "after": True,
                    "hang_seconds": 0,
                }
            ]
        },
    )
    body = _run_body(open_period(client, auth))
    headers = {**auth, "Idempotency-Key": "lost-response"}

    lost = client.post("/v1/journal-runs", json=body, headers=headers)
    retried = client.post("/v1/journal-runs", json=body, headers=headers)

    assert lost.status_code == 504
    assert retried.json() == {"journalRunNumber": "JR-00000001", "success": True}
    assert len(backend.state("journal-runs")) == 1


def test_gateway_refusals_are_not_stored(client: TestClient, auth: dict):
    client.post(
        "/_sandbox/faults",
        json={"rules": [{"kind": "rate_limit", "endpoint": "POST /v1/journal-runs", "next": 1}]},
    )
    body = _run_body(open_period(client, auth))
    headers = {**auth, "Idempotency-Key": "throttled-first"}

    throttled = client.post("/v1/journal-runs", json=body, headers=headers)
    retried = client.post("/v1/journal-runs", json=body, headers=headers)

    assert throttled.status_code == 429
    assert retried.status_code == 200


@pytest.mark.vendor_contract_exempt  # an Idempotency-Key where the operation declares none, on purpose
def test_key_on_put_is_ignored(client: TestClient, auth: dict):
    period = open_period(client, auth)
    headers = {**auth, "Idempotency-Key": "put-key"}

    first = client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=headers)
    second = client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=headers)

    assert first.status_code == 200
    assert second.status_code == 400  # really ran twice: a TB is already running
