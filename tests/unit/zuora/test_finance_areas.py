"""Accounting periods, journal runs, summary journal entries and the transferred PUTs."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import httpx
import pytest

from shared.errors import Rejected, Transient
from shared.zuora.journal import JournalEntry

PERIOD = {
    "id": "e20b074749d2a38b0149eac2e9550aa9",
    "name": "Dec'16",
    "startDate": "2016-12-01",
    "endDate": "2016-12-31",
    "status": "Closed",
    "runTrialBalanceStatus": "Completed",
    "runTrialBalanceStart": "2017-01-02 00:53:13",
    "runTrialBalanceEnd": "2017-01-02 00:53:36",
    "runTrialBalanceErrorMessage": None,
    "fiscalYear": 2016,
    "fiscalQuarter": 4,
    "notes": "",
    "success": True,
}

ENTRY = {
    "number": "JE-00000006",
    "status": "Created",
    "journalEntryDate": "2016-12-31",
    "accountingPeriodName": "Dec'16",
    "currency": "USD",
    "homeCurrency": "USD",
    "transactionType": "Invoice Item",
    "timePeriodStart": "2016-12-01",
    "timePeriodEnd": "2016-12-31",
    "transferredToAccounting": "No",
    "notes": "note",
    "segments": [{"segmentName": "Seg1", "segmentValue": "seg value"}],
    "journalEntryItems": [
        {
            "accountingCodeName": "Accounts Receivable",
            "type": "Debit",
            "amount": 100.10,
            "homeCurrencyAmount": 100.10,
        },
        {
            "accountingCodeName": "Sales Revenue",
            "type": "Credit",
            "amount": "100.10",
            "homeCurrencyAmount": None,
        },
    ],
}


def test_period_get_parses_trial_balance_fields(make_client, router):
    router.get(f"/v1/accounting-periods/{PERIOD['id']}").mock(return_value=httpx.Response(200, json=PERIOD))
    period = make_client().periods.get(PERIOD["id"])

    assert (period.name, period.status, period.fiscal_year, period.fiscal_quarter) == (
        "Dec'16",
        "Closed",
        2016,
        4,
    )
    assert (period.start_date, period.end_date) == (date(2016, 12, 1), date(2016, 12, 31))
    assert period.run_trial_balance_end == datetime(2017, 1, 2, 0, 53, 36)
    assert period.trial_balance_completed and not period.trial_balance_failed


def test_period_find_by_name_uses_escaped_zoql_then_get(make_client, router):
    query = router.post("/v1/action/query").mock(
        return_value=httpx.Response(
            200,
            json={
                "records": [{"Id": PERIOD["id"], "Name": "Dec'16", "Status": "Closed"}],
                "size": 1,
                "done": True,
            },
        )
    )
    router.get(f"/v1/accounting-periods/{PERIOD['id']}").mock(return_value=httpx.Response(200, json=PERIOD))

    period = make_client().periods.find_by_name("Dec'16")

    assert period is not None and period.id == PERIOD["id"]
    assert json.loads(query.calls.last.request.content)["queryString"].endswith(r"where Name = 'Dec\'16'")


def test_period_find_by_name_absent_is_none(make_client, router):
    router.post("/v1/action/query").mock(
        return_value=httpx.Response(200, json={"records": [], "size": 0, "done": True})
    )
    assert make_client().periods.find_by_name("Jan'99") is None


def test_period_list_follows_next_page(make_client, router):
    route = router.get("/v1/accounting-periods").mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "accountingPeriods": [{**PERIOD, "id": "a", "name": "Nov'16"}],
                    "nextPage": "https://rest.test.zuora.com/v1/accounting-periods?page=2&pageSize=1",
                    "success": True,
                },
            ),
            httpx.Response(200, json={"accountingPeriods": [{**PERIOD, "id": "b"}], "success": True}),
        ]
    )
    names = [p.name for p in make_client().periods.list(page_size=1)]

    assert names == ["Nov'16", "Dec'16"]
    assert [dict(c.request.url.params) for c in route.calls] == [
        {"page": "1", "pageSize": "1"},
        {"page": "2", "pageSize": "1"},
    ]


@pytest.mark.parametrize("action", ["run-trial-balance", "pending-close", "close", "reopen"])
def test_period_actions_are_bodyless_puts_without_idempotency_key(make_client, router, action):
    route = router.put(f"/v1/accounting-periods/p1/{action}").mock(
        return_value=httpx.Response(200, json={"success": True})
    )
    client = make_client()
    method = {
        "run-trial-balance": client.periods.run_trial_balance,
        "pending-close": client.periods.pending_close,
        "close": client.periods.close,
        "reopen": client.periods.reopen,
    }[action]

    assert method("p1") is None
    sent = route.calls.last.request
    assert sent.content == b""
    assert "Idempotency-Key" not in sent.headers


def test_journal_run_create_and_get(make_client, router):
    create = router.post("/v1/journal-runs").mock(
        return_value=httpx.Response(200, json={"journalRunNumber": "JR-00000008", "success": True})
    )
    router.get("/v1/journal-runs/JR-00000008").mock(
        return_value=httpx.Response(
            200,
            json={
                "number": "JR-00000008",
                "status": "Completed",
                "executedOn": "2017-01-03 22:05:12",
                "journalEntryDate": "2016-12-31",
                "targetStartDate": "2016-12-01",
                "targetEndDate": "2016-12-31",
                "aggregateCurrency": False,
                "totalJournalEntryCount": 2,
                "transactionTypes": [{"type": "Invoice Item"}, {"type": "Taxation Item"}],
                "success": True,
            },
        )
    )
    client = make_client()

    number = client.journal_runs.create("Dec'16", date(2016, 12, 31), ["Invoice Item", "Taxation Item"])
    run = client.journal_runs.get(number)

    assert json.loads(create.calls.last.request.content) == {
        "accountingPeriodName": "Dec'16",
        "journalEntryDate": "2016-12-31",
        "transactionTypes": [{"type": "Invoice Item"}, {"type": "Taxation Item"}],
    }
    assert (run.number, run.status, run.total_journal_entry_count) == ("JR-00000008", "Completed", 2)
    assert run.transaction_types == ("Invoice Item", "Taxation Item")
    assert run.completed and not run.failed


def test_journal_entries_list_by_run_pages(make_client, router):
    route = router.get("/v1/journal-entries/journal-runs/JR-00000008").mock(
        side_effect=[
            httpx.Response(
                200,
                json={
                    "journalEntries": [ENTRY],
                    "nextPage": "https://elsewhere.example/v1/journal-entries/journal-runs/JR-00000008?page=2&pageSize=1",
                    "success": True,
                },
            ),
            httpx.Response(
                200, json={"journalEntries": [{**ENTRY, "number": "JE-00000007"}], "success": True}
            ),
        ]
    )
    pages = list(make_client().journal_entries.list_by_run("JR-00000008", page_size=1))

    assert [(p.page, p.next_page, [e.number for e in p.entries]) for p in pages] == [
        (1, 2, ["JE-00000006"]),
        (2, None, ["JE-00000007"]),
    ]
    # The nextPage URL's host is never contacted: only its page number is used.
    assert {c.request.url.host for c in route.calls} == {"rest.test.zuora.com"}


def test_journal_entry_amounts_are_decimals(make_client, router):
    router.get("/v1/journal-entries/JE-00000006").mock(
        return_value=httpx.Response(200, json={**ENTRY, "success": True})
    )
    entry = make_client().journal_entries.get("JE-00000006")

    assert isinstance(entry, JournalEntry)
    assert [i.amount for i in entry.items] == [Decimal("100.10"), Decimal("100.10")]
    assert entry.items[0].home_currency_amount == Decimal("100.10")
    assert entry.items[1].home_currency_amount is None
    assert entry.totals() == (Decimal("100.10"), Decimal("100.10"))
    assert entry.segments == (("Seg1", "seg value"),)
    assert entry.accounting_period_name == "Dec'16"


def test_journal_entry_update_basic_information_is_a_put(make_client, router):
    route = router.put("/v1/journal-entries/JE-00000006/basic-information").mock(
        return_value=httpx.Response(200, json={"success": True})
    )
    make_client().journal_entries.update_basic_information(
        "JE-00000006", transferred_to_accounting="Yes", notes="GL 42"
    )

    sent = route.calls.last.request
    assert json.loads(sent.content) == {"transferredToAccounting": "Yes", "notes": "GL 42"}
    assert "Idempotency-Key" not in sent.headers


def test_journal_entry_update_refuses_unknown_transfer_value(make_client):
    with pytest.raises(ValueError):
        make_client().journal_entries.update_basic_information("JE-1", transferred_to_accounting="Done")


def test_journal_entry_create_sends_exact_amounts_with_key(make_client, router):
    route = router.post("/v1/journal-entries").mock(
        return_value=httpx.Response(200, json={"journalEntryNumber": "JE-00000001", "success": True})
    )
    entry = {
        "accountingPeriodName": "Dec'16",
        "journalEntryDate": "2016-12-31",
        "currency": "USD",
        "journalEntryItems": [
            {"accountingCodeName": "Accounts Receivable", "type": "Credit", "amount": Decimal("400.90")},
            {"accountingCodeName": "Subscription Revenue", "type": "Debit", "amount": Decimal("400.90")},
        ],
    }
    number = make_client().journal_entries.create(entry, idempotency_key=("manual-je", "42"))

    sent = route.calls.last.request
    assert number == "JE-00000001"
    # zuora-sdk CreateJournalEntryRequestItem declares the amount a (decimal) string
    assert [i["amount"] for i in json.loads(sent.content)["journalEntryItems"]] == ["400.90", "400.90"]
    assert sent.headers["Idempotency-Key"].startswith("lb-")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("credit_memo", "/v1/credit-memos/CM00000001", {"transferredToAccounting": "Yes"}),
        ("debit_memo", "/v1/debit-memos/DM00000001", {"transferredToAccounting": "Yes"}),
        ("payment", "/v1/payments/8ad0p", {"financeInformation": {"transferredToAccounting": "Yes"}}),
        ("refund", "/v1/refunds/8ad0r", {"financeInformation": {"transferredToAccounting": "Yes"}}),
    ],
)
def test_transfer_puts(make_client, router, method, path, body):
    route = router.put(path).mock(return_value=httpx.Response(200, json={"success": True}))
    key = path.rsplit("/", 1)[1]
    getattr(make_client().transfers, method)(key)

    assert json.loads(route.calls.last.request.content) == body
    assert "Idempotency-Key" not in route.calls.last.request.headers


def test_transfer_refuses_unknown_value(make_client):
    with pytest.raises(ValueError):
        make_client().transfers.credit_memo("CM1", "Done")


def test_bulk_memo_transfers_go_50_a_call_and_match_answers_by_id(make_client, router):
    ids = [f"8ad0cm{n:04d}" for n in range(60)]

    def answer(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["memos"]
        # Answers in reverse order, the second memo refused: matched by id, not by position.
        rows = [
            {"id": m["id"], "success": m["id"] != ids[1]}
            | ({"reasons": [{"code": "50000040", "message": "not found"}]} if m["id"] == ids[1] else {})
            for m in reversed(sent)
        ]
        return httpx.Response(200, json={"memos": rows, "success": True})

    route = router.put("/v1/credit-memos/bulk").mock(side_effect=answer)

    results = make_client().transfers.credit_memos(ids)

    assert route.call_count == 2
    sizes = [len(json.loads(c.request.content)["memos"]) for c in route.calls]
    assert sizes == [50, 10]
    assert json.loads(route.calls[0].request.content) == {
        "memos": [{"id": i, "transferredToAccounting": "Yes"} for i in ids[:50]]
    }
    assert [r.id for r in results] == ids and [r.index for r in results] == list(range(60))
    assert [r.success for r in results[:3]] == [True, False, True]
    assert str(results[1].errors[0]) == "not found (50000040)"


def test_debit_memos_are_marked_through_the_bulk_path_not_the_due_date_update(make_client, router):
    bulk = router.put("/v1/debit-memos/bulk").mock(
        return_value=httpx.Response(200, json={"memos": [{"id": "a", "success": True}], "success": True})
    )
    due_dates = router.put("/v1/debit-memos").mock(return_value=httpx.Response(200, json={"success": True}))

    results = make_client().transfers.debit_memos(["a"])

    assert [r.success for r in results] == [True]
    assert bulk.call_count == 1 and due_dates.call_count == 0


def test_bulk_memo_answer_that_cannot_be_correlated_is_an_error(make_client, router):
    router.put("/v1/debit-memos/bulk").mock(
        return_value=httpx.Response(200, json={"memos": [{"id": "a", "success": True}], "success": True})
    )
    with pytest.raises(Transient, match="1 results for 2 memos"):
        make_client().transfers.debit_memos(["a", "b"])


def test_bulk_memo_answer_without_a_per_memo_list_is_refused(make_client, router):
    # {"success": true} alone (what PUT /v1/debit-memos, the due-date update, answers) says
    # nothing about any memo: the caller falls back to one PUT per memo.
    router.put("/v1/debit-memos/bulk").mock(return_value=httpx.Response(200, json={"success": True}))
    with pytest.raises(Rejected, match="without a per-memo list"):
        make_client().transfers.debit_memos(["a", "b"])
