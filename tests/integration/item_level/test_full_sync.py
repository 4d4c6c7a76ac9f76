"""The whole item-level sync as it runs in production: beat schedules the pulls and the sweep, two
Celery worker processes pull, post to the Acumatica sandbox and mark in the Zuora sandbox, over
loopback HTTP, with real Redis and a shared SQLite ledger."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from sandbox.zuora import Sizes
from shared.ledger.repo import Ledger
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

# 2,000 documents of every type (plus 100 billing accounts), one invoice with 120 items.
TWO_THOUSAND = Sizes(
    accounts=100,
    invoices=1200,
    payments=500,
    refunds=60,
    credit_memos=150,
    debit_memos=90,
    large_invoices=1,
    large_invoice_items=120,
    tie_count=150,
)


def _puts(backend) -> int:
    return sum(n for call, n in backend.counts()["calls"].items() if call.startswith("PUT "))


def test_two_thousand_documents_reach_the_erp_once_and_are_all_marked(
    tmp_path, worker_fleet, zuora_sandbox, connection_name
):
    server = zuora_sandbox(seed=21, sizes=TWO_THOUSAND)
    zuora = Zuora(server.url)
    acumatica, erp = acumatica_server()
    beat = None
    fleet = worker_fleet(zuora_url=server.url, **acumatica_env(acumatica.url), **item_env(tmp_path))
    try:
        expected = expected_documents(zuora)
        assert len(expected) == 1200 + 500 + 60 + 150 + 90 - _not_synced(zuora)
        fleet.start(2, concurrency=2)
        beat = Beat(fleet.env, tmp_path).start()

        wait_until(lambda: not unmarked(zuora), timeout=300, interval=2, what="every Zuora record marked")

        documents = erp_documents(erp)
        assert {key: documents.get(key, 0) for key in expected} == dict.fromkeys(expected, 1)
        assert sum(documents.values()) == len(expected)
        accounts = {r["Id"] for r in zuora.rows("accounts")}
        assert len(erp.state("Customer")) == len(accounts)
        ledger = Ledger.from_url(fleet.env["LEDGERBRIDGE_DATABASE_URL"])
        wait_until(
            lambda: (
                set(ledger.counts_by_state(connection_name))
                <= {(t, "marked") for t, _ in ledger.counts_by_state(connection_name)}
            ),
            timeout=60,
            what="every ledger row marked",
        )
        states = ledger.counts_by_state(connection_name)
        assert sum(states.values()) == len(expected) + len(accounts)

        # A second pass: every stream is pulled again (the marking moved every updatedDate) and
        # finds everything already synced. Nothing more reaches the ERP.
        puts = _puts(erp)
        since = datetime.now(UTC)
        wait_until(
            lambda: all(
                (row.run_finished_at or since) > since and row.last_status == "ok"
                for row in ledger.list_streams(connection_name)
            ),
            timeout=60,
            what="a full second pass of every stream",
        )
        time.sleep(3)  # let anything that pass dispatched run
        assert _puts(erp) == puts
        assert erp_documents(erp) == documents
        assert ledger.counts_by_state(connection_name) == states
        assert all(row.missed_by_mark == 0 for row in ledger.list_streams(connection_name))
        # The cost model: one ERP call per record, plus the sign-in. (Zuora's calls per record are
        # checked in the unit tests: beat polls every 3 s here, which no deployment would.)
        records = len(expected) + len(accounts)
        erp_calls = sum(n for call, n in erp.counts()["calls"].items() if "auth/" not in call)
        assert erp_calls / records <= 1.02, erp.counts()["calls"]
        ledger.dispose()
    finally:
        if beat is not None:
            beat.stop()
        fleet.stop()  # before the sandboxes go: the workers log out of Acumatica on the way out
        acumatica.stop()
        forget_queue(fleet.env["LEDGERBRIDGE_REDIS_URL"], fleet.queue)


def _not_synced(zuora: Zuora) -> int:
    """Seeded records in a status the sync does not move (draft invoices, memos...)."""
    skipped = 0
    for table, status in (
        ("invoices", "Posted"),
        ("payments", "Processed"),
        ("refunds", "Processed"),
        ("credit-memos", "Posted"),
        ("debit-memos", "Posted"),
    ):
        skipped += sum(1 for r in zuora.rows(table) if r.get("Status") != status)
    return skipped
