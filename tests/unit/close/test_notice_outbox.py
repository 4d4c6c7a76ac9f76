"""The close's notices through the outbox: recorded with the status they report, delivered after,
once, retried with backoff while the webhook fails, each delivery carrying the notice's id."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.close.driver import record_result
from shared.close.results import Stop
from shared.ledger.migrate import upgrade
from shared.ledger.models import CloseRun
from shared.ledger.repo import Ledger
from shared.notify import DeliveryFailed, FanOut, LogNotifier, Notice, WebhookNotifier
from shared.outbox import LEASE_SECONDS, RetryPolicy, deliver_due, deliver_notice, draft
from shared.settings import load_settings
from tests.support.notify import RecordingNotifier

POLICY = RetryPolicy(base=10.0, cap=60.0, jitter=lambda ceiling: ceiling)
NOTICE = Notice(
    event="close.completed",
    text="close of 'December 2024' is done",
    severity="info",
    subject="close:3",
    connection="acme",
)


@pytest.fixture
def ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    made = Ledger.from_url(url)
    yield made
    made.dispose()


class FailingNotifier(RecordingNotifier):
    """A channel that refuses the first ``failures`` deliveries (the webhook answering 500)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.tries = 0

    def deliver(self, notice: Notice) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise DeliveryFailed("HTTP 500: down")
        super().deliver(notice)


def webhook(handler) -> WebhookNotifier:
    # The webhook endpoint is the system edge: a MockTransport stands in for it.
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return WebhookNotifier("https://hooks.example.test/x", client=client, sleep=lambda s: None)


def record(ledger, key: str = "close:3:done:attempt-1") -> int:
    run, _ = ledger.open_close_run("acme", "December 2024")
    ledger.update_close_run(run.id or 0, status="done", notice=lambda changed: draft(NOTICE, dedupe_key=key))
    (row,) = ledger.notices_of("close:3")
    return row.id or 0


def test_retry_policy_doubles_from_the_base_up_to_the_cap():
    assert [POLICY.delay(n) for n in range(1, 6)] == [10.0, 20.0, 40.0, 60.0, 60.0]


def test_the_retry_policy_comes_from_the_settings():
    policy = RetryPolicy.from_settings(
        load_settings(notify_retry_base_seconds=2, notify_retry_max_seconds=30)
    )

    assert (policy.base, policy.cap) == (2.0, 30.0)


def test_a_due_notice_is_delivered_once_with_its_id(ledger):
    notice_id = record(ledger)
    channel = RecordingNotifier()

    first = deliver_due(ledger, channel, policy=POLICY)
    second = deliver_due(ledger, channel, policy=POLICY, now=datetime.now(UTC) + timedelta(days=1))

    assert (first.delivered, first.failed, first.next_due) == ([notice_id], [], None)
    assert (second.delivered, second.failed) == ([], [])
    (sent,) = channel.sent
    assert sent == Notice(**{**NOTICE.__dict__, "notice_id": notice_id})
    (row,) = ledger.notices_of("close:3")
    assert row.delivered_at is not None and row.attempts == 1


def test_a_failed_delivery_is_retried_after_a_growing_wait_then_delivered_once(ledger):
    notice_id = record(ledger)
    channel = FailingNotifier(failures=2)
    t0 = datetime.now(UTC)

    outcomes = [
        deliver_notice(ledger, channel, notice_id, policy=POLICY, now=t0),
        deliver_notice(ledger, channel, notice_id, policy=POLICY, now=t0 + timedelta(seconds=9)),
        deliver_notice(ledger, channel, notice_id, policy=POLICY, now=t0 + timedelta(seconds=10)),
        deliver_notice(ledger, channel, notice_id, policy=POLICY, now=t0 + timedelta(seconds=29)),
        deliver_notice(ledger, channel, notice_id, policy=POLICY, now=t0 + timedelta(seconds=30)),
        deliver_notice(ledger, channel, notice_id, policy=POLICY, now=t0 + timedelta(days=1)),
    ]

    # Failed at 0 s (due at 10 s), not due at 9 s, failed at 10 s (due at 30 s), delivered at 30 s.
    assert outcomes == [False, None, False, None, True, None]
    assert [n.notice_id for n in channel.sent] == [notice_id]
    (row,) = ledger.notices_of("close:3")
    assert (row.attempts, row.last_error) == (3, "HTTP 500: down")
    assert row.delivered_at is not None


