# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""At-least-once posting with idempotent effects, against the Acumatica sandbox over HTTP.

Acumatica has no idempotency key: a create whose answer is lost may have been committed
(acumatica-api.md section 7). The sandbox stores some invoices and then drops the connection
(``commit_then_drop``), and drops others before doing anything (``drop``); the client cannot tell
the two apart and raises ``OutcomeUnknown``. The ledger's guard settles them the way the flows
do: the item-level posting path (``shared.item_level.posting.post_one``) commits ``posting``
before the one ERP call, leaves an in-doubt row in ``posting``, and once the posting timeout has
passed looks the invoice up by its Zuora number: found -> ``posted`` with that reference
(``resume_in_doubt``), not found -> ``pending`` and posted again.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shared.connections import ZuoraTarget
from shared.coordination.limits import ConcurrencyLimiter
from shared.item_level import ItemContext, Options, post_one
from shared.ledger.migrate import upgrade
from shared.ledger.models import ObjectType, utcnow
from shared.ledger.repo import Ledger
from shared.ledger.states import FAILED, MARKED, POSTED, POSTING, upsert_pulled
from shared.mapping import load_mapping
from shared.zuora import ZuoraClient
from tests.support.dispatch import RecordingDispatcher

from .conftest import cookie_target

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[3]
INVOICES = 50
ACCOUNT_ID = "2c92c0f9-account-0001"
TODAY = dt.datetime.now(dt.UTC).date()
POSTING_TIMEOUT = dt.timedelta(minutes=15)


def account_row() -> dict[str, Any]:
    """An Object Query account with ``billTo`` expanded (zuora-api.md section 9)."""
    return {
        "id": ACCOUNT_ID,
        "accountNumber": "A00000001",
        "name": "Acme Corp",
        "currency": "USD",
        "status": "Active",
        "billTo": {"workEmail": "ap@acme.example", "city": "Austin", "country": "United States"},
    }


def invoice_row(n: int) -> dict[str, Any]:
    """A posted Object Query invoice with its ``invoiceItems`` expanded."""
    charge, tax = f"{100 + n}.00", "8.25"
    return {
        "id": f"2c92c0f9-invoice-{n:04d}",
        "invoiceNumber": f"INV{n:08d}",
        "invoiceDate": TODAY.isoformat(),
        "dueDate": (TODAY + dt.timedelta(days=30)).isoformat(),
        "accountId": ACCOUNT_ID,
        "currency": "USD",
        "status": "Posted",
        "amount": f"{100 + n + 8.25:.2f}",
        "invoiceItems": [
            {
                "id": f"2c92c0f9-item-{n:04d}",
                "chargeName": "Pro plan",
                "chargeAmount": charge,
                "taxAmount": tax,
                "quantity": "1",
                "unitPrice": charge,
                "accountingCode": "Subscription Revenue",
            }
        ],
    }


