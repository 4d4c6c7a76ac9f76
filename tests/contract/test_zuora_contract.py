"""Zuora's own description (zuora-sdk 3.21.0, generated from Zuora's OpenAPI document) judges the
client and the sandbox.

Every exchange below goes over loopback HTTP through the sandbox's contract check
(:mod:`sandbox.zuora.contract`), and the suite's ``vendor_contracts`` fixture fails a test
during which one breaks the description. Here the ledgerbridge client runs every Zuora operation it
uses, then zuora-sdk's own API classes run the same operations and must read every answer into
their models; and the check is shown to bite.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from sandbox.contract import RECORDER, HttpRequest, HttpResponse
from sandbox.server import ThreadedServer
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes, create_app
from sandbox.zuora.contract import ZuoraChecker, find_operation, operation
from shared.connections import ZuoraTarget
from shared.item_level.streams import STREAMS
from shared.zuora import ZuoraClient
from shared.zuora.object_query import ObjectQuery, condition

pytestmark = pytest.mark.redis

REGION = "North America"  # a value of the sandbox's segmentation rule (catalog.REGIONS)
SIZES = Sizes(accounts=6, invoices=30, payments=15, refunds=3, credit_memos=4, debit_memos=3, tie_count=2)

# Every zuora-sdk operation the ledgerbridge client sends (shared/zuora), by the SDK's own names.
CLIENT_OPERATIONS = frozenset(
    {
        "OAuthApi.create_token",
        "ActionsApi.action_post_query",
        "ActionsApi.action_postquery_more",
        "ActionsApi.action_postupdate",
        "AccountingCodesApi.get_all_accounting_codes",
        "AccountingPeriodsApi.get_all_accounting_periods",
        "AccountingPeriodsApi.get_accounting_period",
        "AccountingPeriodsApi.run_trial_balance",
        "AccountingPeriodsApi.pending_close_accounting_period",
        "AccountingPeriodsApi.close_accounting_period",
        "AccountingPeriodsApi.reopen_accounting_period",
        "JournalRunsApi.create_journal_run",
        "JournalRunsApi.get_journal_run",
        "JournalRunsApi.cancel_journal_run",
        "SummaryJournalEntriesApi.get_all_summary_journal_entries",
        "SummaryJournalEntriesApi.get_summary_journal_entry",
        "SummaryJournalEntriesApi.update_basic_summary_journal_entry",
        "SummaryJournalEntriesApi.create_summary_journal_entry",
        "CreditMemosApi.bulk_update_credit_memos",
        "DebitMemosApi.bulk_update_debit_memos",
        "CreditMemosApi.update_credit_memo",
        "DebitMemosApi.update_debit_memo",
        "PaymentsApi.update_payment",
        "RefundsApi.update_refund",
        *(
            f"ObjectQueriesApi.query_{name}"
            for name in (
                "accounts",
                "invoices",
                "invoice_items",
                "payments",
                "refunds",
                "credit_memos",
                "credit_memo_items",
                "debit_memos",
                "debit_memo_items",
            )
        ),
        "ObjectQueriesApi.query_invoice_by_key",
    }
)


@pytest.fixture
def sandbox() -> Iterator[ThreadedServer]:
    app = create_app(seed=7, sizes=SIZES, contracts=True)
    with ThreadedServer(app) as server:
        httpx.post(
            f"{server.url}/_sandbox/config", json={"trial_balance": {"polls": 1}, "journal_run": {"polls": 1}}
        )
        yield server


@pytest.fixture
def client(sandbox, real_redis, connection_name) -> Iterator[ZuoraClient]:
    target = ZuoraTarget(
        base_url=sandbox.url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET
    )
    with ZuoraClient(target, connection=connection_name, redis=real_redis) as zuora:
        yield zuora


def _seen() -> set[str]:
    return {op for (api, op), count in RECORDER.operations.items() if api == "zuora" and count}


def _open_period(zuora: ZuoraClient):
    return next(p for p in zuora.periods.list() if p.status == "Open")


def test_the_client_runs_every_operation_it_uses_within_zuoras_description(client: ZuoraClient, sandbox):
    RECORDER.operations.clear()
    zuora = client

    # Object Query: every object the streams read, with filter, sort, expand, fields and a cursor.
    since = datetime(2020, 1, 1, tzinfo=UTC)
    for stream in STREAMS.values():
        query = stream.query(since, page_size=5)
        pages = list(zuora.objects.pages(query))
        assert pages and pages[0].cursor is None
        rows = [row for page in pages for row in page.data]
        if stream.items is not None and rows:
            items = list(zuora.objects.rows(stream.items_query(str(rows[0]["id"]))))
            assert items
    ids = list(
        zuora.objects.rows(ObjectQuery("invoices", fields=("id", "updateddate"), sort="updateddate.ASC"))
    )
    invoice = zuora.objects.get("invoices", str(ids[0]["id"]), expand=("invoiceitems",))
    assert invoice["id"] == ids[0]["id"]
    by_id = list(zuora.objects.rows(STREAMS["accounts"].query_ids([str(r["accountId"]) for r in [invoice]])))
    assert len(by_id) == 1

    # Accounting codes: the names of the ids on memo items.
    memo = next(zuora.objects.rows(STREAMS["credit_memos"].query(since)))
    code_id = memo["creditMemoItems"][0]["recognizedRevenueAccountingCodeId"]
    assert zuora.accounting_codes.name_of(code_id)

    # Marking: Actions for invoices, the bulk and single REST PUTs for memos, payments and refunds.
    results = zuora.actions.update("Invoice", [{"Id": str(ids[0]["id"]), "TransferredToAccounting": "Yes"}])
    assert [r.success for r in results] == [True]
    credit_ids = [str(r["id"]) for r in zuora.objects.rows(ObjectQuery("credit-memos", fields=("id",)))]
    debit_ids = [str(r["id"]) for r in zuora.objects.rows(ObjectQuery("debit-memos", fields=("id",)))]
    assert all(r.success for r in zuora.transfers.credit_memos(credit_ids[:2]))
    assert all(r.success for r in zuora.transfers.debit_memos(debit_ids[:2]))
    zuora.transfers.credit_memo(credit_ids[-1])
    zuora.transfers.debit_memo(debit_ids[-1])
    payment = next(zuora.objects.rows(ObjectQuery("payments", fields=("id",))))
    refund = next(zuora.objects.rows(ObjectQuery("refunds", fields=("id",))))
    zuora.transfers.payment(str(payment["id"]))
    zuora.transfers.refund(str(refund["id"]))

    # The close: ZOQL, periods, trial balance, journal runs and entries.
    period = _open_period(zuora)
    assert zuora.periods.find_by_name(period.name) is not None  # action/query
    assert (
        len(list(zuora.actions.query("select Id, Name from AccountingPeriod", batch_size=1))) > 1
    )  # queryMore
    # A manual summary journal entry, in the open period.
    number = zuora.journal_entries.create(
        {
            "accountingPeriodName": period.name,
            "journalEntryDate": period.start_date.isoformat(),
            "currency": "USD",
            "segments": [{"segmentName": "Region", "segmentValue": REGION}],
            "journalEntryItems": [
                {
                    "accountingCodeName": "Accounts Receivable",
                    "type": "Debit",
                    "amount": Decimal("12.50"),
                    "homeCurrencyAmount": Decimal("12.50"),
                },
                {
                    "accountingCodeName": "Sales Revenue",
                    "type": "Credit",
                    "amount": Decimal("12.50"),
                    "homeCurrencyAmount": Decimal("12.50"),
                },
            ],
        }
    )
    assert number.startswith("JE-")
    zuora.periods.run_trial_balance(period.id)
    assert zuora.periods.get(period.id).trial_balance_completed
    zuora.periods.pending_close(period.id)
    zuora.periods.get(period.id)
    zuora.periods.close(period.id)
    zuora.periods.get(period.id)
    run = zuora.journal_runs.create(period.name, period.end_date, ["Invoice Item", "Taxation Item"])
    assert zuora.journal_runs.get(run).completed
    entries = [e for page in zuora.journal_entries.list_by_run(run) for e in page.entries]
    assert entries
    entry = zuora.journal_entries.get(entries[0].number)
    zuora.journal_entries.update_basic_information(entry.number, transferred_to_accounting="Yes")
    zuora.journal_runs.cancel(run)  # allowed from Completed; a run whose entries are transferred stays

    zuora.periods.reopen(period.id)

    missing = CLIENT_OPERATIONS - _seen()
    assert not missing, f"not exercised against the sandbox: {sorted(missing)}"


def test_every_listed_operation_is_one_of_zuoras(client):
    for op_id in CLIENT_OPERATIONS:
        assert operation(op_id).id == op_id


def test_the_sdk_client_runs_every_operation_against_the_sandbox(sandbox):
    """zuora-sdk's own API classes, configured for the sandbox, run what ledgerbridge uses; each
    answer is read into the SDK's response model."""
    import zuora_sdk
    from zuora_sdk import models as m

    with zuora_sdk.ApiClient(zuora_sdk.Configuration(host=sandbox.url)) as api:
        token = zuora_sdk.OAuthApi(api).create_token(
            client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, grant_type="client_credentials"
        )
        assert isinstance(token, m.TokenResponse) and token.access_token
        api.default_headers["Authorization"] = f"Bearer {token.access_token}"
        version = "2025-08-12"

        objects = zuora_sdk.ObjectQueriesApi(api)
        accounts = objects.query_accounts(
            zuora_version=version,
            page_size=2,
            sort=["updateddate.ASC"],
            expand=["billto"],
            filter=["status.EQ:Active"],
        )
        assert isinstance(accounts, m.QueryAccountsResponse) and accounts.data and accounts.next_page
        more = objects.query_accounts(
            zuora_version=version, page_size=2, sort=["updateddate.ASC"], cursor=accounts.next_page
        )
        assert {a.id for a in more.data}.isdisjoint({a.id for a in accounts.data})
        invoices = objects.query_invoices(
            zuora_version=version,
            page_size=5,
            expand=["invoiceitems"],
            filter=["status.EQ:Posted"],
            sort=["updateddate.ASC"],
        )
        assert invoices.data and invoices.data[0].invoice_items
        assert (
            objects.query_invoice_by_key(invoices.data[0].id, zuora_version=version).id == invoices.data[0].id
        )
        items = objects.query_invoice_items(
            zuora_version=version, filter=[f"invoiceid.EQ:{invoices.data[0].id}"]
        )
        assert items.data and all(i.accounting_code for i in items.data)
        payments = objects.query_payments(
            zuora_version=version, expand=["paymentapplications", "paymentmethod"]
        )
        applied = [a for p in payments.data for a in (p.payment_applications or [])]
        assert applied and all(a.apply_amount is not None for a in applied)
        refunds = objects.query_refunds(zuora_version=version, expand=["refundapplications"])
        assert [a.apply_amount for r in refunds.data for a in (r.refund_applications or [])]
        credit = objects.query_credit_memos(
            zuora_version=version, expand=["creditmemoitems", "creditmemoapplications"]
        )
        credit_item = credit.data[0].credit_memo_items[0]
        assert credit_item.recognized_revenue_accounting_code_id
        assert objects.query_credit_memo_items(
            zuora_version=version, filter=[f"creditmemoid.EQ:{credit.data[0].id}"]
        ).data
        debit = objects.query_debit_memos(zuora_version=version, expand=["debitmemoitems"])
        assert debit.data[0].debit_memo_items[0].recognized_revenue_accounting_code_id
        assert objects.query_debit_memo_items(
            zuora_version=version, filter=[f"debitmemoid.EQ:{debit.data[0].id}"]
        ).data

        codes = zuora_sdk.AccountingCodesApi(api).get_all_accounting_codes(
            zuora_version=version, page_size=40
        )
        assert credit_item.recognized_revenue_accounting_code_id in {c.id for c in codes.accounting_codes}

        actions = zuora_sdk.ActionsApi(api)
        queried = actions.action_post_query(
            m.ProxyActionqueryRequest(
                query_string="select Id, Name, Status from AccountingPeriod", conf={"batchSize": 2}
            ),
            zuora_version=version,
        )
        assert queried.records and queried.query_locator
        rest = actions.action_postquery_more(
            m.ProxyActionqueryMoreRequest(query_locator=queried.query_locator, conf={"batchSize": 2}),
            zuora_version=version,
        )
        assert rest.records
        updated = actions.action_postupdate(
            m.ProxyActionupdateRequest(
                type="Invoice", objects=[{"Id": invoices.data[0].id, "TransferredToAccounting": "Yes"}]
            ),
            zuora_version=version,
        )
        assert [r.success for r in updated] == [True]

        credit_api, debit_api = zuora_sdk.CreditMemosApi(api), zuora_sdk.DebitMemosApi(api)
        bulk = credit_api.bulk_update_credit_memos(
            m.BulkUpdateCreditMemosRequest(
                memos=[m.UpdateCreditMemoWithId(id=credit.data[0].id, transferred_to_accounting="Yes")]
            ),
            zuora_version=version,
        )
        assert [x.success for x in bulk.memos] == [True]
        bulk_debit = debit_api.bulk_update_debit_memos(
            m.BulkUpdateDebitMemosRequest(
                memos=[m.UpdateDebitMemoWithId(id=debit.data[0].id, transferred_to_accounting="Yes")]
            ),
            zuora_version=version,
        )
        assert [x.success for x in bulk_debit.memos] == [True]
        one = credit_api.update_credit_memo(
            credit.data[-1].id,
            m.UpdateCreditMemoRequest(transferred_to_accounting="Yes"),
            zuora_version=version,
        )
        assert one.transferred_to_accounting == "Yes"
        assert debit_api.update_debit_memo(
            debit.data[-1].id,
            m.UpdateDebitMemoRequest(transferred_to_accounting="Yes"),
            zuora_version=version,
        ).success
        paid = zuora_sdk.PaymentsApi(api).update_payment(
            payments.data[0].id,
            m.UpdatePaymentRequest(
                finance_information=m.PaymentRequestFinanceInformation(transferred_to_accounting="Yes")
            ),
            zuora_version=version,
        )
        assert paid.success and paid.id == payments.data[0].id
        refunded = zuora_sdk.RefundsApi(api).update_refund(
            refunds.data[0].id,
            m.UpdateRefundRequest(
                finance_information=m.RefundRequestFinanceInformation(transferred_to_accounting="Yes")
            ),
            zuora_version=version,
        )
        assert refunded.success and refunded.id == refunds.data[0].id

        periods_api = zuora_sdk.AccountingPeriodsApi(api)
        listed = periods_api.get_all_accounting_periods(zuora_version=version, page_size=40)
        period = next(p for p in listed.accounting_periods if p.status == "Open")
        entries_api = zuora_sdk.SummaryJournalEntriesApi(api)
        manual = entries_api.create_summary_journal_entry(
            m.CreateJournalEntryRequest(
                accounting_period_name=period.name,
                journal_entry_date=period.start_date,
                currency="USD",
                segments=[m.CreateJournalEntryRequestSegment(segment_name="Region", segment_value=REGION)],
                journal_entry_items=[
                    m.CreateJournalEntryRequestItem(
                        accounting_code_name="Accounts Receivable",
                        type="Debit",
                        amount="7.25",
                        home_currency_amount="7.25",
                    ),
                    m.CreateJournalEntryRequestItem(
                        accounting_code_name="Sales Revenue",
                        type="Credit",
                        amount="7.25",
                        home_currency_amount="7.25",
                    ),
                ],
            ),
            zuora_version=version,
            idempotency_key="sdk-contract-entry",
        )
        assert manual.journal_entry_number.startswith("JE-")
        periods_api.run_trial_balance(period.id, zuora_version=version)
        assert (
            periods_api.get_accounting_period(period.id, zuora_version=version).run_trial_balance_status
            == "Completed"
        )
        periods_api.pending_close_accounting_period(period.id, zuora_version=version)
        assert (
            periods_api.get_accounting_period(period.id, zuora_version=version).run_trial_balance_status
            == "Completed"
        )
        periods_api.close_accounting_period(period.id, zuora_version=version)
        assert periods_api.get_accounting_period(period.id, zuora_version=version).status == "Closed"
        runs = zuora_sdk.JournalRunsApi(api)
        created = runs.create_journal_run(
            m.CreateJournalRunRequest(
                accounting_period_name=period.name,
                journal_entry_date=period.end_date,
                transaction_types=[m.CreateJournalRunRequestTransactionType(type="Invoice Item")],
            ),
            zuora_version=version,
            idempotency_key="sdk-contract-run",
        )
        assert runs.get_journal_run(created.journal_run_number, zuora_version=version).status == "Completed"
        listed_entries = entries_api.get_all_summary_journal_entries(
            created.journal_run_number, zuora_version=version, page_size=40
        )
        first = listed_entries.journal_entries[0]
        detail = entries_api.get_summary_journal_entry(first.number, zuora_version=version)
        assert detail.journal_entry_items
        entries_api.update_basic_summary_journal_entry(
            first.number,
            m.UpdateBasicSummaryJournalEntryRequest(transferred_to_accounting="Yes"),
            zuora_version=version,
        )
        runs.cancel_journal_run(created.journal_run_number, zuora_version=version)
        periods_api.reopen_accounting_period(period.id, zuora_version=version)


