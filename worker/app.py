"""The Celery application: configured here and nowhere else.

Delivery is at-least-once (``acks_late`` + ``task_reject_on_worker_lost``): a worker killed
mid-task leaves its message to be redelivered, and every task is idempotent because the ledger,
not the queue, records what has been done. Waiting is ``self.retry(countdown=...)`` capped at
:data:`MAX_COUNTDOWN`; Redis must keep an unacknowledged message invisible for longer than any
countdown or task, or it would be delivered twice while still scheduled.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task, signals
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from shared.logs import configure_logging
from shared.memory import release_free_heap
from shared.settings import get_settings

# Longest retry countdown any task asks for, and the hard limit of one task run (seconds).
MAX_COUNTDOWN = 600

# The ledger or Redis unreachable: nothing was recorded, so the task itself is retried with backoff
# (the close's steps and the notice deliveries are idempotent; a committed claim ends with its lease).
INFRA_RETRY: dict[str, Any] = {
    "autoretry_for": (OperationalError, RedisError),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": None,
}
TASK_TIME_LIMIT = 900
VISIBILITY_TIMEOUT = 3600
# Redis keeps one list per priority step and serves step 0 first. Every task is sent at 0 except
# the posting batches, the bulk of a backlog: sent at BULK_PRIORITY, they never hold up a close
# step, a callout or a mark run queued after thousands of them. A connection's batches beyond its
# fair share of the queue go at BACKLOG_PRIORITY, behind every other connection's share
# (shared/coordination/fair_share.py).
PRIORITY_STEPS = [0, 3, 6, 9]
BULK_PRIORITY = 3
BACKLOG_PRIORITY = 6

TASK_MODULES = [
    "worker.tasks.upkeep",
    "worker.tasks.close",
    "worker.tasks.pull",
    "worker.tasks.push",
    "worker.tasks.notices",
]


class UnsafeConfiguration(RuntimeError):
    """The Celery configuration could lose or duplicate work; the message says what to change."""


def build_config(redis_url: str, queue: str = "ledgerbridge") -> dict[str, Any]:
    return {
        "broker_url": redis_url,
        "result_backend": redis_url,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": TASK_TIME_LIMIT,
        "task_soft_time_limit": TASK_TIME_LIMIT - 60,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            "priority_steps": PRIORITY_STEPS,
        },
        "result_backend_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT},
        "broker_connection_retry_on_startup": True,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_default_queue": queue,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "result_expires": 7 * 24 * 3600,
        "result_extended": True,
        "worker_hijack_root_logger": False,
        "enable_utc": True,
        "timezone": "UTC",
    }


def check_config(conf: Any) -> None:
    """Refuse combinations that lose or duplicate work. Raises :class:`UnsafeConfiguration`."""
    problems: list[str] = []
    if not conf.task_acks_late:
        problems.append(
            "task_acks_late must be True: a task acknowledged before it runs is lost if the worker dies"
        )
    if not conf.task_reject_on_worker_lost:
        problems.append(
            "task_reject_on_worker_lost must be True: otherwise a killed worker's task is acknowledged"
        )
    if conf.worker_prefetch_multiplier != 1:
        problems.append("worker_prefetch_multiplier must be 1: prefetched long tasks wait behind each other")
    if set(conf.accept_content or []) != {"json"} or conf.task_serializer != "json":
        problems.append("only the json serializer is allowed (task arguments are primitive ids)")
    visibility = (conf.broker_transport_options or {}).get("visibility_timeout", 3600)
    longest = max(MAX_COUNTDOWN, conf.task_time_limit or 0)
    if str(conf.broker_url or "").startswith(("redis://", "rediss://")) and visibility <= longest:
        problems.append(
            f"broker visibility_timeout ({visibility}s) must exceed the longest countdown or task ({longest}s), "
            "or Redis redelivers messages that are still scheduled"
        )
    if conf.task_always_eager:
        problems.append("task_always_eager must be False outside unit tests: eager tasks skip the broker")
    if problems:
        raise UnsafeConfiguration("unsafe Celery configuration:\n  " + "\n  ".join(problems))


class LedgerbridgeTask(Task):  # type: ignore[misc]
    """Every task writes the audit rows of its API calls before its result is stored: whoever
    sees a task finish can read what it did."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from shared import ports

        try:
            return super().__call__(*args, **kwargs)
        finally:
            ports.flush_audit()


def create_app() -> Celery:
    settings = get_settings()
    celery_app = Celery("ledgerbridge", include=TASK_MODULES, task_cls=LedgerbridgeTask)
    celery_app.conf.update(build_config(settings.redis_url, settings.queue))
    from worker.schedule import beat_schedule

    celery_app.conf.beat_schedule = beat_schedule(settings)
    return celery_app


app = create_app()


@signals.worker_init.connect
def _check_worker(sender: Any = None, **_: Any) -> None:
    configure_logging(get_settings().log_level)
    check_config(app.conf)


@signals.beat_init.connect
def _check_beat(sender: Any = None, **_: Any) -> None:
    configure_logging(get_settings().log_level)
    check_config(app.conf)


@signals.worker_process_init.connect
def _process_init(**_: Any) -> None:
    configure_logging(get_settings().log_level)


@signals.task_postrun.connect
def _task_done(**_: Any) -> None:
    # A worker's resident size follows what its tasks hold now, not the most they ever held.
    release_free_heap()


@signals.worker_shutdown.connect
def _worker_shutdown(**_: Any) -> None:
    from shared import ports

    ports.flush_audit()


@signals.worker_process_shutdown.connect
def _process_shutdown(**_: Any) -> None:
    from shared import ports

    ports.close_all()
