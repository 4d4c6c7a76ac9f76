"""Housekeeping tasks: audit retention and connection probes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared import ports
from worker.app import app
from worker.wiring import item_context


@app.task(name="ledgerbridge.upkeep.prune_audit")
def prune_audit(*, retention_days: int) -> dict[str, Any]:
    """Delete audit rows older than ``retention_days``; returns how many went."""
    cutoff = datetime.now(UTC) - timedelta(days=retention_days)
    return {"deleted": ports.ledger().prune_audit(cutoff), "older_than": cutoff.isoformat()}


@app.task(name="ledgerbridge.upkeep.for_each_connection")
def for_each_connection(*, task: str, kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Enqueue ``task`` once per connection (beat's entries go through this, so every stored
    connection is pulled, swept and audited, not only the environment's default)."""
    names = ports.connection_names()
    for name in names:
        app.send_task(task, kwargs={**(kwargs or {}), "connection": name})
    return {"task": task, "connections": names}


@app.task(name="ledgerbridge.upkeep.probe_zuora")
def probe_zuora(*, connection: str | None = None) -> dict[str, Any]:
    """One authenticated read from the connection's Zuora tenant (the first accounting period)."""
    conn = ports.connection(connection)
    first = next(iter(ports.zuora(conn).periods.list(page_size=1)), None)
    return {"connection": conn.name, "period": first.name if first else None}


# -- item-level sweeps (shared/item_level/sweep.py) ----------------------------------------------

SWEEP_LOCK_SECONDS = 120
SWEEP_ROUNDS = 20


@app.task(name="ledgerbridge.upkeep.sweep")
def sweep_item_level(*, connection: str | None = None) -> dict[str, Any]:
    """Re-drive item-level rows stuck in pending, posting (in doubt) or failed past their backoff,
    posted rows not yet marked, and callouts whose task was lost. Locked: one sweep at a time."""
    from shared.coordination.run_lock import RunLock
    from shared.item_level.sweep import sweep

    ctx = item_context(connection)
    lock = RunLock(ports.redis_client(), ctx.connection, "sweep", ttl=SWEEP_LOCK_SECONDS)
    if not lock.acquire():
        return {"skipped": "another sweep is running"}
    totals: dict[str, Any] = {"pending": 0, "in_doubt": 0, "failed": 0, "callouts": 0, "to_mark": []}
    try:
        for _ in range(SWEEP_ROUNDS):
            summary = sweep(ctx)
            for key in ("pending", "in_doubt", "failed", "callouts"):
                totals[key] += getattr(summary, key)
            totals["to_mark"] = sorted(set(totals["to_mark"]) | set(summary.to_mark))
            if not summary.more or not lock.extend():
                break
    finally:
        lock.release()
    return totals


@app.task(name="ledgerbridge.upkeep.audit_marks")
def audit_marks_task(*, connection: str | None = None, stream: str | None = None) -> dict[str, int]:
    """Compare Zuora's id lists behind each stream's mark with the ledger; count and ingest what
    the marks missed (``missed_by_mark`` in ``ledgerbridge status``, which should stay 0)."""
    from shared import item_level
    from shared.coordination.run_lock import RunLock

    ctx = item_context(connection)
    window = timedelta(seconds=ports.settings().mark_audit_window_seconds)
    missed: dict[str, int] = {}
    # Rows behind a mark are committed, so a pull running meanwhile cannot cause a false count.
    lock = RunLock(
        ports.redis_client(), ctx.connection, "audit-marks", ttl=ports.settings().pull_lock_seconds
    )
    if not lock.acquire():
        return missed
    try:
        for chosen in item_level.select_streams([stream] if stream else None):
            missed[chosen.name] = item_level.audit_marks(ctx, chosen, window=window)
            lock.extend()
    finally:
        lock.release()
    return missed
