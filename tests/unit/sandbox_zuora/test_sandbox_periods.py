"""Accounting periods: trial balances and close rules (zuora-api.md section 6)."""

from __future__ import annotations

import re

from sandbox.zuora import ZuoraBackend

from .conftest import ManualClock, TestClient, open_period

FINANCE_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def _periods(client: TestClient, auth: dict) -> list[dict]:
    return client.get("/v1/accounting-periods", headers=auth).json()["accountingPeriods"]


def _get(client: TestClient, auth: dict, period_id: str) -> dict:
    return client.get(f"/v1/accounting-periods/{period_id}", headers=auth).json()


def test_seeded_periods_are_monthly_with_earlier_ones_closed(client: TestClient, auth: dict):
    periods = _periods(client, auth)

    assert [(p["name"], p["status"]) for p in periods] == [
        ("October 2024", "Closed"),
        ("November 2024", "Closed"),
        ("December 2024", "Open"),
    ]
    assert periods[0]["runTrialBalanceStatus"] == "Completed"
    assert FINANCE_DATETIME.match(periods[0]["runTrialBalanceEnd"])
    assert periods[2]["runTrialBalanceStatus"] is None


def test_trial_balance_moves_pending_processing_completed_over_time(
    client: TestClient, auth: dict, clock: ManualClock
):
    period = open_period(client, auth)

    started = client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=auth)
    pending = _get(client, auth, period["id"])
    clock.advance(0.2)
    processing = _get(client, auth, period["id"])
    clock.advance(0.2)
    completed = _get(client, auth, period["id"])

    assert started.json() == {"success": True}
    assert (
        pending["runTrialBalanceStatus"],
        pending["runTrialBalanceStart"],
        pending["runTrialBalanceEnd"],
    ) == ("Pending", None, None)
    assert processing["runTrialBalanceStatus"] == "Processing"
    assert FINANCE_DATETIME.match(processing["runTrialBalanceStart"])
    assert processing["runTrialBalanceEnd"] is None
    assert completed["runTrialBalanceStatus"] == "Completed"
    assert FINANCE_DATETIME.match(completed["runTrialBalanceEnd"])
    assert completed["runTrialBalanceErrorMessage"] is None


def test_trial_balance_in_poll_mode_completes_on_the_nth_read(client: TestClient, auth: dict):
    client.post("/_sandbox/config", json={"trial_balance": {"polls": 3}})
    period = open_period(client, auth)
    client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=auth)

    statuses = [_get(client, auth, period["id"])["runTrialBalanceStatus"] for _ in range(4)]

    assert statuses == ["Pending", "Processing", "Completed", "Completed"]


def test_forced_trial_balance_failure_ends_in_error(client: TestClient, auth: dict, clock: ManualClock):
    period = open_period(client, auth)
    client.post(f"/_sandbox/periods/{period['id']}/fail-trial-balance", json={"message": "FX rate missing"})

    client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=auth)
    clock.advance(1)
    failed = _get(client, auth, period["id"])

    assert failed["runTrialBalanceStatus"] == "Error"
    assert failed["runTrialBalanceErrorMessage"] == "FX rate missing"
    assert failed["runTrialBalanceStart"] is not None
    assert failed["runTrialBalanceEnd"] is None


def test_forced_failure_with_times_fails_once_then_succeeds(
    client: TestClient, auth: dict, clock: ManualClock
):
    period = open_period(client, auth)
    client.post(f"/_sandbox/periods/{period['name']}/fail-trial-balance", json={"times": 1})

    client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=auth)
    clock.advance(1)
    first = _get(client, auth, period["id"])
    client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=auth)
    clock.advance(1)
    second = _get(client, auth, period["id"])

    assert first["runTrialBalanceStatus"] == "Error"
    assert "exchange rate" in first["runTrialBalanceErrorMessage"]
    assert second["runTrialBalanceStatus"] == "Completed"


