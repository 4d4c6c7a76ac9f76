"""Engines and sessions for the ledger (SQLite by default, PostgreSQL in production).

Build engines with :func:`make_engine` only: it sets the SQLite pragmas the ledger relies on
(WAL, a 30 s busy timeout, foreign keys) and the JSON codec that keeps amounts exact.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from shared import jsoncodec

# The JSON columns go through the product's one codec (exact decimals, ISO dates).
dumps_json = jsoncodec.dumps
loads_json = jsoncodec.loads


POOL_SIZE = 24
BUSY_TIMEOUT_SECONDS = 30
POOL_OVERFLOW = 24


def _set_sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers run beside the one writer; busy_timeout makes a second writer wait
        # (up to 30 s) for the lock instead of failing at once with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _serialise_writes(engine: Engine, wait: float) -> None:
    """Let one thread of this process at a time hold SQLite's write lock, from its first write
    until its commit or rollback has finished; the others wait their turn on a plain lock.

    SQLite's own busy handler makes a blocked writer sleep in growing steps (up to 100 ms) and
    retry, so with dozens of threads a writer can lose the race many times in a row: most
    transactions take milliseconds and a few take seconds. Queued here, only one thread per
    process contends with the other processes. A thread that has waited ``wait`` seconds goes on
    without the lock and meets SQLite's busy timeout as before."""
    lock = threading.Lock()
    holders: set[int] = set()  # id() of the sqlite3 connection whose transaction holds the lock

    def raw(connection: Any) -> Any:
        return getattr(connection, "dbapi_connection", connection)  # a pool's proxy, or the connection

    def release(connection: Any) -> None:
        key = id(raw(connection))
        if key in holders:
            holders.discard(key)
            lock.release()

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        key = id(cursor.connection)
        writes = statement.lstrip()[:7].upper().startswith(_WRITES)
        if writes and key not in holders and lock.acquire(timeout=wait):
            holders.add(key)

    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:
            release(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            release(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    # A connection closed mid-transaction (also when invalidated) gives SQLite's lock back: ours too.
    @event.listens_for(engine, "close")
    def _on_close(dbapi_connection: Any, record: Any) -> None:
        release(dbapi_connection)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """An engine for ``url`` (``sqlite:///path``, ``sqlite://`` in memory, or
    ``postgresql[+psycopg]://...``; plain ``postgresql://`` is driven by psycopg 3)."""
    parsed = sa.make_url(url)
    common: dict[str, Any] = {
        "echo": echo,
        "json_serializer": dumps_json,
        "json_deserializer": loads_json,
    }
    # Kept connections: a worker runs up to 16 task threads, each fanning out to posting threads;
    # a smaller pool would open and close a connection (and set its pragmas) on most checkouts.
    pooled: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        connect_args = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS}
        if parsed.database in (None, "", ":memory:"):
            # One shared connection, or every session would see its own empty database.
            engine = sa.create_engine(parsed, connect_args=connect_args, poolclass=StaticPool, **common)
        else:
            # A local file has no connection to drop: no ping before each checkout.
            engine = sa.create_engine(parsed, connect_args=connect_args, **pooled, **common)
            _serialise_writes(engine, wait=BUSY_TIMEOUT_SECONDS)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True, **pooled, **common)
    raise ValueError(
        f"unsupported ledger database {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path or postgresql+psycopg://user@host/db"
    )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits when the block ends and rolls back if it raises.

    Objects stay readable after the block (``expire_on_commit=False``), so repository methods
    can return them.
    """
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def insert_ignoring_conflict(
    session: Session, table: sa.Table, values: dict[str, Any], conflict_columns: list[str] | None
) -> bool:
    """``INSERT ... ON CONFLICT (conflict_columns) DO NOTHING`` on SQLite or PostgreSQL (None: a
    conflict on any unique constraint); True when the row was inserted. Unlike insert-then-catch
    it never poisons the caller's transaction, so it is safe inside a larger unit of work and
    under concurrent inserts."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    if conflict_columns:
        statement = statement.on_conflict_do_nothing(index_elements=conflict_columns)
    else:
        statement = statement.on_conflict_do_nothing()
    # RETURNING, not rowcount: psycopg reports -1 for this statement. (SQLite >= 3.35.)
    returned = session.execute(statement.returning(*table.primary_key.columns)).first()
    return returned is not None
