"""The Zuora sandbox's callout sender over loopback: our template, HMAC signature, Zuora's retry
rules (zuora-api.md section 12.2) and optional duplicates, received by a recording endpoint."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.server import ThreadedServer
from sandbox.zuora import Sizes
from shared.callouts import sign
from tests.integration.item_level.support import Zuora, wait_until

SECRET = "sender-secret"
SMALL = Sizes(
    accounts=4,
    invoices=8,
    payments=4,
    refunds=1,
    credit_memos=2,
    debit_memos=2,
    tie_count=0,
    large_invoices=0,
)


class Recorder:
    """An HTTP endpoint that answers from a script (then 200) and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: list[int] = []
        self._lock = threading.Lock()

    async def endpoint(self, request: Request) -> JSONResponse:
        body = await request.body()
        with self._lock:
            self.requests.append({"headers": dict(request.headers), "body": body})
            status = self.script.pop(0) if self.script else 200
        return JSONResponse({"success": status == 200}, status_code=status)


@pytest.fixture
def recorder():
    recorder = Recorder()
    server = ThreadedServer(Starlette(routes=[Route("/hook", recorder.endpoint, methods=["POST"])])).start()
    recorder.url = server.url + "/hook"
    yield recorder
    server.stop()


@pytest.fixture
def zuora(zuora_sandbox):
    return Zuora(zuora_sandbox(seed=5, sizes=SMALL).url)


def test_posting_an_invoice_sends_one_signed_callout_with_our_template(zuora, recorder):
    zuora.configure_callouts(url=recorder.url, secret=SECRET, retry_interval_seconds=0.1)
    account = zuora.rows("accounts")[0]["Id"]
    invoice = zuora.add("invoices", {"AccountId": account})

    wait_until(lambda: recorder.requests, timeout=10, what="a callout")
    sent = recorder.requests[0]
    headers = sent["headers"]
    assert json.loads(sent["body"]) == {"eventCode": "1110", "objectId": invoice["Id"], "accountId": account}
    assert headers["x-zuora-signature"] == sign(SECRET, headers["x-zuora-timestamp"], sent["body"])
    assert len(headers["zuora-request-id"]) == 32
    assert len(headers["zuora-notification-id"]) == 32
    assert headers["content-type"] == "application/json"


def test_failed_deliveries_are_retried_with_the_same_notification_id(zuora, recorder):
    recorder.script = [503, 429]
    zuora.configure_callouts(url=recorder.url, secret=SECRET, retry_interval_seconds=0.1, max_attempts=3)
    zuora.add("invoices", {"AccountId": zuora.rows("accounts")[0]["Id"]})

    wait_until(lambda: len(recorder.requests) == 3, timeout=10, what="three attempts")
    # The recorder sees a request before the sender has read its response and logged the attempt.
    wait_until(lambda: zuora.callouts()["pending"] == 0, timeout=10, what="the sender to settle")
    notifications = {r["headers"]["zuora-notification-id"] for r in recorder.requests}
    request_ids = {r["headers"]["zuora-request-id"] for r in recorder.requests}
    assert len(notifications) == 1
    assert len(request_ids) == 3
    assert [a["status"] for a in zuora.callouts()["attempts"]] == [503, 429, 200]


def test_a_400_is_not_retried_and_attempts_stop_at_the_maximum(zuora, recorder):
    recorder.script = [400, 500, 500, 500]
    zuora.configure_callouts(url=recorder.url, secret=SECRET, retry_interval_seconds=0.05, max_attempts=2)
    account = zuora.rows("accounts")[0]["Id"]
    zuora.add("invoices", {"AccountId": account})
    wait_until(lambda: len(recorder.requests) == 1, timeout=10, what="one attempt")
    zuora.add("invoices", {"AccountId": account})
    wait_until(lambda: len(recorder.requests) == 3, timeout=10, what="two attempts of the second")
    wait_until(lambda: zuora.callouts()["pending"] == 0, timeout=10, what="the sender to settle")
    assert [a["status"] for a in zuora.callouts()["attempts"]] == [400, 500, 500]


def test_external_payments_fire_no_callout_unless_configured(zuora, recorder):
    zuora.configure_callouts(url=recorder.url, secret=SECRET, retry_interval_seconds=0.05)
    account = zuora.rows("accounts")[0]["Id"]
    zuora.add("payments", {"AccountId": account, "Type": "External", "Amount": 10})
    electronic = zuora.add("payments", {"AccountId": account, "Type": "Electronic", "Amount": 11})

    wait_until(lambda: recorder.requests, timeout=10, what="a callout")
    wait_until(lambda: zuora.callouts()["pending"] == 0, timeout=10, what="the sender to settle")
    assert [json.loads(r["body"])["objectId"] for r in recorder.requests] == [electronic["Id"]]
    assert json.loads(recorder.requests[0]["body"])["eventCode"] == "2120"


def test_a_memo_changed_to_posted_fires_its_posted_event(zuora, recorder):
    zuora.configure_callouts(url=recorder.url, secret=SECRET, retry_interval_seconds=0.05)
    memo = zuora.add("debit-memos", {"AccountId": zuora.rows("accounts")[0]["Id"], "Status": "Draft"})
    zuora.update("debit-memos", memo["Id"], {"Status": "Posted"})
    wait_until(lambda: recorder.requests, timeout=10, what="a callout")
    assert json.loads(recorder.requests[0]["body"])["eventCode"] == "2820"


def test_duplicates_repeat_the_notification_id(zuora, recorder):
    zuora.configure_callouts(url=recorder.url, secret=SECRET, duplicate_rate=1.0, seed=1)
    zuora.add("invoices", {"AccountId": zuora.rows("accounts")[0]["Id"]})
    wait_until(lambda: len(recorder.requests) == 2, timeout=10, what="a callout and its duplicate")
    first, second = recorder.requests
    assert first["headers"]["zuora-notification-id"] == second["headers"]["zuora-notification-id"]
    assert first["headers"]["zuora-request-id"] != second["headers"]["zuora-request-id"]


def test_bad_configuration_is_a_400(zuora):
    response = httpx.post(zuora.url + "/_sandbox/callouts", json={"url": "ftp://x", "secret": "s"})
    assert response.status_code == 400
    response = httpx.post(
        zuora.url + "/_sandbox/callouts", json={"url": "http://x", "secret": "s", "max_attempts": 6}
    )
    assert response.status_code == 400
