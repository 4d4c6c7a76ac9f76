"""Journal runs and summary journal entries (zuora-api.md sections 7 and 8)."""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from decimal import Decimal

import pytest

from sandbox.zuora import ZuoraBackend

from .conftest import ManualClock, TestClient, open_period

ALL_TYPES = [
    "Invoice Item",
    "Taxation Item",
    "Debit Memo Item (Charge)",
    "Debit Memo Item (Tax)",
    "Credit Memo Item (Charge)",
    "Credit Memo Item (Tax)",
    "Credit Memo Application Item",
    "Electronic Payment Application Item",
    "External Payment Application Item",
    "Electronic Refund Application Item",
    "External Refund Application Item",
]


def _start_run(client: TestClient, auth: dict, period: dict, types: list[str] | None = None, **extra) -> str:
    body = {
        "accountingPeriodName": period["name"],
        "journalEntryDate": period["endDate"],
        "transactionTypes": [{"type": t} for t in (types or ALL_TYPES)],
        **extra,
    }
    response = client.post("/v1/journal-runs", json=body, headers=auth)
    assert response.status_code == 200, response.text
    return str(response.json()["journalRunNumber"])


def _entries(client: TestClient, auth: dict, run: str) -> list[dict]:
    body = client.get(
        f"/v1/journal-entries/journal-runs/{run}", params={"pageSize": 300}, headers=auth
    ).json()
    assert "nextPage" not in body
    return list(body["journalEntries"])


def _completed_run(client: TestClient, auth: dict, clock: ManualClock, types: list[str] | None = None) -> str:
    run = _start_run(client, auth, open_period(client, auth), types)
    clock.advance(1)
    assert client.get(f"/v1/journal-runs/{run}", headers=auth).json()["status"] == "Completed"
    return run


def test_journal_run_moves_pending_processing_completed(client: TestClient, auth: dict, clock: ManualClock):
    run = _start_run(client, auth, open_period(client, auth))

    seen = [client.get(f"/v1/journal-runs/{run}", headers=auth).json()]
    clock.advance(0.2)
    seen.append(client.get(f"/v1/journal-runs/{run}", headers=auth).json())
    clock.advance(0.2)
    seen.append(client.get(f"/v1/journal-runs/{run}", headers=auth).json())

    assert run == "JR-00000001"
    assert [s["status"] for s in seen] == ["Pending", "Processing", "Completed"]
    assert seen[0]["totalJournalEntryCount"] == 0
    assert seen[2]["totalJournalEntryCount"] > 0
    assert seen[2]["targetStartDate"] == "2024-12-01" and seen[2]["targetEndDate"] == "2024-12-31"


def test_entries_are_invisible_until_the_run_completes(client: TestClient, auth: dict):
    run = _start_run(client, auth, open_period(client, auth))

    assert _entries(client, auth, run) == []


def test_every_entry_balances_in_amount_and_home_amount(client: TestClient, auth: dict, clock: ManualClock):
    entries = _entries(client, auth, _completed_run(client, auth, clock))

    assert entries
    for entry in entries:
        for key in ("amount", "homeCurrencyAmount"):
            sides: dict[str, Decimal] = defaultdict(Decimal)
            for item in entry["journalEntryItems"]:
                sides[item["type"]] += Decimal(str(item[key]))
            assert sides["Debit"] == sides["Credit"] > 0, (entry["number"], key)
    assert [e["number"] for e in entries] == [f"JE-{n:08d}" for n in range(1, len(entries) + 1)]


def test_invoice_item_entries_sum_the_posted_invoices_per_currency(
    client: TestClient, auth: dict, clock: ManualClock, backend: ZuoraBackend
):
    posted = [i for i in backend.state("invoices") if i["Status"] == "Posted"]
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for invoice in posted:
        expected[invoice["Currency"]] += Decimal(str(invoice["AmountWithoutTax"]))

    entries = _entries(client, auth, _completed_run(client, auth, clock, ["Invoice Item"]))

    booked: dict[str, Decimal] = defaultdict(Decimal)
    for entry in entries:
        assert entry["transactionType"] == "Invoice Item"
        receivable = [
            i for i in entry["journalEntryItems"] if i["accountingCodeName"] == "Accounts Receivable"
        ]
        assert [i["type"] for i in receivable] == ["Debit"]
        booked[entry["currency"]] += Decimal(str(receivable[0]["amount"]))
    assert booked == expected


