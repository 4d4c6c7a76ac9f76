"""The control plane /_sandbox/... (STYLE habit 15)."""

from __future__ import annotations

import pytest

from sandbox.zuora import ZuoraBackend, run
from sandbox.zuora import app as app_module

from .conftest import ManualClock, TestClient


def test_request_counters_count_each_endpoint_including_token(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    invoice = backend.state("invoices")[0]
    client.get("/object-query/invoices", headers=auth)
    client.get("/object-query/invoices", headers=auth)
    client.get(f"/object-query/invoices/{invoice['Id']}", headers=auth)
    client.get("/object-query/invoices", headers={})

    counts = client.get("/_sandbox/requests").json()

    assert counts["counts"] == {
        "POST /oauth/token": 1,
        "GET /object-query/invoices": 3,
        "GET /object-query/invoices/{key}": 1,
    }
    assert counts["statuses"]["GET /object-query/invoices"] == {"200": 2, "401": 1}
    assert counts["total"] == 5


def test_request_counters_reset(client: TestClient, auth: dict):
    client.get("/object-query/accounts", headers=auth)

    reset = client.post("/_sandbox/requests/reset").json()

    assert reset == {"counts": {}, "statuses": {}, "total": 0, "tokens_revoked": 0}


def test_added_invoice_is_posted_and_visible(client: TestClient, auth: dict, backend: ZuoraBackend):
    account = backend.state("accounts")[0]

    created = client.post(
        "/_sandbox/records/invoices",
        json={
            "AccountId": account["Id"],
            "InvoiceDate": "2024-12-20",
            "items": [
                {"SKU": "SKU-ONB-006", "Quantity": 2, "UnitPrice": 150},
                {"ChargeAmount": 10, "TaxAmount": 0},
            ],
        },
    )
    invoice = created.json()
    fetched = client.get(
        f"/object-query/invoices/{invoice['InvoiceNumber']}",
        params={"expand[]": "invoiceitems"},
        headers=auth,
    ).json()

    assert created.status_code == 201
    assert invoice["InvoiceNumber"] == "INV00000061"
    assert invoice["Status"] == "Posted"
    assert invoice["AmountWithoutTax"] == 310
    assert fetched["currency"] == account["Currency"]
    assert sorted(i["chargeAmount"] for i in fetched["invoiceItems"]) == [10, 300]
    assert backend.events_since(0)[-1].category == 1110


def test_added_payment_applies_to_its_invoice(client: TestClient, backend: ZuoraBackend):
    invoice = client.post(
        "/_sandbox/records/invoices", json={"items": [{"ChargeAmount": 100, "TaxAmount": 0}]}
    ).json()

    payment = client.post(
        "/_sandbox/records/payments", json={"invoiceId": invoice["Id"], "Type": "External"}
    ).json()

    assert payment["Amount"] == 100 and payment["Type"] == "External"
    assert backend.state_record("invoices", invoice["Id"])["Balance"] == 0


def test_patch_bumps_updated_date_or_uses_the_given_one(
    client: TestClient, backend: ZuoraBackend, clock: ManualClock
):
    account = backend.state("accounts")[0]
    clock.advance(30)

    bumped = client.patch(
        f"/_sandbox/records/accounts/{account['Id']}", json={"erpAccountId__c": "C-NEW"}
    ).json()
    late = client.patch(
        f"/_sandbox/records/accounts/{account['Id']}",
        json={"Name": "Renamed", "updatedDate": "2024-12-02T10:00:00-08:00"},
    ).json()

    assert bumped["ERPAccountId__c"] == "C-NEW"
    assert bumped["UpdatedDate"] > account["UpdatedDate"]
    assert late["UpdatedDate"] == "2024-12-02T10:00:00-08:00"
    assert [e.kind for e in backend.events_since(0)][-2:] == ["changed", "changed"]


def test_bad_record_input_is_400_and_unknown_is_404(client: TestClient):
    assert client.post("/_sandbox/records/invoices", json={"NoSuchField": 1}).status_code == 400
    assert client.post("/_sandbox/records/nope", json={}).status_code == 404
    assert client.get("/_sandbox/state/invoices/INV99999999").status_code == 404


def test_state_reads_records_periods_and_runs(client: TestClient, auth: dict, backend: ZuoraBackend):
    invoice = backend.state("invoices")[0]

    one = client.get(f"/_sandbox/state/invoices/{invoice['InvoiceNumber']}").json()
    periods = client.get("/_sandbox/state/accounting-periods").json()["records"]
    runs = client.get("/_sandbox/state/journal-runs").json()["records"]

    assert one["Id"] == invoice["Id"]
    assert [p["status"] for p in periods] == ["Closed", "Closed", "Open"]
    assert runs == []


def test_seed_is_deterministic_and_replaces_data(client: TestClient):
    first = client.post("/_sandbox/seed", json={"seed": 99, "invoices": 30, "accounts": 5}).json()
    ids_first = [r["Id"] for r in client.get("/_sandbox/state/invoices").json()["records"]]
    client.post("/_sandbox/seed", json={"seed": 99, "sizes": {"invoices": 30, "accounts": 5}})
    ids_second = [r["Id"] for r in client.get("/_sandbox/state/invoices").json()["records"]]

    assert first["counts"]["Invoice"] == 30
    assert ids_first == ids_second


def test_seed_with_unknown_size_is_400(client: TestClient):
    assert client.post("/_sandbox/seed", json={"seed": 1, "widgets": 3}).status_code == 400


def test_reset_restores_the_startup_seed_and_clears_tokens(
    client: TestClient, auth: dict, backend: ZuoraBackend
):
    original = [r["Id"] for r in backend.state("invoices")]
    client.post("/_sandbox/records/invoices", json={})
    client.post("/_sandbox/faults", json={"rules": [{"kind": "server_error"}]})

    client.post("/_sandbox/reset")

    assert [r["Id"] for r in backend.state("invoices")] == original
    assert client.get("/_sandbox/faults").json() == {"rules": [], "injected": {}}
    assert client.get("/object-query/invoices", headers=auth).status_code == 401


def test_config_rejects_unknown_keys(client: TestClient):
    assert client.post("/_sandbox/config", json={"warp_speed": 9}).status_code == 400
    assert client.post("/_sandbox/config", json={"journal_run": {"polls": 0}}).status_code == 400


def test_clock_advance_finishes_jobs(client: TestClient, auth: dict, backend: ZuoraBackend):
    period = next(p for p in backend.state("accounting-periods") if p["status"] == "Open")
    client.put(f"/v1/accounting-periods/{period['id']}/run-trial-balance", headers=auth)

    client.post("/_sandbox/clock", json={"advance": 5})

    assert backend.state_record("accounting-periods", period["id"])["runTrialBalanceStatus"] == "Completed"


def test_events_list_posted_and_changed_records(client: TestClient, auth: dict, backend: ZuoraBackend):
    payment = client.post("/_sandbox/records/payments", json={"Amount": 25}).json()
    client.put(
        f"/v1/payments/{payment['Id']}",
        headers=auth,
        json={"financeInformation": {"transferredToAccounting": "Yes"}},
    )

    events = client.get("/_sandbox/events", params={"after": 0}).json()["events"]

    assert [(e["kind"], e["object_type"], e["category"]) for e in events] == [
        ("posted", "Payment", 2120),
        ("changed", "Payment", None),
    ]
    assert events[1]["details"] == {"fields": ["TransferredToAccounting"]}


def test_subscribers_receive_events(backend: ZuoraBackend):
    received = []
    backend.subscribe(received.append)

    backend.add_record("credit-memos", {})

    assert [(e.kind, e.category) for e in received] == [("posted", 2720)]


def test_run_serves_a_seeded_app_with_the_given_credentials(monkeypatch: pytest.MonkeyPatch):
    served = {}
    monkeypatch.setattr(
        app_module, "serve_forever", lambda app, *, host, port: served.update(app=app, port=port)
    )

    run(18081, None, "11111111-2222-4333-8444-555555555555", "secret")

    backend = served["app"].state.backend
    assert served["port"] == 18081
    assert backend.client_id == "11111111-2222-4333-8444-555555555555" and backend.client_secret == "secret"
    assert backend.seed_info["seed"] == 1
    assert backend.counts()["Invoice"] == 200
