from __future__ import annotations

from types import SimpleNamespace

import pytest

from worker.app import MAX_COUNTDOWN, UnsafeConfiguration, app, build_config, check_config


def _conf(**overrides):
    values = build_config("redis://127.0.0.1:6379/0")
    values.setdefault("task_always_eager", False)
    values.update(overrides)
    return SimpleNamespace(**values)


def test_shipped_configuration_passes_the_self_check():
    check_config(app.conf)
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_transport_options["visibility_timeout"] > MAX_COUNTDOWN


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"task_acks_late": False}, "task_acks_late must be True"),
        ({"task_reject_on_worker_lost": False}, "task_reject_on_worker_lost must be True"),
        ({"worker_prefetch_multiplier": 4}, "worker_prefetch_multiplier must be 1"),
        ({"accept_content": ["json", "pickle"]}, "only the json serializer is allowed"),
        ({"broker_transport_options": {"visibility_timeout": 300}}, "visibility_timeout (300s) must exceed"),
        ({"task_always_eager": True}, "task_always_eager must be False"),
    ],
)
def test_self_check_refuses_unsafe_combination(override, message):
    with pytest.raises(UnsafeConfiguration) as info:
        check_config(_conf(**override))
    assert message in str(info.value)


def test_every_task_has_an_explicit_dotted_name():
    app.loader.import_default_modules()
    ours = [name for name in app.tasks if not name.startswith("celery.")]
    assert ours, "no ledgerbridge task registered"
    assert all(name.startswith("ledgerbridge.") for name in ours)


def test_a_task_writes_its_queued_audit_rows_before_it_returns(ports_on_sqlite):
    from shared import ports
    from shared.exchange import Exchange
    from shared.ledger.models import AuditEvent
    from worker.app import LedgerbridgeTask

    def rows() -> int:
        with ports.ledger().session() as session:
            return len(session.exec(AuditEvent.__table__.select()).all())  # type: ignore[attr-defined]

    seen_inside: list[int] = []

    def calls() -> None:
        hook = ports._audit_hook()
        hook.interval = 3600.0  # the writer's thread would not write it for an hour
        hook(Exchange(api="zuora", connection="acme", method="GET", url="https://z/v1/x", status=200,
                      duration_ms=1.0))  # fmt: skip
        seen_inside.append(rows())

    task = app.task(name="tests.audit_rows")(calls)
    assert isinstance(task, LedgerbridgeTask)

    task()
    assert seen_inside == [0]
    assert rows() == 1


def test_every_finished_task_offers_the_freed_heap_back(monkeypatch):
    import worker.app

    offered: list[bool] = []
    monkeypatch.setattr(worker.app, "release_free_heap", lambda: offered.append(True))

    def answer() -> int:
        return 42

    task = app.task(name="tests.heap")(answer)

    assert task.apply().get() == 42
    assert offered == [True]