def test_entries_carry_segments_and_period(client: TestClient, auth: dict, clock: ManualClock):
    entry = _entries(client, auth, _completed_run(client, auth, clock))[0]

    assert entry["accountingPeriodName"] == "December 2024"
    assert entry["segments"][0]["segmentName"] == "Region"
    assert entry["transferredToAccounting"] == "No"
    assert entry["status"] == "Created"
    assert {
        "accountingCodeName",
        "accountingCodeType",
        "glAccountName",
        "glAccountNumber",
        "type",
        "amount",
        "homeCurrencyAmount",
    } == set(entry["journalEntryItems"][0])


def test_a_second_run_books_nothing_already_journalized(client: TestClient, auth: dict, clock: ManualClock):
    _completed_run(client, auth, clock)

    second = _completed_run(client, auth, clock)

    assert _entries(client, auth, second) == []


def test_forced_journal_run_error_books_nothing(client: TestClient, auth: dict, clock: ManualClock):
    client.post("/_sandbox/journal-runs/fail-next", json={"count": 1})
    failed = _start_run(client, auth, open_period(client, auth))
    clock.advance(1)

    status = client.get(f"/v1/journal-runs/{failed}", headers=auth).json()["status"]
    retry = _completed_run(client, auth, clock)

    assert status == "Error"
    assert _entries(client, auth, failed) == []
    assert _entries(client, auth, retry)


@pytest.mark.vendor_contract_exempt  # ends with a pageSize above every limit, on purpose
def test_entry_list_pages_by_eight_with_next_page_url(client: TestClient, auth: dict, clock: ManualClock):
    run = _completed_run(client, auth, clock)
    total = client.get(f"/v1/journal-runs/{run}", headers=auth).json()["totalJournalEntryCount"]

    first = client.get(f"/v1/journal-entries/journal-runs/{run}", headers=auth).json()
    second = client.get(first["nextPage"], headers=auth).json()
    too_big = client.get(f"/v1/journal-entries/journal-runs/{run}", params={"pageSize": 301}, headers=auth)

    assert total > 8
    assert len(first["journalEntries"]) == 8
    assert "page=2" in first["nextPage"] and "pageSize=8" in first["nextPage"]
    assert second["journalEntries"][0]["number"] == "JE-00000009"
    assert too_big.status_code == 400


@pytest.mark.vendor_contract_exempt  # invalid journal runs, on purpose
@pytest.mark.parametrize(
    "body, code",
    [
        ({"journalEntryDate": "2024-12-31", "transactionTypes": [{"type": "Invoice Item"}]}, 22),
        ({"accountingPeriodName": "December 2024", "transactionTypes": [{"type": "Invoice Item"}]}, 22),
        (
            {
                "accountingPeriodName": "December 2024",
                "journalEntryDate": "2024-12-31",
                "transactionTypes": [{"type": "Bogus Item"}],
            },
            20,
        ),
        (
            {
                "accountingPeriodName": "December 2024",
                "journalEntryDate": "2024-12-31",
                "transactionTypes": [{"type": "Electronic Payment"}],
            },
            20,
        ),  # not enabled on this tenant
        (
            {
                "accountingPeriodName": "December 2024",
                "journalEntryDate": "2024-12-31",
                "targetStartDate": "2024-12-02",
                "transactionTypes": [{"type": "Invoice Item"}],
            },
            20,
        ),
        (
            {
                "accountingPeriodName": "No Such Period",
                "journalEntryDate": "2024-12-31",
                "transactionTypes": [{"type": "Invoice Item"}],
            },
            20,
        ),
    ],
)
def test_invalid_journal_run_requests_are_rejected(client: TestClient, auth: dict, body: dict, code: int):
    response = client.post("/v1/journal-runs", json=body, headers=auth)

    assert response.status_code == 400
    assert response.json()["reasons"][0]["code"] % 100 == code


def test_run_by_target_dates_without_period_name(client: TestClient, auth: dict, clock: ManualClock):
    response = client.post(
        "/v1/journal-runs",
        headers=auth,
        json={
            "journalEntryDate": "2024-12-31",
            "targetStartDate": "2024-12-01",
            "targetEndDate": "2024-12-15",
            "transactionTypes": [{"type": "Invoice Item"}],
        },
    )
    clock.advance(1)

    run = client.get(f"/v1/journal-runs/{response.json()['journalRunNumber']}", headers=auth).json()

    assert (run["status"], run["targetEndDate"]) == ("Completed", "2024-12-15")


