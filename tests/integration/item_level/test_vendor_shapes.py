"""The item-level sync against sandboxes that answer as the vendors' own descriptions say, at the
strictest limits those descriptions give: Object Query pageSize 1..50 and the v1 lists at most 40
(zuora-sdk), one invoice with more items than a page. Two Celery worker processes and beat, real
Redis, both sandboxes over loopback HTTP, every exchange checked against the descriptions.

What it shows, with item-level release on: payments and refunds reach Acumatica applied to the documents they pay, for the
amounts Zuora applied (every ERP invoice's open balance equals Zuora's); memo lines land on the
account the mapping gives their recognized-revenue accounting code; memos are marked through the
bulk PUTs; each process steps down from the reference pages' page size once.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from sandbox.zuora import Sizes
from sandbox.zuora.catalog import ACCOUNTING_CODES_BY_ID
from shared.mapping import load_mapping
from tests.integration.item_level.support import (
    Beat,
    Zuora,
    acumatica_env,
    acumatica_server,
    erp_documents,
    expected_documents,
    forget_queue,
    item_env,
    unmarked,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SIZES = Sizes(
    accounts=20,
    invoices=150,
    payments=90,
    refunds=12,
    credit_memos=25,
    debit_memos=15,
    large_invoices=1,
    large_invoice_items=70,  # more than the 50 an Object Query page may hold
    tie_count=10,
)


def _money(value: object) -> Decimal:
    return Decimal(str(value or 0)).quantize(Decimal("0.01"))


def test_a_sync_at_the_openapi_page_limits_posts_applied_documents_on_the_mapped_accounts(
    tmp_path, worker_fleet, zuora_sandbox, connection_name
):
    server = zuora_sandbox(seed=33, sizes=SIZES)
    zuora = Zuora(server.url)
    zuora.http.post("/_sandbox/config", json={"page_limits": "sdk"}).raise_for_status()
    # Releases that finish at once: this test is about shapes and amounts, not release latency.
    acumatica, erp = acumatica_server(action_polls=0)
    # Released documents, so Acumatica can apply payments and credit memos to them.
    env = item_env(tmp_path, LEDGERBRIDGE_ITEM_RELEASE="true", LEDGERBRIDGE_POSTING_TIMEOUT_SECONDS="60")
    beat = None
    fleet = worker_fleet(zuora_url=server.url, **acumatica_env(acumatica.url), **env)
    try:
        expected = expected_documents(zuora)
        fleet.start(2, concurrency=2)
        beat = Beat(fleet.env, tmp_path).start()

        wait_until(lambda: not unmarked(zuora), timeout=240, interval=2, what="every Zuora record marked")

        # Every document once.
        documents = erp_documents(erp)
        assert {key: documents.get(key, 0) for key in expected} == dict.fromkeys(expected, 1)

        # Applied for the amounts Zuora applied: each ERP invoice is open for what Zuora's is.
        zuora_balance = {
            r["InvoiceNumber"]: _money(r["Balance"])
            for r in zuora.rows("invoices")
            if r["Status"] == "Posted"
        }
        erp_balance = {
            r["CustomerOrder"]: _money(r["Balance"]) for r in erp.state("Invoice") if r["Type"] == "Invoice"
        }
        assert erp_balance == zuora_balance
        assert any(b < total for b, total in _paid_invoices(zuora))  # payments did apply

        # Memo lines on the accounts the mapping gives their recognized-revenue codes.
        mapping = load_mapping(env["LEDGERBRIDGE_MAPPING_FILE"])
        wanted: dict[str, list[str]] = {}
        for table, items, parent in (
            ("credit-memos", "credit-memo-items", "CreditMemoId"),
            ("debit-memos", "debit-memo-items", "DebitMemoId"),
        ):
            numbers = {r["Id"]: r["MemoNumber"] for r in zuora.rows(table) if r["Status"] == "Posted"}
            for item in zuora.rows(items):
                if item[parent] in numbers:
                    name = ACCOUNTING_CODES_BY_ID[item["RecognizedRevenueAccountingCodeId"]].name
                    wanted.setdefault(numbers[item[parent]], []).append(mapping.account(name).account)
        got = {
            r["CustomerOrder"]: [
                d["Account"] for d in r["Details"] if d.get("TransactionDescription") != "Tax"
            ]
            for r in erp.state("Invoice")
            if r["Type"] in ("Credit Memo", "Debit Memo")
        }
        assert wanted and {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in wanted.items()}

        # Memos marked through the bulk PUTs, never through the due-date update.
        requests = zuora.requests()
        assert requests.get("PUT /v1/credit-memos/bulk", 0) >= 1
        assert requests.get("PUT /v1/debit-memos/bulk", 0) >= 1
        assert requests.get("PUT /v1/debit-memos", 0) == 0

        # Each worker process refused at most once per page family, then remembered the limit.
        refused = zuora.http.get("/_sandbox/requests").json()["statuses"]
        object_query_400s = sum(
            by_status.get("400", 0)
            for route, by_status in refused.items()
            if route.startswith("GET /object-query/")
        )
        assert 1 <= object_query_400s <= 2 * (1 + 2)  # two workers of two children each, and the parent
    finally:
        if beat is not None:
            beat.stop()
        fleet.stop()
        acumatica.stop()
        forget_queue(fleet.env["LEDGERBRIDGE_REDIS_URL"], fleet.queue)


def _paid_invoices(zuora: Zuora) -> list[tuple[Decimal, Decimal]]:
    return [
        (_money(r["Balance"]), _money(r["Amount"])) for r in zuora.rows("invoices") if r["Status"] == "Posted"
    ]
