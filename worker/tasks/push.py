"""The push tasks: recorded Zuora callouts -> their records re-fetched and posted (the pull's path)."""

from __future__ import annotations

from typing import Any

from celery import Task

from shared.errors import AuthFailed, RateLimited, Transient
from shared.item_level.push import process_callouts
from shared.logs import log_context
from worker.app import app
from worker.wiring import PROCESS_CALLOUTS, item_context, retry_countdown


def _process(task: Task, connection: str, callout_ids: list[int]) -> list[dict[str, Any]]:
    ctx = item_context(connection)
    with log_context(connection=ctx.connection):
        try:
            return process_callouts(ctx, callout_ids)
        except (RateLimited, Transient, AuthFailed) as exc:
            raise task.retry(countdown=retry_countdown(exc, task.request.retries)) from exc


@app.task(name=PROCESS_CALLOUTS, bind=True, max_retries=8)
def process_callouts_task(self: Task, *, connection: str, callout_ids: list[int]) -> list[dict[str, Any]]:
    """Process a batch of callouts (what the receiver sends, and the sweep). Zuora being slow or
    down retries the batch with a backoff; after the last retry the callouts stay ``enqueued`` and
    the sweep sends them again."""
    return _process(self, connection, callout_ids)


@app.task(name="ledgerbridge.push.callout", bind=True, max_retries=8)
def process_callout_task(self: Task, *, connection: str, callout_id: int) -> dict[str, Any]:
    """One callout: the message receivers sent before they sent batches, still accepted so that
    none queued across an upgrade is dropped."""
    return _process(self, connection, [callout_id])[0]