def test_mark_entry_transferred_sets_who_and_when(client: TestClient, auth: dict, clock: ManualClock):
    entry = _entries(client, auth, _completed_run(client, auth, clock))[0]

    updated = client.put(
        f"/v1/journal-entries/{entry['number']}/basic-information",
        headers=auth,
        json={"transferredToAccounting": "Yes", "notes": "GL batch 42"},
    )
    detail = client.get(f"/v1/journal-entries/{entry['number']}", headers=auth).json()

    assert updated.json() == {"success": True}
    assert (detail["transferredToAccounting"], detail["notes"], detail["success"]) == (
        "Yes",
        "GL batch 42",
        True,
    )
    assert detail["transferredBy"] and detail["transferDateTime"]


def test_leaving_yes_needs_the_override_permission(client: TestClient, auth: dict, clock: ManualClock):
    entry = _entries(client, auth, _completed_run(client, auth, clock))[0]
    url = f"/v1/journal-entries/{entry['number']}/basic-information"
    client.put(url, headers=auth, json={"transferredToAccounting": "Yes"})

    again = client.put(url, headers=auth, json={"transferredToAccounting": "Yes"})
    refused = client.put(url, headers=auth, json={"transferredToAccounting": "No"})
    client.post("/_sandbox/config", json={"override_transferred_permission": True})
    allowed = client.put(url, headers=auth, json={"transferredToAccounting": "No"})

    assert again.status_code == 200
    assert refused.status_code == 403
    assert set(refused.json()) == {"code", "message"}
    assert allowed.status_code == 200


def test_cancel_run_with_a_transferred_entry_stays_completed(
    client: TestClient, auth: dict, clock: ManualClock
):
    run = _completed_run(client, auth, clock)
    entries = _entries(client, auth, run)
    client.put(
        f"/v1/journal-entries/{entries[0]['number']}/basic-information",
        headers=auth,
        json={"transferredToAccounting": "Yes"},
    )

    client.put(f"/v1/journal-runs/{run}/cancel", headers=auth)
    during = client.get(f"/v1/journal-runs/{run}", headers=auth).json()["status"]
    clock.advance(1)
    after = client.get(f"/v1/journal-runs/{run}", headers=auth).json()["status"]
    statuses = [e["status"] for e in _entries(client, auth, run)]

    assert during == "CancelInprogress"
    assert after == "Completed"
    assert statuses[0] == "Created" and set(statuses[1:]) == {"Cancelled"}


def test_cancel_then_delete_a_run(client: TestClient, auth: dict, clock: ManualClock):
    run = _completed_run(client, auth, clock)

    client.put(f"/v1/journal-runs/{run}/cancel", headers=auth)
    clock.advance(1)
    cancelled = client.get(f"/v1/journal-runs/{run}", headers=auth).json()["status"]
    client.delete(f"/v1/journal-runs/{run}", headers=auth)
    clock.advance(1)
    gone = client.get(f"/v1/journal-runs/{run}", headers=auth)
    rerun = _completed_run(client, auth, clock)

    assert cancelled == "Cancelled"
    assert gone.status_code == 404
    assert _entries(client, auth, rerun)  # cancelled entries free their transactions


def _manual(**overrides) -> dict:
    body = {
        "accountingPeriodName": "December 2024",
        "journalEntryDate": "2024-12-20",
        "currency": "EUR",
        "notes": "accrual",
        "segments": [{"segmentName": "Region", "segmentValue": "EMEA"}],
        "journalEntryItems": [
            {
                "accountingCodeName": "Accounts Receivable",
                "type": "Debit",
                "amount": 400.9,
                "homeCurrencyAmount": 432.97,
            },
            {
                "accountingCodeName": "Sales Revenue",
                "type": "Credit",
                "amount": 400.9,
                "homeCurrencyAmount": 432.97,
            },
        ],
    }
    body.update(overrides)
    return body


def test_manual_entry_is_created(client: TestClient, auth: dict):
    response = client.post("/v1/journal-entries", json=_manual(), headers=auth)

    number = response.json()["journalEntryNumber"]
    detail = client.get(f"/v1/journal-entries/{number}", headers=auth).json()
    assert response.json() == {"journalEntryNumber": "JE-00000001", "success": True}
    assert detail["currency"] == "EUR" and detail["journalEntryItems"][0]["amount"] == 400.9


