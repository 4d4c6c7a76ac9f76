"""A PostgreSQL ledger pings a pooled connection only when it sat idle, and replaces a dead one."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared.ledger import db

pytestmark = [pytest.mark.postgres]


def _pings(engine: sa.Engine) -> list[int]:
    pings: list[int] = []
    real = engine.dialect.do_ping

    def counting(dbapi_connection):
        pings.append(1)
        return real(dbapi_connection)

    engine.dialect.do_ping = counting  # type: ignore[method-assign]
    return pings


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_returned_a_moment_ago_is_not_pinged(postgres_url):
    engine = db.make_engine(postgres_url)
    pings = _pings(engine)
    first = _backend_pid(engine)
    again = [_backend_pid(engine) for _ in range(5)]
    engine.dispose()

    assert pings == []
    assert again == [first] * 5  # the same warm connection (LIFO)


def test_a_connection_idle_past_the_threshold_is_pinged_and_a_dead_one_replaced(postgres_url, monkeypatch):
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
    engine = db.make_engine(postgres_url)
    pings = _pings(engine)
    first = _backend_pid(engine)
    killer = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    with killer.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        conn.commit()
    killer.dispose()

    second = _backend_pid(engine)  # no error: the ping found it dead and a new one was opened
    engine.dispose()

    assert second != first
    assert len(pings) == 1


def test_each_connection_names_the_process_that_opened_it(postgres_url):
    import os

    engine = db.make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            named = conn.execute(
                sa.text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            ).scalar_one()
    finally:
        engine.dispose()

    assert named == f"ledgerbridge pid {os.getpid()}" == db.application_name()


def test_a_process_holds_at_most_its_pool_of_connections(postgres_url):
    import threading

    engine = db.make_engine(postgres_url, pg_pool_size=2)
    held = [engine.connect(), engine.connect()]
    try:
        third: list[str] = []

        def take() -> None:
            try:
                with engine.connect():
                    third.append("connected")
            except sa.exc.TimeoutError:
                third.append("waited")

        engine.pool._timeout = 0.2  # a thread waits this long for a free connection (default 30 s)
        thread = threading.Thread(target=take)
        thread.start()
        thread.join(timeout=10)
        assert third == ["waited"]  # no third connection is opened
    finally:
        for conn in held:
            conn.close()
        engine.dispose()