# The corrections the sandbox models (sandbox/zuora/backend/corrections.py), by zuora-sdk's names.
CORRECTION_OPERATIONS = frozenset(
    {
        "InvoicesApi.reverse_invoice",
        "InvoicesApi.write_off_invoice",
        "CreditMemosApi.reverse_credit_memo",
        "CreditMemosApi.apply_credit_memo",
        "CreditMemosApi.unapply_credit_memo",
        "PaymentsApi.apply_payment",
        "PaymentsApi.unapply_payment",
        "PaymentsApi.create_refund_payment",
    }
)


def _record(sandbox: ThreadedServer, table: str, fields: dict) -> dict:
    created = httpx.post(f"{sandbox.url}/_sandbox/records/{table}", json=fields)
    assert created.status_code == 201, created.text
    return dict(created.json())


def test_the_sdk_client_runs_zuoras_corrections_against_the_sandbox(sandbox):
    """zuora-sdk's own API classes send each correction with its request model; each answer is read
    into the SDK's response model, and the check of every exchange passes."""
    import zuora_sdk
    from zuora_sdk import models as m

    RECORDER.operations.clear()
    one_item = {"items": [{"ChargeAmount": 100, "TaxAmount": 0}]}
    reversed_invoice = _record(sandbox, "invoices", one_item)
    written_off = _record(sandbox, "invoices", one_item)
    paid = _record(sandbox, "invoices", one_item)
    payment = _record(sandbox, "payments", {"invoiceId": paid["Id"], "Type": "External"})
    memo = _record(sandbox, "credit-memos", {"items": [{"AmountWithoutTax": 30, "TaxAmount": 0}]})
    with zuora_sdk.ApiClient(zuora_sdk.Configuration(host=sandbox.url)) as api:
        token = zuora_sdk.OAuthApi(api).create_token(
            client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET, grant_type="client_credentials"
        )
        api.default_headers["Authorization"] = f"Bearer {token.access_token}"
        version = "2025-08-12"
        invoices, memos = zuora_sdk.InvoicesApi(api), zuora_sdk.CreditMemosApi(api)
        payments = zuora_sdk.PaymentsApi(api)

        reversal = invoices.reverse_invoice(
            reversed_invoice["InvoiceNumber"],
            m.ReverseInvoiceRequest(reason_code="Invoice reversal", comment="billed twice"),
            zuora_version=version,
        )
        assert isinstance(reversal, m.ReverseInvoiceResponse) and reversal.credit_memo.id
        write_off = invoices.write_off_invoice(
            written_off["Id"], m.WriteOffInvoiceRequest(comment="uncollectable"), zuora_version=version
        )
        assert isinstance(write_off, m.WriteOffInvoiceResponse) and write_off.credit_memo.id

        unapplied = payments.unapply_payment(
            payment["PaymentNumber"],
            m.UnapplyPaymentRequest(
                invoices=[m.UnapplyPaymentInvoiceApplication(invoice_id=paid["Id"], amount=100)]
            ),
            zuora_version=version,
        )
        assert isinstance(unapplied, m.PaymentResponse) and unapplied.unapplied_amount == 100
        reapplied = payments.apply_payment(
            payment["Id"],
            m.ApplyPaymentRequest(
                invoices=[m.ApplyPaymentInvoiceApplication(invoice_number=paid["InvoiceNumber"], amount=60)]
            ),
            zuora_version=version,
        )
        assert (reapplied.applied_amount, reapplied.unapplied_amount) == (60, 40)
        refund = payments.create_refund_payment(
            payment["Id"],
            m.CreateRefundRequest(
                type="External", total_amount=40, reason_code="Payment Rejection", method_type="Check"
            ),
            zuora_version=version,
            idempotency_key="sdk-contract-refund",
        )
        assert isinstance(refund, m.RefundResponse) and refund.payment_id == payment["Id"]

        applied = memos.apply_credit_memo(
            memo["MemoNumber"],
            m.ApplyCreditMemoRequest(invoices=[m.ApplyCreditMemoToInvoice(invoice_id=paid["Id"], amount=10)]),
            zuora_version=version,
        )
        assert isinstance(applied, m.CreditMemoResponse) and applied.applied_amount == 10
        unapplied_memo = memos.unapply_credit_memo(
            memo["Id"],
            m.UnapplyCreditMemoRequest(
                invoices=[m.UnapplyCreditMemoToInvoice(invoice_id=paid["Id"], amount=10)]
            ),
            zuora_version=version,
        )
        assert unapplied_memo.applied_amount == 0
        memo_reversal = memos.reverse_credit_memo(
            memo["Id"], m.ReverseCreditMemoRequest(comment="issued in error"), zuora_version=version
        )
        assert isinstance(memo_reversal, m.ReverseCreditMemoResponse) and memo_reversal.debit_memo.id

        # A refusal is an error the SDK reads as Zuora's (HTTP 400, CommonResponse).
        with pytest.raises(zuora_sdk.ApiException) as refused:
            invoices.reverse_invoice(paid["Id"], m.ReverseInvoiceRequest(), zuora_version=version)
        assert refused.value.status == 400

    missing = CORRECTION_OPERATIONS - _seen()
    assert not missing, f"not exercised against the sandbox: {sorted(missing)}"