@pytest.mark.parametrize(
    "overrides, status",
    [
        (
            {
                "journalEntryItems": [
                    {
                        "accountingCodeName": "Accounts Receivable",
                        "type": "Debit",
                        "amount": 10,
                        "homeCurrencyAmount": 10,
                    },
                    {
                        "accountingCodeName": "Sales Revenue",
                        "type": "Credit",
                        "amount": 9,
                        "homeCurrencyAmount": 10,
                    },
                ]
            },
            400,
        ),
        (
            {
                "journalEntryItems": [
                    {"accountingCodeName": "Accounts Receivable", "type": "Debit", "amount": 10},
                    {"accountingCodeName": "Sales Revenue", "type": "Credit", "amount": 10},
                ]
            },
            400,
        ),
        ({"currency": "JPY"}, 400),
        ({"segments": []}, 400),
        ({"accountingPeriodName": "November 2024"}, 400),
        (
            {
                "journalEntryItems": [
                    {
                        "accountingCodeName": "No Such Code",
                        "type": "Debit",
                        "amount": 1,
                        "homeCurrencyAmount": 1,
                    }
                ]
            },
            400,
        ),
    ],
)
def test_manual_entry_validation(client: TestClient, auth: dict, overrides: dict, status: int):
    response = client.post("/v1/journal-entries", json=_manual(**overrides), headers=auth)

    assert response.status_code == status
    assert response.json()["success"] is False


def test_manual_entry_without_home_amounts_when_fx_is_off(client: TestClient, auth: dict):
    client.post("/_sandbox/config", json={"fx_enabled": False})
    items = [
        {"accountingCodeName": "Cash", "type": "Debit", "amount": 5},
        {"accountingCodeName": "Sales Revenue", "type": "Credit", "amount": 5},
    ]

    plain = client.post("/v1/journal-entries", json=_manual(journalEntryItems=items), headers=auth)
    with_home = client.post("/v1/journal-entries", json=_manual(), headers=auth)

    assert plain.status_code == 200
    assert with_home.status_code == 400


def test_gzipped_request_body_is_accepted(client: TestClient, auth: dict):
    period = open_period(client, auth)
    body = json.dumps(
        {
            "accountingPeriodName": period["name"],
            "journalEntryDate": period["endDate"],
            "transactionTypes": [{"type": "Invoice Item"}],
        }
    ).encode()

    response = client.post(
        "/v1/journal-runs",
        content=gzip.compress(body),
        headers={**auth, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )

    assert response.json() == {"journalRunNumber": "JR-00000001", "success": True}


def test_account_segmentation_books_one_entry_per_account_and_type(
    client: TestClient, auth: dict, clock: ManualClock, backend: ZuoraBackend
):
    by_region = _entries(client, auth, _completed_run(client, auth, clock))
    assert client.post("/_sandbox/config", json={"segment_names": ["Region", "Account"]}).status_code == 200
    client.put(f"/v1/journal-runs/{_completed_run_number(client, auth)}/cancel", headers=auth)
    clock.advance(1)

    by_account = _entries(client, auth, _completed_run(client, auth, clock))

    numbers = {a["AccountNumber"] for a in backend.state("accounts")}
    keys = [
        (e["transactionType"], e["currency"], tuple(s["segmentValue"] for s in e["segments"]))
        for e in by_account
    ]
    assert len(keys) == len(set(keys))  # one entry per (type, currency, region, account)
    assert {e["segments"][1]["segmentName"] for e in by_account} == {"Account"}
    assert {e["segments"][1]["segmentValue"] for e in by_account} <= numbers
    assert len(by_account) > len(by_region)
    # The same transactions, only split finer: the totals per type and currency are unchanged.
    assert _totals(by_account) == _totals(by_region)


def _completed_run_number(client: TestClient, auth: dict) -> str:
    runs = client.get("/_sandbox/state/journal-runs").json()["records"]
    return str(runs[-1]["number"])


def _totals(entries: list[dict]) -> dict[tuple[str, str, str], Decimal]:
    totals: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for entry in entries:
        for item in entry["journalEntryItems"]:
            totals[(entry["transactionType"], entry["currency"], item["type"])] += Decimal(
                str(item["amount"])
            )
    return dict(totals)