def test_a_failed_delivery_is_logged_with_the_notice_id_and_the_problem(ledger, caplog):
    notice_id = record(ledger)

    with caplog.at_level(logging.WARNING, logger="ledgerbridge.notify"):
        report = deliver_due(ledger, FailingNotifier(failures=1), policy=POLICY)

    assert report.failed == [notice_id]
    (line,) = caplog.records
    assert (line.getMessage(), line.notice_id, line.attempt, line.problem, line.retry_in_seconds) == (
        "a notice was not delivered; it is tried again later",
        notice_id,
        1,
        "HTTP 500: down",
        10.0,
    )
    assert ledger.undelivered_notices("acme").last_error == "HTTP 500: down"


def test_a_notice_a_dead_deliverer_claimed_is_sent_again_after_its_lease_with_the_same_id(ledger):
    notice_id = record(ledger)
    t0 = datetime.now(UTC)
    assert ledger.claim_notice(notice_id, lease=LEASE_SECONDS, now=t0) is not None  # then it died
    channel = RecordingNotifier()

    during = deliver_due(ledger, channel, policy=POLICY, now=t0 + timedelta(seconds=LEASE_SECONDS - 1))
    after = deliver_due(ledger, channel, policy=POLICY, now=t0 + timedelta(seconds=LEASE_SECONDS + 1))

    assert (during.delivered, after.delivered) == ([], [notice_id])
    assert [n.notice_id for n in channel.sent] == [notice_id]


def test_the_webhook_body_and_header_carry_the_notice_id():
    sent: list[httpx.Request] = []

    def handler(request):
        sent.append(request)
        return httpx.Response(200)

    webhook(handler).deliver(Notice(**{**NOTICE.__dict__, "notice_id": 42}))

    (request,) = sent
    assert json.loads(request.content)["notice_id"] == 42
    assert request.headers["ledgerbridge-notice-id"] == "42"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (httpx.Response(500, text="boom"), "HTTP 500: boom"),
        (httpx.Response(404, text="no_service"), "HTTP 404: no_service"),
    ],
)
def test_webhook_deliver_makes_one_attempt_and_says_why_it_failed(answer, problem):
    calls = []

    def handler(request):
        calls.append(request)
        return answer

    with pytest.raises(DeliveryFailed) as caught:
        webhook(handler).deliver(NOTICE)

    assert (len(calls), caught.value.problem) == (1, problem)


def test_fan_out_delivers_to_every_channel_and_names_the_one_that_failed():
    log_channel = RecordingNotifier()

    def handler(request):
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(DeliveryFailed) as caught:
        FanOut([log_channel, webhook(handler)]).deliver(NOTICE)

    assert log_channel.sent == [NOTICE]
    assert caught.value.problem == "WebhookNotifier: ConnectError: connection refused"


def test_the_log_channel_writes_the_notice_id(caplog):
    with caplog.at_level(logging.INFO, logger="ledgerbridge.notify"):
        LogNotifier().deliver(Notice(**{**NOTICE.__dict__, "notice_id": 7}))

    assert caplog.records[0].notice_id == 7


def test_a_stopped_close_records_its_notice_with_the_status_even_when_delivery_fails(harness):
    harness.notifier = FailingNotifier(failures=1)
    run_id = harness.open()
    run = harness.ledger.get_close_run(run_id)

    updated = record_result(harness.context(), run, "verify", Stop("2 entries missing in the ERP"))

    assert updated.status == "needs_attention"
    (row,) = harness.ledger.notices_of(f"close:{run_id}")
    assert (row.event, row.connection, row.dedupe_key, row.attempts, row.delivered_at, row.last_error) == (
        "close.needs_attention",
        harness.connection,
        f"close:{run_id}:needs_attention:attempt-1",
        1,
        None,
        "HTTP 500: down",
    )
    assert row.payload["text"].endswith(f"needs attention (close run {run_id}): 2 entries missing in the ERP")
    assert harness.notifier.sent == []


def test_a_stopped_close_hands_its_notice_on_after_the_commit(harness):
    handed: list[CloseRun] = []
    run = harness.close("November 2024")  # stops: a closed period
    ctx = harness.context()
    ctx.deliver_notices = lambda: handed.append(harness.ledger.get_close_run(run.id or 0))

    record_result(ctx, harness.ledger.get_close_run(run.id or 0), "lookup", Stop("again"))

    # Already committed when handed on: the deliverer reads it from the ledger.
    (seen,) = handed
    assert seen.status == "needs_attention"
    assert len(harness.ledger.notices_of(f"close:{run.id}")) == 1  # the same attempt's outcome: one notice


def test_a_dry_run_records_no_notice(harness):
    run = harness.close(dry_run=True)

    assert run.status == "dry_run"
    assert harness.ledger.notices_of(f"close:{run.id}") == []
    assert harness.ledger.undelivered_notices(harness.connection).count == 0
