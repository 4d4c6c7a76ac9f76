"""Zuora's corrections reach Acumatica through the fleet as it runs in production (beat, Celery
workers, the Zuora and Acumatica sandboxes over loopback HTTP, real Redis, a SQLite and a
PostgreSQL ledger). After a month is posted, an invoice is reversed and an unapplied payment is
refunded for "Payment Rejection", each through Zuora's own operation over HTTP
(``PUT /v1/invoices/{invoiceKey}/reverse``, ``POST /v1/payments/{paymentKey}/refunds``). The
credit memo the reversal creates reaches Acumatica applied to the invoice, which is then open for
0 there as in Zuora; the refund reaches it too, and nothing is posted twice."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal

import httpx
import pytest

from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes
from shared.ledger.repo import Ledger
from tests.chaos import checks
from tests.integration.item_level.support import (
    REPO,
    Beat,
    Zuora,
    acumatica_env,
    acumatica_server,
    all_rows_marked,
    forget_queue,
    item_env,
    unmarked,
    wait_until,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MONTH = Sizes(
    accounts=4,
    invoices=10,
    payments=4,
    refunds=0,
    credit_memos=0,
    debit_memos=0,
    tie_count=0,
    large_invoices=0,
)


def _zuora_api(url: str) -> httpx.Client:
    """A client of the sandbox's Zuora API with a bearer token, as an operator's script would be."""
    token = httpx.post(
        f"{url}/oauth/token",
        data={
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "grant_type": "client_credentials",
        },
    ).json()["access_token"]
    return httpx.Client(
        base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}", "Zuora-Version": "2025-08-12"}
    )


def test_a_reversal_and_a_rejected_payment_reach_the_erp_applied(
    tmp_path, worker_fleet, zuora_sandbox, connection_name, database_url
):
    zuora = Zuora(zuora_sandbox(seed=31, sizes=MONTH).url)
    acumatica, erp = acumatica_server(action_polls=0)
    applied_to = {a["InvoiceId"] for a in zuora.rows("payment-applications")}
    reversed_invoice = next(
        i
        for i in zuora.rows("invoices")
        if i["Status"] == "Posted" and i["Id"] not in applied_to and Decimal(str(i["Balance"])) > 0
    )
    rejected = zuora.add(
        "payments",
        {
            "AccountId": reversed_invoice["AccountId"],
            "Amount": "25.00",
            "Type": "External",
            "Status": "Processed",
        },
    )
    fleet = worker_fleet(
        zuora_url=zuora.url,
        database_url=database_url,
        **acumatica_env(acumatica.url),
        **item_env(tmp_path, LEDGERBRIDGE_ITEM_RELEASE="true"),
    )
    ledger = Ledger.from_url(database_url)
    beat = None
    try:
        fleet.start(2, concurrency=2)
        beat = Beat(fleet.env, tmp_path).start()
        wait_until(lambda: not unmarked(zuora), timeout=120, interval=1, what="every Zuora record marked")
        wait_until(
            lambda: all_rows_marked(ledger, connection_name), timeout=60, interval=1, what="every row marked"
        )
        assert checks.document_problems(zuora, checks.ErpState(erp))[0] == []

        # The corrections, in Zuora.
        with _zuora_api(zuora.url) as api:
            reversal = api.put(f"/v1/invoices/{reversed_invoice['InvoiceNumber']}/reverse", json={})
            assert reversal.status_code == 200, reversal.text
            refund = api.post(
                f"/v1/payments/{rejected['PaymentNumber']}/refunds",
                json={
                    "type": "External",
                    "methodType": "Check",
                    "totalAmount": 25,
                    "reasonCode": "Payment Rejection",
                },
            )
            assert refund.status_code == 200, refund.text
        memo = next(m for m in zuora.rows("credit-memos") if m["Id"] == reversal.json()["creditMemo"]["id"])
        refund_number = refund.json()["number"]

        def carried() -> bool:
            marked = not unmarked(zuora) and all_rows_marked(ledger, connection_name)
            return marked and bool(ledger.find_records(connection_name, refund_number))

        wait_until(carried, timeout=120, interval=1, what="the credit memo and the refund posted and marked")
    finally:
        if beat is not None:
            beat.stop()
        fleet.stop()
        acumatica.stop()
        forget_queue(fleet.env["LEDGERBRIDGE_REDIS_URL"], fleet.queue)

    problems, figures = checks.document_problems(zuora, checks.ErpState(erp))
    assert problems == []  # the reversed invoice is open for 0 in Acumatica, as in Zuora
    assert (figures["erp_duplicates"], figures["lost"]) == (0, 0)
    explained = subprocess.run(
        [sys.executable, "-m", "cli.main", "explain", reversed_invoice["InvoiceNumber"], "--json"],
        cwd=REPO, env=fleet.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    (record,) = json.loads(explained.stdout)["records"]
    assert any(f"credit memo {memo['MemoNumber']}" in link for link in record["links"]), record["links"]
    ledger.dispose()
