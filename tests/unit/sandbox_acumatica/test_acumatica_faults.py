"""Fault injection and the control plane (STYLE habit 15; acumatica-api.md section 9 item 10)."""

from __future__ import annotations

import pytest

from sandbox.acumatica import ConnectionDropped

from .conftest import BASE, wrap


def _faults(api, *rules, seed=None):
    body = {"rules": list(rules), "replace": True}
    if seed is not None:
        body["seed"] = seed
    response = api.client.post("/_sandbox/faults", json=body)
    assert response.status_code == 200, response.text


def test_status_fault_answers_the_next_n_calls_with_500(api):
    _faults(api, {"kind": "status", "status": 500, "next": 2, "method": "GET", "entity": "Currency"})

    statuses = [api.get("Currency").status_code for _ in range(3)]

    assert statuses == [500, 500, 200]
    assert api.get("Currency").status_code == 200
    assert api.client.get("/_sandbox/counts").json()["faults_injected"] == {"status": 2}


def test_status_fault_body_is_an_http_error(api):
    _faults(api, {"kind": "status", "status": 500, "next": 1})

    body = api.get("Currency").json()

    assert set(body) == {"message", "exceptionMessage", "exceptionType", "stackTrace"}


def test_429_fault_is_plain_text_without_retry_after(api):
    _faults(api, {"kind": "status", "status": 429, "next": 1})

    response = api.get("Currency")

    assert response.status_code == 429
    assert response.headers["content-type"].startswith("text/plain")
    assert "retry-after" not in response.headers


def test_fault_only_matches_its_method_and_entity(api):
    _faults(api, {"kind": "status", "status": 503, "next": 1, "method": "PUT", "entity": "Invoice"})

    assert api.get("Currency").status_code == 200
    api.customer()
    assert api.invoice().status_code == 503
    assert api.backend.state("Invoice") == []


def test_share_fault_is_repeatable_with_the_same_seed(api):
    rule = {"kind": "status", "status": 500, "share": 0.5, "entity": "Currency"}

    patterns = []
    for _ in range(2):
        _faults(api, rule, seed=7)
        patterns.append([api.get("Currency").status_code for _ in range(20)])

    assert patterns[0] == patterns[1]
    assert 0 < patterns[0].count(500) < 20


def test_lock_violation_fault(api):
    _faults(api, {"kind": "lock_violation", "next": 1, "entity": "Invoice"})
    api.customer()

    response = api.invoice()

    assert response.status_code == 500
    assert response.json()["exceptionType"] == "PX.Data.PXLockViolationException"
    assert response.json()["exceptionMessage"] == (
        "Another process has updated the 'AR Invoice' record. Your changes will be lost."
    )


def test_commit_then_drop_stores_the_record_and_gives_no_answer_in_process(api):
    api.customer()
    _faults(api, {"kind": "commit_then_drop", "next": 1, "entity": "Invoice"})

    with pytest.raises(ConnectionDropped):
        api.invoice("INV-1")

    assert [row["CustomerOrder"] for row in api.backend.state("Invoice")] == ["INV-1"]
    assert api.backend.counts()["dropped_connections"] == 1


def test_commit_then_drop_fires_only_on_creates(api):
    api.customer()
    created = api.invoice("INV-1").json()
    _faults(api, {"kind": "commit_then_drop", "next": 1, "entity": "Invoice"})

    updated = api.client.put(f"{BASE}/Invoice", json={"id": created["id"], **wrap({"Description": "x"})})

    assert updated.status_code == 200
    assert api.client.get("/_sandbox/faults").json()["rules"][0]["fired"] == 0


def test_drop_fault_drops_without_doing_the_work(api):
    api.customer()
    _faults(api, {"kind": "drop", "next": 1, "entity": "Invoice"})

    with pytest.raises(ConnectionDropped):
        api.invoice("INV-1")

    assert api.backend.state("Invoice") == []


def test_bad_fault_rule_is_400(api):
    response = api.client.post("/_sandbox/faults", json={"rules": [{"kind": "explode"}]})

    assert response.status_code == 400
    assert "kind must be one of" in response.json()["error"]