class ShiftedClock:
    """utcnow() moved on by ``offset`` (to step past posting timeouts and backoffs)."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def __call__(self) -> dt.datetime:
        return utcnow() + self.offset


def posting_context(
    erp, ledger, redis_client, connection: str, posting_timeout: dt.timedelta, clock: ShiftedClock
) -> tuple[ItemContext, ZuoraClient]:
    """An item-level context for posting only: it never talks to Zuora, so its client points at
    nothing."""
    zuora = ZuoraClient(
        ZuoraTarget(base_url="http://127.0.0.1:9", client_id="unused", client_secret="unused"),
        connection=connection,
        redis=redis_client,
    )
    ctx = ItemContext(
        connection=connection,
        zuora=zuora,
        erp=erp,
        ledger=ledger,
        mapping=load_mapping(REPO / "mapping.example.toml"),
        dispatch=RecordingDispatcher(),
        options=Options(posting_timeout=posting_timeout),
        clock=clock,
    )
    return ctx, zuora


def pulled(ledger, connection: str, invoices: range) -> tuple[int, list[int]]:
    """The account and ``invoices`` as pulled ledger rows: (account row id, invoice row ids)."""
    with ledger.session() as session:
        account, _ = upsert_pulled(
            session,
            connection=connection,
            object_type=ObjectType.ACCOUNT.value,
            zuora_id=ACCOUNT_ID,
            zuora_number="A00000001",
            zuora_updated=None,
            payload=account_row(),
            account_id=ACCOUNT_ID,
            source="pull",
        )
        ids = []
        for n in invoices:
            row, _ = upsert_pulled(
                session,
                connection=connection,
                object_type=ObjectType.INVOICE.value,
                zuora_id=f"2c92c0f9-invoice-{n:04d}",
                zuora_number=f"INV{n:08d}",
                zuora_updated=None,
                payload=invoice_row(n),
                account_id=ACCOUNT_ID,
                source="pull",
            )
            assert row.id is not None
            ids.append(row.id)
    assert account.id is not None
    return account.id, ids


@pytest.fixture
def ledger(database_url):
    upgrade(database_url)
    ledger = Ledger.from_url(database_url)
    yield ledger
    ledger.dispose()


def test_commit_then_drop_on_50_invoice_creates_ends_with_50_invoices_not_more(
    acumatica_sandbox, make_erp, ledger, real_redis, connection_name
):
    sandbox = acumatica_sandbox()
    sandbox.faults(
        {"kind": "commit_then_drop", "method": "PUT", "entity": "Invoice", "share": 0.3},
        {"kind": "drop", "method": "PUT", "entity": "Invoice", "share": 0.15},
        seed=11,
    )
    erp = make_erp(cookie_target(sandbox.url), audit=ledger.record_exchange)
    clock = ShiftedClock()
    ctx, zuora = posting_context(erp, ledger, real_redis, connection_name, POSTING_TIMEOUT, clock)
    _, ids = pulled(ledger, connection_name, range(1, INVOICES + 1))

    outcomes: Counter[str] = Counter()
    for _ in range(10):  # bounded: each pass settles every in-doubt row and posts it again if absent
        pending = [i for i in ids if ledger.get_record_by_id(i).state != POSTED]
        if not pending:
            break
        for record_id in pending:
            outcome = post_one(ctx, record_id)
            outcomes[outcome.detail if outcome.detail == "in doubt: found" else outcome.outcome] += 1
        clock.offset += POSTING_TIMEOUT + dt.timedelta(
            seconds=1
        )  # the in-doubt rows are now past their timeout
    erp.close()
    zuora.close()

    counts = sandbox.counts()
    committed, dropped = counts["faults_injected"]["commit_then_drop"], counts["faults_injected"]["drop"]
    rows = [ledger.get_record_by_id(i) for i in ids]
    invoices = [d for d in sandbox.state("Invoice") if d["Type"] == "Invoice"]
    not_found = sum(
        1
        for row in rows
        for event in ledger.timeline(row.subject)
        if event.message == "posting -> pending: in doubt; not found in the ERP"
    )
    # Both kinds of loss happened and were told apart only by looking the invoice up.
    assert committed > 0 and dropped > 0
    assert outcomes["in_doubt"] == committed + dropped
    assert outcomes["in doubt: found"] == committed
    assert not_found == dropped
    # Exactly one invoice per Zuora invoice, and the ledger points at it.
    assert len(invoices) == INVOICES
    assert sorted(d["CustomerOrder"] for d in invoices) == [f"INV{n:08d}" for n in range(1, INVOICES + 1)]
    by_order = {d["CustomerOrder"]: f"Invoice/{d['ReferenceNbr']}" for d in invoices}
    assert [(r.state, r.erp_ref) for r in rows] == [(POSTED, by_order[r.zuora_number]) for r in rows]
    assert counts["calls"]["PUT Invoice"] == INVOICES + dropped  # a create is repeated only when absent
    assert counts["dropped_connections"] == committed + dropped


def test_a_create_queued_past_its_posting_claim_is_not_sent_so_a_takeover_cannot_duplicate_it(
    acumatica_sandbox, make_erp, ledger, real_redis, connection_name
):
    """A worker claims a row for 3 s, then queues for the one concurrency slot (held here, as a
    killed worker's lease would be) until its claim has run out. Past the claim another worker
    may look the invoice up, find nothing and create it: so the first must not send its create
    when it finally gets the slot. It fails the row instead (nothing was created), and the row is
    posted once later."""
    sandbox = acumatica_sandbox()
    erp = make_erp(cookie_target(sandbox.url, max_concurrent=1), throttle_wait=60.0)
    clock = ShiftedClock()
    ctx, zuora = posting_context(erp, ledger, real_redis, connection_name, dt.timedelta(seconds=3), clock)
    account_id, (invoice_id,) = pulled(ledger, connection_name, range(1, 2))
    # The customer first (this also signs the shared session in, outside the held slot).
    assert post_one(ctx, account_id).outcome == MARKED

    slots = ConcurrencyLimiter(
        real_redis, f"ledgerbridge:{connection_name}:acumatica:inflight", limit=1, lease=120.0
    )
    outcomes: list[Any] = []
    with slots.slot(max_wait=10.0):
        worker = threading.Thread(target=lambda: outcomes.append(post_one(ctx, invoice_id)), daemon=True)
        worker.start()
        claimed = _wait_for(
            lambda: next((r for r in [ledger.get_record_by_id(invoice_id)] if r.state == POSTING), None),
            "the posting claim",
        )
        assert claimed.next_attempt_at is not None
        # Hold the slot until the claim has run out (a takeover could now look the invoice up).
        _wait_for(lambda: utcnow() > claimed.next_attempt_at, "the end of the claim")
    worker.join(timeout=60)
    assert not worker.is_alive()

    (outcome,) = outcomes
    assert outcome.outcome == FAILED
    assert "was not sent" in (outcome.detail or "")
    assert sandbox.counts()["calls"].get("PUT Invoice", 0) == 0
    assert ledger.get_record_by_id(invoice_id).state == FAILED

    clock.offset = dt.timedelta(hours=1)  # past the failure's backoff
    assert post_one(ctx, invoice_id).outcome == POSTED
    invoices = [d for d in sandbox.state("Invoice") if d["Type"] == "Invoice"]
    assert [d["CustomerOrder"] for d in invoices] == ["INV00000001"]
    erp.close()
    zuora.close()


def _wait_for(condition: Any, what: str, timeout: float = 30.0) -> Any:
    """Poll ``condition`` (bounded); return the ledger row or value once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
