"""Notifications: the log channel, the webhook channel (JSON POST, never failing the caller)."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import httpx

from shared.notify import FanOut, LogNotifier, Notice, WebhookNotifier, notifier_from_settings
from shared.settings import load_settings

NOTICE = Notice(
    event="close.completed",
    text="close of 'December 2024' is done",
    severity="info",
    subject="close:3",
    connection="acme",
    fields={"entries": 6, "totals": {"USD": {"debit": Decimal("100.10"), "credit": Decimal("100.10")}}},
)


def webhook(handler, **options):
    # The webhook endpoint is the system edge: a MockTransport stands in for Slack.
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return WebhookNotifier(
        "https://hooks.example.test/T000/B000/x", client=client, sleep=lambda s: None, **options
    )


def test_webhook_posts_text_and_structured_fields_as_json():
    sent = []

    def handler(request):
        sent.append(request)
        return httpx.Response(200, text="ok")

    webhook(handler).send(NOTICE)

    assert len(sent) == 1
    assert sent[0].headers["content-type"] == "application/json"
    assert json.loads(sent[0].content) == {
        "text": "close of 'December 2024' is done",
        "event": "close.completed",
        "severity": "info",
        "subject": "close:3",
        "connection": "acme",
        "fields": {"entries": 6, "totals": {"USD": {"debit": "100.10", "credit": "100.10"}}},
    }


def test_webhook_retries_a_5xx_once_then_logs_and_returns(caplog):
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(503, text="busy")

    with caplog.at_level(logging.WARNING, logger="ledgerbridge.notify"):
        webhook(handler).send(NOTICE)

    assert len(calls) == 2
    assert [r.getMessage() for r in caplog.records] == ["could not deliver a notice to the webhook"]
    assert caplog.records[0].webhook_problem == "HTTP 503: busy"


def test_webhook_does_not_retry_a_4xx():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(404, text="no_service")

    webhook(handler).send(NOTICE)

    assert len(calls) == 1


def test_webhook_unreachable_never_raises(caplog):
    def handler(request):
        raise httpx.ConnectError("connection refused", request=request)

    with caplog.at_level(logging.WARNING, logger="ledgerbridge.notify"):
        webhook(handler).send(NOTICE)

    assert "ConnectError: connection refused" in caplog.records[0].webhook_problem


def test_log_channel_writes_the_text_with_fields(caplog):
    with caplog.at_level(logging.INFO, logger="ledgerbridge.notify"):
        LogNotifier().send(NOTICE)

    record = caplog.records[0]
    assert (record.levelname, record.getMessage(), record.event) == (
        "INFO",
        "close of 'December 2024' is done",
        "close.completed",
    )
    assert record.fields["totals"]["USD"]["debit"] == "100.10"


def test_fan_out_keeps_going_when_a_channel_breaks():
    got = []

    class Broken:
        def send(self, notice):
            raise RuntimeError("broken channel")

    class Recorder:
        def send(self, notice):
            got.append(notice)

    FanOut([Broken(), Recorder()]).send(NOTICE)

    assert got == [NOTICE]


def test_notifier_from_settings_adds_the_webhook_only_when_configured():
    plain = notifier_from_settings(load_settings())
    hooked = notifier_from_settings(load_settings(notify_webhook_url="https://hooks.example.test/x"))

    assert [type(c).__name__ for c in plain.channels] == ["LogNotifier"]
    assert [type(c).__name__ for c in hooked.channels] == ["LogNotifier", "WebhookNotifier"]
    assert hooked.channels[1].url == "https://hooks.example.test/x"
