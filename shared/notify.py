"""Telling people what happened: one :class:`Notifier` interface, a log channel and a webhook channel.

A :class:`Notice` is what a person needs to act: a one-line ``text`` (what happened, what to do),
an ``event`` name such as ``close.trial_balance_error``, a ``severity`` and structured ``fields``
(counts, totals, the close run id). Channels:

* :class:`LogNotifier` - a JSON log line at ``warning`` (``error`` severity: ``error``, ``info``:
  ``info``) on the ``ledgerbridge.notify`` logger. Always on.
* :class:`WebhookNotifier` - a JSON ``POST`` to ``LEDGERBRIDGE_NOTIFY_WEBHOOK_URL`` with a ``text``
  field (what a Slack incoming webhook shows) plus ``event``, ``severity``, ``subject``,
  ``connection`` and ``fields``. Amounts are sent as exact decimal strings.

Two ways to send. :meth:`Notifier.deliver` is what the notice outbox uses
(:mod:`shared.outbox`): one attempt on every channel, and :class:`DeliveryFailed` when a channel
did not take the notice, so the outbox keeps it and tries again later. :meth:`Notifier.send` never
fails the work that notifies: a webhook that times out, answers an error or cannot be reached is
logged (with the reason) and forgotten, after one retry for a dropped connection, a timeout or a
5xx.

A notice from the outbox carries its ``notice_id`` (in the body and in the
``Ledgerbridge-Notice-Id`` header): the outbox delivers at least once, so a receiver that sees an
id again drops it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

import httpx

from shared.settings import Settings

log = logging.getLogger("ledgerbridge.notify")

Severity = Literal["info", "warning", "error"]
_LOG_LEVELS: dict[str, int] = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@dataclass(frozen=True)
class Notice:
    """One message for a person. ``text`` is complete on its own; ``fields`` are for machines."""

    event: str
    text: str
    severity: Severity = "warning"
    subject: str | None = None
    connection: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    # The notice outbox row this is (:mod:`shared.outbox`): the same id on every resend.
    notice_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The webhook body: ``text`` first (Slack shows it), then the structured fields, and the
        ``notice_id`` of a notice from the outbox."""
        body = {
            "text": self.text,
            "event": self.event,
            "severity": self.severity,
            "subject": self.subject,
            "connection": self.connection,
            "fields": _plain(self.fields),
        }
        if self.notice_id is not None:
            body["notice_id"] = self.notice_id
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any], *, notice_id: int | None = None) -> Notice:
        """The notice :meth:`as_json` gave ``body`` (amounts stay the exact strings it wrote)."""
        severity = body.get("severity")
        return cls(
            event=str(body["event"]),
            text=str(body["text"]),
            severity=severity if severity in ("info", "warning", "error") else "warning",
            subject=body.get("subject"),
            connection=body.get("connection"),
            fields=dict(body.get("fields") or {}),
            notice_id=notice_id,
        )


class DeliveryFailed(Exception):
    """A channel did not take a notice (``problem`` says why: the HTTP status and the start of the
    answer, or the connection error); the outbox tries again later."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _plain(value: Any) -> Any:
    """JSON-ready: Decimal as its exact string, dates as ISO text, tuples as lists."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Notifier(Protocol):
    def send(self, notice: Notice) -> None:
        """Deliver ``notice``; never raises."""
        ...

    def deliver(self, notice: Notice) -> None:
        """One attempt to deliver ``notice``; raises :class:`DeliveryFailed` when it was not taken."""
        ...


class LogNotifier:
    """Writes each notice as a structured log line."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._log = logger

    def send(self, notice: Notice) -> None:
        extra = {
            "event": notice.event,
            "severity": notice.severity,
            "subject": notice.subject,
            "connection": notice.connection,
            "fields": _plain(notice.fields),
        }
        if notice.notice_id is not None:
            extra["notice_id"] = notice.notice_id
        self._log.log(_LOG_LEVELS.get(notice.severity, logging.WARNING), notice.text, extra=extra)

    def deliver(self, notice: Notice) -> None:
        self.send(notice)


class WebhookNotifier:
    """POSTs each notice as JSON to ``url`` (e.g. a Slack incoming webhook). Never raises.

    ``client`` is injectable (tests pass one with a mock transport); by default one
    ``httpx.Client`` with a ``timeout``-second limit is opened on first use and kept.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        client: httpx.Client | None = None,
        retry_pause: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self._timeout = timeout
        self._client = client
        self._retry_pause = retry_pause
        self._sleep = sleep

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(timeout=self._timeout, headers={"User-Agent": "ledgerbridge/0.1"})
        return self._client

    def _post(self, notice: Notice) -> tuple[str, bool] | None:
        """One POST: None when the webhook took it, else ``(problem, worth retrying soon)``."""
        body = json.dumps(notice.as_json(), ensure_ascii=False)
        headers = {"Content-Type": "application/json"}
        if notice.notice_id is not None:
            headers["Ledgerbridge-Notice-Id"] = str(notice.notice_id)
        try:
            response = self._http().post(self.url, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", True
        if response.is_success:
            return None
        return f"HTTP {response.status_code}: {response.text[:200]}", response.status_code >= 500

    def deliver(self, notice: Notice) -> None:
        """One POST; :class:`DeliveryFailed` unless the webhook answered 2xx."""
        failure = self._post(notice)
        if failure is not None:
            raise DeliveryFailed(failure[0])

    def send(self, notice: Notice) -> None:
        problem = ""
        for attempt in (1, 2):
            failure = self._post(notice)
            if failure is None:
                return
            problem, retry = failure
            if not retry or attempt == 2:
                break
            self._sleep(self._retry_pause)
        # A lost notice must not fail the close that sent it: the log channel has it too.
        log.warning(
            "could not deliver a notice to the webhook",
            extra={"event": notice.event, "webhook_problem": problem},
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class FanOut:
    """Sends each notice to every channel; one channel's failure never stops the others."""

    def __init__(self, channels: Sequence[Notifier]) -> None:
        self.channels = tuple(channels)

    def send(self, notice: Notice) -> None:
        for channel in self.channels:
            try:
                channel.send(notice)
            except Exception:
                # Channels promise not to raise; this guards a broken one so the rest still run.
                log.exception("a notifier channel failed", extra={"event": notice.event})

    def deliver(self, notice: Notice) -> None:
        """One attempt on every channel (a failing one does not stop the others);
        :class:`DeliveryFailed` naming the failures when any channel failed. A retry sends to
        every channel again."""
        problems: list[str] = []
        for channel in self.channels:
            try:
                channel.deliver(notice)
            except DeliveryFailed as exc:
                problems.append(f"{type(channel).__name__}: {exc.problem}")
            except Exception as exc:
                log.exception("a notifier channel failed", extra={"event": notice.event})
                problems.append(f"{type(channel).__name__}: {type(exc).__name__}: {exc}")
        if problems:
            raise DeliveryFailed("; ".join(problems))


def notifier_from_settings(settings: Settings) -> Notifier:
    """The log channel, plus the webhook channel when ``LEDGERBRIDGE_NOTIFY_WEBHOOK_URL`` is set."""
    channels: list[Notifier] = [LogNotifier()]
    if settings.notify_webhook_url:
        channels.append(WebhookNotifier(settings.notify_webhook_url))
    return FanOut(channels)
