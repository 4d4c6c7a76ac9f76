"""Engine construction (no server needed: engines connect lazily)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from shared.ledger.db import make_engine, session_scope
from shared.ledger.models import AuditEvent, metadata


def test_make_engine_drives_plain_postgresql_urls_with_psycopg3():
    engine = make_engine("postgresql://u:p@db.example/ledger")
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    engine.dispose()


def test_make_engine_refuses_other_databases_without_leaking_password():
    with pytest.raises(ValueError, match=r"unsupported ledger database 'mysql://u:\*\*\*@h/db'"):
        make_engine("mysql://u:secret@h/db")


def test_sqlite_engine_sets_pragmas(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        pragmas = [
            conn.exec_driver_sql(f"PRAGMA {p}").scalar()
            for p in ("journal_mode", "busy_timeout", "foreign_keys")
        ]
    engine.dispose()
    assert pragmas == ["wal", 30000, 1]


def test_session_scope_commits_on_success_and_rolls_back_on_error():
    engine = make_engine("sqlite://")
    metadata.create_all(engine)
    with session_scope(engine) as s:
        s.add(AuditEvent(kind="note", message="kept"))
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        s.add(AuditEvent(kind="note", message="dropped"))
        s.flush()
        raise RuntimeError("boom")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT message FROM audit_event")).scalars().all() == ["kept"]
    engine.dispose()


def _file_engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'w.db'}")
    metadata.create_all(engine)
    return engine


def test_sqlite_writers_of_one_process_take_turns_and_all_commit(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    engine = _file_engine(tmp_path)

    def write(n: int) -> None:
        for i in range(20):
            with session_scope(engine) as s:
                s.add(AuditEvent(kind="note", message=f"{n}-{i}"))

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(16)))
    with session_scope(engine) as s:
        assert s.exec(sa.select(sa.func.count()).select_from(AuditEvent)).one()[0] == 320
    engine.dispose()


def test_the_write_turn_is_given_back_however_a_transaction_ends(tmp_path):
    """Commit, rollback on an error, a session closed without either, and a connection closed
    mid-transaction: after each, another thread still gets to write at once."""
    import threading

    engine = _file_engine(tmp_path)

    def endings():
        with session_scope(engine) as s:
            s.add(AuditEvent(kind="note", message="committed"))
        with pytest.raises(RuntimeError), session_scope(engine) as s:
            s.add(AuditEvent(kind="note", message="rolled back"))
            s.flush()
            raise RuntimeError
        s = Session(engine)
        s.add(AuditEvent(kind="note", message="abandoned"))
        s.flush()
        s.close()
        conn = engine.connect()
        conn.exec_driver_sql("INSERT INTO audit_event (at, kind, message) VALUES ('2026-01-01', 'note', 'x')")
        conn.invalidate()

    endings()
    done = threading.Event()

    def other_thread() -> None:
        with session_scope(engine) as s:
            s.add(AuditEvent(kind="note", message="from another thread"))
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert done.wait(10), "the write turn was not given back"
    thread.join()
    with session_scope(engine) as s:
        messages = s.exec(sa.select(AuditEvent.message)).scalars().all()
    assert sorted(messages) == ["committed", "from another thread"]
    engine.dispose()