@pytest.mark.parametrize(
    ("method", "path", "body", "problems"),
    [
        ("PUT", "/v1/invoices/INV00000001/reverse", {"applyEffectiveDate": "2026-01-02"}, ()),
        (
            "PUT",
            "/v1/invoices/INV00000001/write-off",
            {"revenueImpacting": "Maybe"},
            ("body.revenueImpacting",),
        ),
        (
            "PUT",
            "/v1/payments/P-00000001/unapply",
            {"invoices": [{"invoiceId": "i1"}]},
            ("body.invoices[0]",),
        ),
        (
            "PUT",
            "/v1/credit-memos/CM00000001/apply",
            {"invoices": [{"invoiceNumber": "INV1", "amount": 1}]},
            ("body.invoices[0].invoiceNumber", "body.invoices[0]"),  # a credit memo names invoices by id
        ),
        ("POST", "/v1/payments/P-00000001/refunds", {"type": "External"}, ("body",)),
        ("PUT", "/v1/credit-memos/CM00000001/reverse", {"memoDate": "2026-01-02"}, ()),
    ],
)
def test_correction_requests_are_judged_by_their_sdk_models(method, path, body, problems):
    checked = ZuoraChecker().check_request(
        HttpRequest(method, path, (), (("content-type", "application/json"),), json.dumps(body).encode())
    )
    assert checked.operation in CORRECTION_OPERATIONS
    assert [p.split(":")[0] for p in checked.problems] == list(problems)


