"""Delivering the notice outbox (:mod:`shared.outbox`).

``ledgerbridge.notices.deliver()`` is enqueued right after a notice is committed (with the status
change it reports) and run by beat (``deliver-notices``) for whatever is left. It sends every due
notice once, outside any close lock; a notice a channel did not take gets its next attempt's time
in the ledger, further away after each failure, and the task retries itself for then (beat would
find it too). Any number of these may run at once: each notice is claimed by one of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Task

from shared import ports
from shared.outbox import RetryPolicy, deliver_due
from worker.app import INFRA_RETRY, MAX_COUNTDOWN, app
from worker.wiring import notifier


@app.task(bind=True, name="ledgerbridge.notices.deliver", **INFRA_RETRY)
def deliver(self: Task, *, limit: int = 50) -> dict[str, Any]:
    """Deliver the due notices, up to ``limit``; go on at once while more are due, and retry
    when a delivery failed, at the time its next attempt is due."""
    report = deliver_due(
        ports.ledger(), notifier(), policy=RetryPolicy.from_settings(ports.settings()), limit=limit
    )
    if report.more:
        raise self.retry(countdown=0, max_retries=None)
    if report.failed and report.next_due is not None:
        wait = (report.next_due - datetime.now(UTC)).total_seconds()
        raise self.retry(countdown=min(MAX_COUNTDOWN, max(1.0, wait)), max_retries=None)
    return report.as_dict()
