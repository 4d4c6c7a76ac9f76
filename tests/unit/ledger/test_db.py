"""Engine construction (no server needed: engines connect lazily)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from shared.ledger import db
from shared.ledger.db import BEGIN_OPTION, Begin, make_engine, session_scope
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


def _messages(engine):
    with engine.connect() as conn:
        return sorted(conn.exec_driver_sql("SELECT message FROM audit_event").scalars())


@pytest.mark.parametrize(
    "statement",
    [
        "WITH m(text) AS (SELECT 'hidden') INSERT INTO audit_event (at, kind, message)"
        " SELECT '2026-01-01', 'note', text FROM m",
        "/* a comment */ INSERT INTO audit_event (at, kind, message) VALUES ('2026-01-01', 'note', 'hidden')",
    ],
    ids=["with-insert", "comment-first"],
)
def test_a_write_is_rolled_back_with_its_session_whatever_its_sql_starts_with(tmp_path, statement):
    engine = _file_engine(tmp_path)

    with pytest.raises(RuntimeError), session_scope(engine) as s:
        s.execute(sa.text(statement))
        raise RuntimeError("boom")

    assert _messages(engine) == []
    engine.dispose()


def _count_then_insert(engine, pause: float) -> None:
    """A read-then-write transaction: count the rows, then add one saying how many it saw."""
    with session_scope(engine) as s:
        seen = s.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one()
        time.sleep(pause)
        s.add(AuditEvent(kind="note", message=f"saw {seen}"))


def test_read_then_write_transactions_of_two_threads_do_not_lose_an_update(tmp_path):
    engine = _file_engine(tmp_path)
    start = threading.Barrier(2)

    def worker() -> None:
        start.wait(10)
        _count_then_insert(engine, pause=0.3)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert _messages(engine) == ["saw 0", "saw 1"]
    engine.dispose()


# A fresh interpreter (not a fork of this multi-threaded test process): it says it is ready, waits
# for the go, then runs one read-then-write transaction.
_COUNT_THEN_INSERT = """
import sys, time
from pathlib import Path
from shared.ledger.db import make_engine, session_scope
from shared.ledger.models import AuditEvent
import sqlalchemy as sa

url, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
engine = make_engine(url)
ready.touch()
while not go.exists():
    time.sleep(0.01)
with session_scope(engine) as s:
    seen = s.execute(sa.text("SELECT count(*) FROM audit_event")).scalar_one()
    time.sleep(0.3)
    s.add(AuditEvent(kind="note", message=f"saw {seen}"))
engine.dispose()
"""


def test_read_then_write_transactions_of_two_processes_do_not_lose_an_update(tmp_path):
    engine = _file_engine(tmp_path)
    go = tmp_path / "go"
    readies = [tmp_path / f"ready-{n}" for n in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _COUNT_THEN_INSERT, str(engine.url), str(ready), str(go)],
            stderr=subprocess.PIPE,
        )
        for ready in readies
    ]
    deadline = time.monotonic() + 60
    while not all(r.exists() for r in readies) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    for worker in workers:
        _out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()

    assert _messages(engine) == ["saw 0", "saw 1"]
    engine.dispose()


def test_a_write_that_never_gets_the_lock_fails_and_gives_its_turn_back(tmp_path, monkeypatch):
    monkeypatch.setattr(db, "BUSY_TIMEOUT_SECONDS", 1)
    engine = _file_engine(tmp_path)
    other_process = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")

    with pytest.raises(sa.exc.OperationalError, match="database is locked"), session_scope(engine) as s:
        s.add(AuditEvent(kind="note", message="refused"))
    other_process.rollback()
    other_process.close()
    done = threading.Event()

    def other_thread() -> None:
        with session_scope(engine) as s:
            s.add(AuditEvent(kind="note", message="from another thread"))
        done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    # Without its turn back, the thread would first wait out the turn's 1 s.
    assert done.wait(0.5), "the write turn was not given back"
    thread.join()
    assert _messages(engine) == ["from another thread"]
    engine.dispose()


def test_a_read_only_session_reads_beside_an_open_write_transaction(tmp_path):
    engine = _file_engine(tmp_path)
    with session_scope(engine) as s:
        s.add(AuditEvent(kind="note", message="committed"))
    written, finish = threading.Event(), threading.Event()

    def writer() -> None:
        with session_scope(engine) as s:
            s.add(AuditEvent(kind="note", message="not yet committed"))
            s.flush()
            written.set()
            finish.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    assert written.wait(10)
    started = time.monotonic()
    with session_scope(engine, read_only=True) as s:
        seen = s.execute(sa.select(AuditEvent.message)).scalars().all()
    waited = time.monotonic() - started
    finish.set()
    thread.join()

    assert (seen, waited < 1) == (["committed"], True)
    assert _messages(engine) == ["committed", "not yet committed"]
    engine.dispose()


def test_a_read_only_session_refuses_to_write_and_leaves_its_connection_writable(tmp_path):
    engine = _file_engine(tmp_path)

    with (
        pytest.raises(sa.exc.OperationalError, match="attempt to write a readonly database"),
        session_scope(engine, read_only=True) as s,
    ):
        s.add(AuditEvent(kind="note", message="refused"))
        s.flush()
    with session_scope(engine) as s:
        s.add(AuditEvent(kind="note", message="written"))

    assert _messages(engine) == ["written"]
    assert engine.pool.checkedin() == 1  # both sessions used the same sqlite3 connection
    engine.dispose()


def test_a_connection_its_caller_begins_runs_statements_outside_a_transaction_until_then(tmp_path):
    engine = _file_engine(tmp_path)

    with engine.connect() as conn:
        conn.execution_options(**{BEGIN_OPTION: Begin.CALLER})
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # SQLite ignores it inside a transaction
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
        conn.exec_driver_sql("INSERT INTO audit_event (at, kind, message) VALUES ('2026-01-01', 'note', 'x')")
        conn.commit()

    assert foreign_keys == 0
    assert _messages(engine) == ["x"]
    engine.dispose()