def test_an_undeclared_request_field_is_caught():
    request = HttpRequest(
        method="PUT",
        path="/v1/credit-memos/bulk",
        query=(),
        headers=(("content-type", "application/json"),),
        body=json.dumps(
            {"memos": [{"id": "m1", "transferredToAccounting": "Yes", "colour": "red"}]}
        ).encode(),
    )
    checked = ZuoraChecker().check_request(request)
    assert checked.operation == "CreditMemosApi.bulk_update_credit_memos"
    assert checked.problems == ("body.memos[0].colour: not a field of UpdateCreditMemoWithId",)


def test_an_undeclared_answer_field_is_caught_and_custom_fields_pass():
    request = HttpRequest("GET", "/object-query/accounts", (("pageSize", "10"),), (), b"")
    body = {"data": [{"id": "a1", "accountNumber": "A-1", "ERPAccountId__c": "C1", "loyaltyTier": "gold"}]}
    checked = ZuoraChecker().check_response(request, HttpResponse(200, (), json.dumps(body).encode()))
    assert checked.problems == ("HTTP 200 body.data[0].loyaltyTier: not a field of ExpandedAccount",)


@pytest.mark.parametrize(
    ("path", "size", "ok"),
    [
        ("/object-query/invoices", "99", True),
        ("/object-query/invoices", "100", False),
        ("/v1/accounting-periods", "300", True),
        ("/v1/accounting-periods", "301", False),
    ],
)
def test_page_sizes_are_judged_by_either_of_zuoras_limits(path, size, ok):
    checked = ZuoraChecker().check_request(HttpRequest("GET", path, (("pageSize", size),), (), b""))
    assert (not checked.problems) is ok


