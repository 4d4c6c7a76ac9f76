"""Push end to end: the Zuora sandbox sends signed callouts over loopback to the receiver
(worker/web.py), which records them and enqueues them in batches; a real Celery worker re-fetches
each batch's records and posts them to the Acumatica sandbox; a pull of the same records
afterwards adds nothing."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
import redis
import sqlalchemy as sa

from sandbox.server import ThreadedServer
from sandbox.zuora import Sizes
from shared.callouts import CalloutBatcher, sign
from shared.ledger.repo import Ledger
from shared.settings import load_settings
from tests.integration.item_level.support import (
    Zuora,
    acumatica_env,
    acumatica_server,
    erp_documents,
    forget_queue,
    item_env,
    unmarked,
    wait_until,
)
from worker.web import CALLOUT_PATH, create_app

pytestmark = [pytest.mark.redis, pytest.mark.slow]

SECRET = "push-secret"
SMALL = Sizes(
    accounts=6,
    invoices=10,
    payments=6,
    refunds=1,
    credit_memos=2,
    debit_memos=2,
    tie_count=0,
    large_invoices=0,
)


class Push:
    """Sandboxes, one worker, and the receiver in this process, enqueuing to the worker's queue."""

    def __init__(self, tmp_path, worker_fleet, zuora_sandbox, redis_url, connection_name) -> None:
        self.zuora = Zuora(zuora_sandbox(seed=9, sizes=SMALL).url)
        self.acumatica, self.erp = acumatica_server()
        env = {**acumatica_env(self.acumatica.url), **item_env(tmp_path)}
        env["LEDGERBRIDGE_CALLOUT_HMAC_SECRET"] = SECRET
        self.fleet = worker_fleet(zuora_url=self.zuora.url, **env)
        self.connection = connection_name
        self.ledger = Ledger.from_url(self.fleet.env["LEDGERBRIDGE_DATABASE_URL"])
        self.celery = self.fleet.client()
        self.enqueued = 0

        def send(connection: str, callout_ids: list[int]) -> None:
            self.celery.send_task(
                "ledgerbridge.push.callouts",
                kwargs={"connection": connection, "callout_ids": callout_ids},
                queue=self.fleet.queue,
            )
            self.enqueued += len(callout_ids)

        # The receiver's own batching, sending to this test's queue.
        self.batcher = CalloutBatcher(send, self.ledger, window=0.05)

        settings = load_settings(
            callout_hmac_secret=SECRET,
            connection=connection_name,
            database_url=self.fleet.env["LEDGERBRIDGE_DATABASE_URL"],
        )
        self.web = ThreadedServer(
            create_app(settings=settings, ledger=self.ledger, enqueue=self.batcher.submit)
        ).start()
        self.callout_url = self.web.url + CALLOUT_PATH
        self.redis = redis.Redis.from_url(redis_url)

    def start(self, *, duplicate_rate: float = 0.0) -> None:
        self.fleet.start(1, concurrency=2)
        self.zuora.configure_callouts(
            url=self.callout_url,
            secret=SECRET,
            retry_interval_seconds=0.2,
            duplicate_rate=duplicate_rate,
            seed=3,
        )

    def account(self, n: int = 0) -> str:
        return str(self.zuora.rows("accounts")[n]["Id"])

    def callouts(self) -> list[tuple]:
        with self.ledger.engine.connect() as conn:
            return conn.execute(
                sa.text("select notification_id, event_code, object_id, state from callout_notification")
            ).all()

    def stop(self) -> None:
        self.web.stop()
        self.batcher.close()
        self.fleet.stop()
        self.acumatica.stop()
        forget_queue(self.fleet.env["LEDGERBRIDGE_REDIS_URL"], self.fleet.queue)
        self.ledger.dispose()
        self.redis.close()


@pytest.fixture
def push(tmp_path, worker_fleet, zuora_sandbox, redis_url, connection_name):
    setup = Push(tmp_path, worker_fleet, zuora_sandbox, redis_url, connection_name)
    yield setup
    setup.stop()


def _posted(push: Push, rows: list[dict], key: str, kind: str) -> bool:
    documents = erp_documents(push.erp)
    return all(documents.get((kind, r[key]), 0) >= 1 for r in rows)


