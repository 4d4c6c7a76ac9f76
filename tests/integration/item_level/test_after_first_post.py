"""After the first post, the ERP stays the AR system of record: the fleet as it runs in production
(beat, two Celery worker processes, the Zuora and Acumatica sandboxes over loopback HTTP, real
Redis, a SQLite and a PostgreSQL ledger) syncs a month; then, in Zuora, a billing account is
renamed, an external payment recorded unapplied is applied to an invoice, and an invoice is
changed after it was posted (the override of the transfer flag). One worker is SIGKILLed while
those changes are picked up. In the end the Acumatica customer has the new name, the payment is
applied there once and every invoice is open for what Zuora says, to the cent - except the one
changed after posting, which is never overwritten: it is noted for a person, with the change."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal

import pytest

from sandbox.zuora import Sizes
from shared.ledger import applications as ledger_applications
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


def test_changes_after_the_first_post_reach_the_erp_or_a_person(
    tmp_path, worker_fleet, zuora_sandbox, connection_name, database_url
):
    zuora = Zuora(zuora_sandbox(seed=31, sizes=MONTH).url)
    acumatica, erp = acumatica_server(action_polls=0)
    open_invoices = [
        i for i in zuora.rows("invoices") if i["Status"] == "Posted" and Decimal(str(i["Balance"])) > 2
    ]
    paid_later, changed_later = open_invoices[0], open_invoices[1]
    payment = zuora.add(
        "payments",
        {"AccountId": paid_later["AccountId"], "Amount": "2.00", "Type": "External", "Status": "Processed"},
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
        problems, _ = checks.document_problems(zuora, checks.ErpState(erp))
        assert problems == []

        # The changes, in Zuora.
        account = next(a for a in zuora.rows("accounts") if a["Id"] == paid_later["AccountId"])
        zuora.update("accounts", account["Id"], {"Name": "Renamed After Posting Ltd"})
        zuora.add(
            "payment-applications",
            {"PaymentId": payment["Id"], "InvoiceId": paid_later["Id"], "ApplyAmount": "2.00"},
        )
        zuora.update("payments", payment["Id"], {"AppliedAmount": "2.00", "UnappliedAmount": "0.00"})
        balance = Decimal(str(paid_later["Balance"])) - 2
        zuora.update("invoices", paid_later["Id"], {"Balance": str(balance)})
        item = next(i for i in zuora.rows("invoice-items") if i["InvoiceId"] == changed_later["Id"])
        zuora.update(
            "invoice-items", item["Id"], {"ChargeAmount": str(Decimal(str(item["ChargeAmount"])) + 5)}
        )
        zuora.update(
            "invoices", changed_later["Id"], {"Amount": str(Decimal(str(changed_later["Amount"])) + 5)}
        )
        killed = fleet.procs[0]
        fleet.kill(killed)  # while the changes are being picked up
        fleet.procs.remove(killed)
        fleet.start(1, concurrency=2)

        customer_id = ledger.find_records(connection_name, account["AccountNumber"])[0].posted_payload[
            "document"
        ]["customer_id"]

        def carried() -> bool:
            customers = {c["CustomerID"]: c for c in erp.state("Customer")}
            with ledger.reading() as session:
                applied = ledger_applications.counts(session, connection_name).get("applied", 0)
            (changed,) = ledger.find_records(connection_name, changed_later["InvoiceNumber"])
            return (
                customers[customer_id]["CustomerName"] == "Renamed After Posting Ltd"
                and applied == 1
                and changed.change_note is not None
            )

        wait_until(carried, timeout=120, interval=1, what="the three changes carried or noted")
    finally:
        if beat is not None:
            beat.stop()
        fleet.stop()
        acumatica.stop()
        forget_queue(fleet.env["LEDGERBRIDGE_REDIS_URL"], fleet.queue)

    problems, figures = checks.document_problems(zuora, checks.ErpState(erp))
    number = changed_later["InvoiceNumber"]
    assert [p for p in problems if number not in p] == []  # every other invoice open for Zuora's balance
    assert any(p.startswith(f"Invoice {number}: Acumatica has") for p in problems)  # not overwritten
    assert (figures["erp_duplicates"], figures["lost"]) == (0, 0)
    (changed,) = ledger.find_records(connection_name, number)
    assert "changed in Zuora after it was posted" in changed.change_note
    assert "the ERP document was not changed" in changed.change_note
    assert [n.event for n in ledger.notices_of(changed.subject)] == ["record.changed_after_posting"]
    (paying,) = ledger.find_records(connection_name, payment["PaymentNumber"])
    trail = " ".join(e.message or "" for e in ledger.timeline(paying.subject))
    assert "applied in Zuora to 1 more document(s) after it was posted" in trail
    # Applied once, however many workers looked (an answer lost would read "found applied already").
    assert len(re.findall(r"application to invoice \S+ for [\d.]+ applied in the ERP", trail)) == 1
    status = subprocess.run(
        [sys.executable, "-m", "cli.main", "status", "--json"],
        cwd=REPO, env=fleet.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    shown = json.loads(status.stdout)
    assert shown["applications"] == {"applied": 1}
    assert shown["changes"] == {"being_carried": 0, "needs_a_person": 1}
    explained = subprocess.run(
        [sys.executable, "-m", "cli.main", "explain", paid_later["InvoiceNumber"], "--json"],
        cwd=REPO, env=fleet.env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    (record,) = json.loads(explained.stdout)["records"]
    assert [x for x in record["links"] if payment["PaymentNumber"] in x] == [
        f"applied by payment {payment['PaymentNumber']} ({paying.erp_ref}) for 2, later"
    ]
    ledger.dispose()
