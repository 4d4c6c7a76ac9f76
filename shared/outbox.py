"""Delivering the notice outbox: notices for people, recorded in the ledger with the change they
report (:mod:`shared.ledger.notices`), sent afterwards through the notifier's channels.

:func:`deliver_due` is what ``ledgerbridge.notices.deliver`` does, right after a change commits
a notice and from beat for whatever is left (a worker killed between the commit and the enqueue,
a message lost with Redis, a retry): for each undelivered notice that is due, claim it (one
deliverer at a time; the claim is a lease of :data:`LEASE_SECONDS`), make one attempt on every
channel (:meth:`~shared.notify.Notifier.deliver`), and record the outcome: ``delivered_at``, or
the problem and the next attempt's time, further away after each failure
(:class:`RetryPolicy`, ``LEDGERBRIDGE_NOTIFY_RETRY_BASE_SECONDS`` doubling up to
``LEDGERBRIDGE_NOTIFY_RETRY_MAX_SECONDS``). A notice is never given up: it is retried at the cap,
and ``ledgerbridge status`` shows it undelivered with its last error.

At least once, with an id: a deliverer that dies after the webhook took the notice and before
``delivered_at`` is committed leaves the notice to be sent again when its lease ends. Each
delivery carries the outbox row's id (``notice_id`` in the body, the ``Ledgerbridge-Notice-Id``
header), the same on every resend, so a receiver drops one it has seen.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.backoff import Jitter, exponential, full_jitter
from shared.ledger.models import NoticeOutbox as NoticeRow
from shared.ledger.models import utcnow
from shared.ledger.notices import NewNotice
from shared.ledger.repo import Ledger
from shared.notify import DeliveryFailed, Notice, Notifier
from shared.settings import Settings

log = logging.getLogger("ledgerbridge.notify")

# How long a claimed notice is this deliverer's: longer than one attempt on every channel (the
# webhook's timeout is 5 s). A deliverer that dies leaves the notice due again after it.
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """When a notice whose delivery failed is tried again: ``base`` seconds after the first failure,
    doubling after each one up to ``cap`` (with jitter, never sooner than ``base``)."""

    base: float = 10.0
    cap: float = 3600.0
    jitter: Jitter = full_jitter

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(base=settings.notify_retry_base_seconds, cap=settings.notify_retry_max_seconds)

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones."""
        return exponential(attempts, base=self.base, cap=self.cap, floor=self.base, jitter=self.jitter)


def draft(notice: Notice, *, dedupe_key: str) -> NewNotice:
    """What to record for ``notice`` in the outbox (``connection`` and ``subject`` are required)."""
    if notice.connection is None or notice.subject is None:
        raise ValueError(f"a notice for the outbox needs a connection and a subject: {notice.event}")
    return NewNotice(
        connection=notice.connection,
        subject=notice.subject,
        event=notice.event,
        dedupe_key=dedupe_key,
        # The fields as they are: the ledger's JSON keeps amounts exact (Decimal in, Decimal out).
        payload={**notice.as_json(), "fields": dict(notice.fields)},
    )


def notice_of(row: NoticeRow) -> Notice:
    """The notice an outbox row holds, with the row's id."""
    payload: Mapping[str, Any] = row.payload
    return Notice.from_json(payload, notice_id=row.id)


@dataclass
class DeliveryReport:
    """What one :func:`deliver_due` did: the ids delivered and failed, whether due notices were
    left for another round (``more``), and when the next undelivered one is due."""

    delivered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    more: bool = False
    next_due: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "more": self.more,
            "next_due": self.next_due.isoformat() if self.next_due is not None else None,
        }


def deliver_notice(
    ledger: Ledger, notifier: Notifier, notice_id: int, *, policy: RetryPolicy, now: datetime | None = None
) -> bool | None:
    """Claim notice ``notice_id``, make one attempt and record it: True delivered, False failed
    (due again after the policy's delay), None not claimed (delivered already, not due, or
    another deliverer holds it)."""
    at = now or utcnow()
    row = ledger.claim_notice(notice_id, lease=LEASE_SECONDS, now=at)
    if row is None:
        return None
    notice = notice_of(row)
    context = {"notice_id": notice_id, "event": row.event, "subject": row.subject, "attempt": row.attempts}
    try:
        notifier.deliver(notice)
    except DeliveryFailed as exc:
        delay = policy.delay(row.attempts)
        ledger.notice_failed(
            notice_id,
            attempt=row.attempts,
            error=exc.problem,
            retry_at=(now or utcnow()) + timedelta(seconds=delay),
        )
        log.warning(
            "a notice was not delivered; it is tried again later",
            extra={**context, "problem": exc.problem, "retry_in_seconds": round(delay, 1)},
        )
        return False
    ledger.notice_delivered(notice_id)
    log.info("notice delivered", extra=context)
    return True


def deliver_due(
    ledger: Ledger, notifier: Notifier, *, policy: RetryPolicy, limit: int = 50, now: datetime | None = None
) -> DeliveryReport:
    """Deliver up to ``limit`` of the notices due by ``now``, oldest first (see the module)."""
    report = DeliveryReport()
    due = ledger.notices_due(now=now, limit=limit)
    for notice_id in due:
        outcome = deliver_notice(ledger, notifier, notice_id, policy=policy, now=now)
        if outcome is True:
            report.delivered.append(notice_id)
        elif outcome is False:
            report.failed.append(notice_id)
    report.more = len(due) >= limit
    report.next_due = ledger.next_notice_due()
    return report
