"""The push task: a recorded Zuora callout -> the record re-fetched and posted (same path as the pull)."""

from __future__ import annotations

from typing import Any

from celery import Task

from shared.errors import AuthFailed, RateLimited, Transient
from shared.item_level.push import process_callout
from shared.logs import log_context
from worker.app import app
from worker.tasks.pull import item_context, retry_countdown


@app.task(name="ledgerbridge.push.callout", bind=True, max_retries=8)
def process_callout_task(self: Task, *, connection: str, callout_id: int) -> dict[str, Any]:
    """Process one callout. Zuora being slow or down retries the task with a backoff; after the
    last retry the callout stays ``enqueued`` and the sweep sends it again."""
    ctx = item_context(connection)
    with log_context(connection=ctx.connection):
        try:
            return process_callout(ctx, callout_id)
        except (RateLimited, Transient, AuthFailed) as exc:
            raise self.retry(countdown=retry_countdown(exc, self.request.retries)) from exc