def test_a_signed_callout_posts_the_record_once_and_marks_it(push):
    push.start()
    invoices = [push.zuora.add("invoices", {"AccountId": push.account(i % 3)}) for i in range(5)]

    wait_until(
        lambda: _posted(push, invoices, "InvoiceNumber", "invoice"), timeout=60, what="5 invoices posted"
    )
    wait_until(
        lambda: not [i for i in invoices if i["InvoiceNumber"] in unmarked(push.zuora)],
        timeout=60,
        what="5 invoices marked",
    )

    documents = erp_documents(push.erp)
    assert [documents[("invoice", i["InvoiceNumber"])] for i in invoices] == [1] * 5
    rows = [push.ledger.get_record(push.connection, "invoice", i["Id"]) for i in invoices]
    assert [(r.source, r.state) for r in rows] == [("push", "marked")] * 5
    assert sorted(state for *_, state in push.callouts()) == ["done"] * 5


def test_duplicated_callouts_still_post_each_record_once(push):
    push.start(duplicate_rate=0.3)
    created = [push.zuora.add("invoices", {"AccountId": push.account(i % 4)}) for i in range(12)]
    payments = [
        push.zuora.add("payments", {"invoiceId": inv["Id"], "Type": "Electronic"}) for inv in created[:6]
    ]

    wait_until(lambda: _posted(push, created, "InvoiceNumber", "invoice"), timeout=60, what="invoices posted")
    wait_until(
        lambda: _posted(push, payments, "PaymentNumber", "payment"), timeout=60, what="payments posted"
    )
    wait_until(lambda: push.zuora.callouts()["pending"] == 0, timeout=30, what="every callout delivered")

    attempts = push.zuora.callouts()["attempts"]
    sent = Counter(a["notification_id"] for a in attempts if a["status"] == 200)
    assert any(n > 1 for n in sent.values()), "the sandbox was asked to send duplicates"
    assert len(push.callouts()) == len(sent) == 18  # one row per notification, duplicates dropped
    assert push.enqueued == 18
    documents = erp_documents(push.erp)
    assert [documents[("invoice", i["InvoiceNumber"])] for i in created] == [1] * 12
    assert [documents[("payment", p["PaymentNumber"])] for p in payments] == [1] * 6


def test_refused_callouts_enqueue_nothing(push):
    push.start()
    body = json.dumps({"eventCode": "1110", "objectId": "8ad0aa", "accountId": "8ad0bb"}).encode()
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    good = {
        "X-Zuora-Timestamp": stamp,
        "X-Zuora-Signature": sign(SECRET, stamp, body),
        "Zuora-Notification-Id": "n1",
    }
    cases = [
        ({**good, "X-Zuora-Signature": sign("wrong", stamp, body)}, body, 401),
        ({k: v for k, v in good.items() if k != "X-Zuora-Signature"}, body, 401),
        ({**good, "X-Zuora-Signature": sign(SECRET, stamp, b"{nope")}, b"{nope", 400),
    ]
    for headers, content, status in cases:
        response = httpx.post(
            push.callout_url, content=content, headers={"Content-Type": "application/json", **headers}
        )
        assert response.status_code == status, response.text
    assert push.enqueued == 0
    assert push.callouts() == []
    assert push.redis.llen(push.fleet.queue) == 0


def test_a_pushed_record_that_is_later_pulled_is_one_erp_document(push):
    push.start()
    invoice = push.zuora.add("invoices", {"AccountId": push.account()})
    wait_until(
        lambda: _posted(push, [invoice], "InvoiceNumber", "invoice"), timeout=60, what="the pushed invoice"
    )

    pulled = push.fleet.send("ledgerbridge.pull.stream", stream="invoices").get(timeout=60)

    assert pulled["rows"] >= 1
    assert push.ledger.get_record(push.connection, "invoice", invoice["Id"]).source == "push"
    assert erp_documents(push.erp)[("invoice", invoice["InvoiceNumber"])] == 1
    wait_until(lambda: invoice["InvoiceNumber"] not in unmarked(push.zuora), timeout=60, what="marked")
    assert erp_documents(push.erp)[("invoice", invoice["InvoiceNumber"])] == 1


def test_a_single_callout_message_is_still_processed(push):
    """``ledgerbridge.push.callout`` (one id) is what receivers sent before they sent batches."""
    push.fleet.start(1, concurrency=2)  # the sandbox sends no callouts: this test sends the message
    invoice = push.zuora.add("invoices", {"AccountId": push.account()})
    row, _ = push.ledger.record_callout(
        push.connection, "n-single", "1110", object_type="invoice", object_id=invoice["Id"]
    )

    result = push.fleet.send("ledgerbridge.push.callout", connection=push.connection, callout_id=row.id).get(
        timeout=60
    )

    assert result["status"] == "done"
    assert erp_documents(push.erp)[("invoice", invoice["InvoiceNumber"])] == 1
