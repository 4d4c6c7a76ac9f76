"""``LEDGERBRIDGE_LEDGER_STATEMENTS_DIR``: what a process asks of its ledger, counted per process."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from shared.ledger import statements
from shared.ledger.db import make_engine, session_scope


@pytest.fixture
def counting(tmp_path, monkeypatch):
    folder = tmp_path / "statements"
    monkeypatch.setenv(statements.ENV, str(folder))
    monkeypatch.setattr(statements, "_processes", {})
    return folder


def test_nothing_is_counted_unless_the_folder_is_set(sqlite_url, monkeypatch):
    monkeypatch.delenv(statements.ENV, raising=False)
    monkeypatch.setattr(statements, "_processes", {})
    engine = make_engine(sqlite_url)
    with session_scope(engine) as session:
        session.execute(sa.text("SELECT 1"))
    engine.dispose()

    assert statements.counts() is None


def test_statements_round_trips_and_transactions_are_counted_and_written(database_url, counting):
    engine = make_engine(database_url)
    with session_scope(engine) as session:
        session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    with session_scope(engine) as session:
        session.execute(sa.text("INSERT INTO t (x) VALUES (:x)"), [{"x": 1}, {"x": 2}, {"x": 3}])
        session.execute(sa.text("SELECT count(*) FROM t"))
    with session_scope(engine) as session:
        session.execute(sa.text("SELECT 1"))
    tally = statements.counts()
    assert tally is not None
    tally.write()
    engine.dispose()

    totals = statements.read_totals(counting)
    assert totals["processes"] == 1
    by = totals["by_statement"]
    postgres = database_url.startswith("postgresql")
    insert = "INSERT INTO t (x) VALUES (%(x)s)" if postgres else "INSERT INTO t (x) VALUES (?)"
    assert by[insert] == [3, 1]  # three rows, one executemany
    assert totals["commits"] == 3
    assert totals["checkouts"] == 3
    executes = 4
    if postgres:
        # psycopg sends BEGIN before each transaction's first statement; a connection returned a
        # moment ago is handed out again without a ping.
        assert totals["begins"] == 3
        assert totals["pings"] == 0
        assert totals["statements"] == 1 + 3 + 1 + 1
        assert totals["round_trips"] == 3 + executes + 3 + totals["rollbacks"]
    else:
        # SQLite's BEGIN IMMEDIATE is a statement of its own, and a local file is not pinged.
        assert totals["pings"] == 0
        assert totals["begins"] == 0
        assert by["BEGIN IMMEDIATE"] == [3, 3]
        assert totals["round_trips"] == 3 + executes + 3 + totals["rollbacks"]


def test_a_read_on_postgresql_sends_no_begin_or_commit(postgres_url, counting):
    engine = make_engine(postgres_url)
    with session_scope(engine, read_only=True) as session:
        session.execute(sa.text("SELECT 1"))
        session.execute(sa.text("SELECT 2"))
    with session_scope(engine) as session:  # a write transaction after it is one again
        session.execute(sa.text("SELECT 3"))
    tally = statements.counts()
    assert tally is not None
    tally.write()
    engine.dispose()

    totals = statements.read_totals(counting)
    assert (totals["statements"], totals["begins"], totals["commits"]) == (3, 1, 1)
    assert totals["round_trips"] == 3 + 1 + 1 + totals["rollbacks"]  # the rollback after connecting