def test_posted_faults_are_added_unless_replace(api):
    api.client.post("/_sandbox/faults", json={"rules": [{"kind": "latency", "latency_ms": 1}]})
    api.client.post("/_sandbox/faults", json={"rules": [{"kind": "status", "next": 1}]})
    added = api.client.get("/_sandbox/faults").json()["rules"]
    api.client.post("/_sandbox/faults", json={"rules": [{"kind": "drop", "next": 1}], "replace": True})
    replaced = api.client.get("/_sandbox/faults").json()["rules"]

    assert [rule["kind"] for rule in added] == ["latency", "status"]
    assert [rule["kind"] for rule in replaced] == ["drop"]


def test_clear_faults(api):
    _faults(api, {"kind": "status", "status": 500})

    api.client.delete("/_sandbox/faults")

    assert api.get("Currency").status_code == 200


def test_config_rejects_unknown_keys_and_bad_types(api):
    unknown = api.client.post("/_sandbox/config", json={"max_session": 3})
    bad_type = api.client.post("/_sandbox/config", json={"max_sessions": "three"})
    good = api.client.post("/_sandbox/config", json={"max_sessions": 3, "requests_per_minute": None})

    assert (unknown.status_code, bad_type.status_code, good.status_code) == (400, 400, 200)
    assert good.json()["max_sessions"] == 3


def test_reset_forgets_records_and_reseeds(api):
    api.customer()
    api.invoice()

    api.client.post("/_sandbox/reset")

    assert api.backend.state("Invoice") == []
    assert api.backend.state("Customer") == []
    assert len(api.backend.state("Currency")) == 4


def test_seed_adds_reference_data_and_customers(api):
    response = api.client.post(
        "/_sandbox/seed",
        json={
            "accounts": [{"AccountCD": "40100", "Description": "Usage", "Type": "Income"}],
            "currencies": [{"CurrencyID": "JPY", "DecimalPrecision": 0}],
            "branches": ["EU"],
            "years": [2030],
            "customers": [{"CustomerID": "ZA1", "CustomerName": "Zed", "CurrencyID": "EUR"}],
        },
    )

    assert response.json() == {
        "added": {"accounts": 1, "currencies": 1, "branches": 1, "years": 1, "customers": 1}
    }
    assert api.get("Customer/ZA1").json()["CurrencyID"] == {"value": "EUR"}
    assert api.get("Account/40100").json()["Type"] == {"value": "Income"}


def test_state_endpoints_return_unwrapped_records(api):
    api.customer()
    api.invoice("INV-1", amount=12.5)

    listed = api.client.get("/_sandbox/state/Invoice").json()
    one = api.client.get("/_sandbox/state/Invoice/Invoice/AR000001").json()
    missing = api.client.get("/_sandbox/state/Invoice/Invoice/AR999999")

    assert listed == [one]
    assert (one["ReferenceNbr"], one["Amount"], one["Status"], one["Released"]) == (
        "AR000001",
        12.5,
        "Balanced",
        False,
    )
    assert one["Details"][0]["Amount"] == 12.5
    assert missing.status_code == 404


def test_open_period_reopens_a_closed_period(api):
    api.customer()
    api.client.post("/_sandbox/close-period", json={"period": "062025"})

    reopened = api.client.post("/_sandbox/open-period", json={"period": "062025"}).json()

    assert reopened["Status"] == "Open"
    assert api.invoice().status_code == 200


def test_close_period_of_unknown_period_is_400(api):
    response = api.client.post("/_sandbox/close-period", json={"period": "132025"})

    assert response.status_code == 400
    assert "error" in response.json()


def test_clock_advance_ages_sessions(api):
    moved = api.client.post("/_sandbox/clock", json={"advance": 601})

    assert moved.status_code == 200
    assert api.get("Currency").status_code == 401


def test_health_and_unknown_state_entity(api):
    assert api.client.get("/_sandbox/health").json() == {"ok": True, "endpoint": "Default/24.200.001"}
    assert api.client.get("/_sandbox/state/SalesOrder").status_code == 404