def test_close_sets_closed_and_runs_a_trial_balance(client: TestClient, auth: dict, clock: ManualClock):
    period = open_period(client, auth)

    closed = client.put(f"/v1/accounting-periods/{period['id']}/close", headers=auth)
    right_after = _get(client, auth, period["id"])
    clock.advance(1)
    later = _get(client, auth, period["id"])

    assert closed.json() == {"success": True}
    assert (right_after["status"], right_after["runTrialBalanceStatus"]) == ("Closed", "Pending")
    assert (later["status"], later["runTrialBalanceStatus"]) == ("Closed", "Completed")


def test_close_while_a_trial_balance_runs_is_refused(client: TestClient, auth: dict):
    period = open_period(client, auth)
    client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=auth)

    response = client.put(f"/v1/accounting-periods/{period['id']}/close", headers=auth)

    assert response.status_code == 400
    assert response.json()["success"] is False
    assert response.json()["reasons"][0]["code"] % 100 == 30


def test_close_needs_every_earlier_period_closed(client: TestClient, auth: dict, clock: ManualClock):
    _october, november, december = _periods(client, auth)
    client.put(f"/v1/accounting-periods/{november['id']}/reopen", headers=auth)
    clock.advance(1)

    response = client.put(f"/v1/accounting-periods/{december['id']}/close", headers=auth)

    assert response.status_code == 400
    assert "November 2024" in response.json()["reasons"][0]["message"]


def test_pending_close_then_close(client: TestClient, auth: dict, clock: ManualClock):
    period = open_period(client, auth)

    client.put(f"/v1/accounting-periods/{period['id']}/pending-close", headers=auth)
    clock.advance(1)
    pending = _get(client, auth, period["id"])
    again = client.put(f"/v1/accounting-periods/{period['id']}/pending-close", headers=auth)
    client.put(f"/v1/accounting-periods/{period['id']}/close", headers=auth)

    assert (pending["status"], pending["runTrialBalanceStatus"]) == ("PendingClose", "Completed")
    assert again.status_code == 400
    assert _get(client, auth, period["id"])["status"] == "Closed"


def test_reopen_only_the_period_right_before_an_open_one(client: TestClient, auth: dict):
    october, november, _ = _periods(client, auth)

    refused = client.put(f"/v1/accounting-periods/{october['id']}/reopen", headers=auth)
    allowed = client.put(f"/v1/accounting-periods/{november['id']}/reopen", headers=auth)

    assert refused.status_code == 400
    assert allowed.json() == {"success": True}
    assert _get(client, auth, november["id"])["status"] == "Open"


def test_run_trial_balance_on_closed_period_is_refused(client: TestClient, auth: dict):
    october = _periods(client, auth)[0]

    response = client.put(f"/v1/accounting-periods/{october['id']}/run-trial-balance", headers=auth)

    assert response.status_code == 400


def test_unknown_period_is_404_modern_and_200_legacy(client: TestClient, auth: dict):
    modern = client.get("/v1/accounting-periods/" + "f" * 32, headers=auth)
    legacy = client.get(
        "/v1/accounting-periods/" + "f" * 32, headers={"Authorization": auth["Authorization"]}
    )

    assert modern.status_code == 404
    assert legacy.status_code == 200
    assert legacy.json()["success"] is False
    assert legacy.json()["reasons"][0]["code"] == 53110040
    assert re.match(r"^[0-9A-F]{16}$", legacy.json()["processId"])


def test_period_list_pages_with_next_page_url(client: TestClient, auth: dict):
    first = client.get("/v1/accounting-periods", params={"pageSize": 2}, headers=auth).json()
    second = client.get(first["nextPage"], headers=auth).json()

    assert [p["name"] for p in first["accountingPeriods"]] == ["October 2024", "November 2024"]
    assert first["nextPage"].startswith("http") and "page=2" in first["nextPage"]
    assert [p["name"] for p in second["accountingPeriods"]] == ["December 2024"]
    assert "nextPage" not in second


def test_trial_balance_completion_is_an_event(
    client: TestClient, auth: dict, clock: ManualClock, backend: ZuoraBackend
):
    period = open_period(client, auth)
    client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=auth)
    clock.advance(1)
    _get(client, auth, period["id"])

    events = [e for e in backend.events_since(0) if e.category == 3210]

    assert [(e.object_id, e.details) for e in events] == [(period["id"], {"trialBalanceStatus": "Completed"})]
