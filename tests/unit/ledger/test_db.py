"""Engine construction (no server needed: engines connect lazily)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

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
