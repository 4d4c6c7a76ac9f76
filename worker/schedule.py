"""The beat schedule: periodic work, each entry idempotent and locked inside its task.

Every entry sets ``expires`` so that a beat that was down does not flood the queue with
stale runs when it comes back.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery.schedules import crontab

from shared.settings import Settings, SettingsError


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    return {
        "prune-audit": {
            "task": "ledgerbridge.upkeep.prune_audit",
            "schedule": crontab(minute="17", hour="3"),
            "kwargs": {"retention_days": settings.audit_retention_days},
            "options": {"expires": 3600},
        },
        # The notice outbox: what a lost enqueue, a dead deliverer or a due retry left undelivered.
        "deliver-notices": {
            "task": "ledgerbridge.notices.deliver",
            "schedule": timedelta(seconds=settings.sweep_interval_seconds),
            "kwargs": {},
            "options": {"expires": max(1, settings.sweep_interval_seconds)},
        },
        **item_level_schedule(settings),
    }


def _every(seconds: int, task: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    # A run that could not start before the next one is due is dropped, not queued behind it.
    # Fanned out to every connection (ledgerbridge.upkeep.for_each_connection).
    return {
        "task": "ledgerbridge.upkeep.for_each_connection",
        "schedule": timedelta(seconds=seconds),
        "kwargs": {"task": task, "kwargs": kwargs},
        "options": {"expires": max(1, seconds)},
    }


def item_level_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """One pull per stream (LEDGERBRIDGE_PULL_INTERVAL_SECONDS, or its entry in
    LEDGERBRIDGE_PULL_STREAM_INTERVALS), the external-payments poll (external payments fire no
    callout, so with the push on the payments pull must not be rare), the sweep and the mark audit.
    Every pull is locked per (connection, stream) in its task, so overlapping entries are safe."""
    from shared.item_level.streams import STREAM_NAMES, get_stream

    overrides: dict[str, int] = {}
    for name, seconds in settings.stream_intervals.items():
        try:
            overrides[get_stream(name).name] = seconds
        except ValueError:
            raise SettingsError(
                f"LEDGERBRIDGE_PULL_STREAM_INTERVALS: unknown stream {name!r}; one of: {', '.join(STREAM_NAMES)}"
            ) from None
    entries = {
        f"pull-{name}": _every(
            overrides.get(name, settings.pull_interval_seconds), "ledgerbridge.pull.stream", {"stream": name}
        )
        for name in STREAM_NAMES
    }
    entries["poll-external-payments"] = _every(
        settings.external_payments_poll_seconds, "ledgerbridge.pull.stream", {"stream": "payments"}
    )
    entries["sweep-item-level"] = _every(settings.sweep_interval_seconds, "ledgerbridge.upkeep.sweep", {})
    entries["audit-marks"] = _every(
        settings.mark_audit_interval_seconds, "ledgerbridge.upkeep.audit_marks", {}
    )
    # A close whose chain died (killed worker, flushed Redis) is resumed, never stranded: looked for
    # at least as often as a run can go stale.
    entries["sweep-close-runs"] = _every(
        min(settings.sweep_interval_seconds * 10, settings.close_stale_seconds),
        "ledgerbridge.close.sweep",
        {"stale_after": settings.close_stale_seconds},
    )
    return entries