def test_a_path_zuora_does_not_have_is_caught():
    assert find_operation("PUT", "/v1/credit-memos") is None
    assert find_operation("PUT", "/v1/debit-memos").id == "DebitMemosApi.update_debit_memos_due_dates"


@pytest.mark.vendor_contract_exempt  # sends an undeclared field on purpose, to show the check records it
def test_the_sandbox_records_a_request_that_breaks_the_description(sandbox):
    token = httpx.post(
        f"{sandbox.url}/oauth/token",
        data={
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "grant_type": "client_credentials",
        },
    ).json()["access_token"]
    mark = RECORDER.mark()

    httpx.put(
        f"{sandbox.url}/v1/debit-memos/bulk",
        headers={"Authorization": f"Bearer {token}"},
        json={"memos": [{"id": "f" * 32, "transferredToAccounting": "Yes", "debitMemos": []}]},
    )

    found = RECORDER.since(mark)
    assert [(v.direction, v.operation) for v in found] == [
        ("request", "DebitMemosApi.bulk_update_debit_memos")
    ]
    assert found[0].problems == ("body.memos[0].debitMemos: not a field of UpdateDebitMemoWithId",)


def test_client_objects_and_stream_filters_build_declared_queries():
    # the value builders render filters Zuora's description takes as plain strings
    checker = ZuoraChecker()
    query = ObjectQuery(
        "payments",
        filters=(condition("updateddate", "GE", datetime(2025, 1, 1, tzinfo=UTC)),),
        sort="updateddate.ASC",
    )
    checked = checker.check_request(
        HttpRequest("GET", "/object-query/payments", tuple(query.params()), (), b"")
    )
    assert checked.problems == ()
