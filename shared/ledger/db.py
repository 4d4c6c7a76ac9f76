"""Engines and sessions for the ledger (SQLite by default, PostgreSQL in production).

Build engines with :func:`make_engine` only: it sets the SQLite pragmas the ledger relies on
(WAL, a 30 s busy timeout, foreign keys), begins SQLite transactions as :class:`Begin` describes,
and sets the JSON codec that keeps amounts exact.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from shared import jsoncodec
from shared.ledger.statements import count_statements

# The JSON columns go through the product's one codec (exact decimals, ISO dates).
dumps_json = jsoncodec.dumps
loads_json = jsoncodec.loads


POOL_SIZE = 24
BUSY_TIMEOUT_SECONDS = 30
POOL_OVERFLOW = 24
# A PostgreSQL ledger's connections per process, at most (LEDGERBRIDGE_DATABASE_POOL_SIZE): a
# worker process needs one for its task, one per posting thread (at most 8) and one for its audit
# writer. Opened only when that many are in use at once; a thread finding all of them busy waits
# for one (transactions are short), so a fleet holds at most processes x this many.
PG_POOL_SIZE = 10
PING_AFTER_IDLE_SECONDS = 1.0

# The execution option (engine, connection or session) that chooses a :class:`Begin`.
BEGIN_OPTION = "ledger_begin"


class Begin(StrEnum):
    """How a transaction on a SQLite ledger begins (PostgreSQL ignores :data:`BEGIN_OPTION`).

    sqlite3's own transaction control (its "legacy" mode, the only one before Python 3.12) reads
    the SQL text: it emits a deferred ``BEGIN`` before a statement that starts with INSERT, UPDATE,
    DELETE or REPLACE and none before anything else, so a SELECT reads outside the transaction
    that follows it and a ``WITH ... INSERT`` commits on its own. Ledger engines switch it off and
    begin each transaction themselves, as SQLAlchemy's SQLite dialect documentation shows
    ("Enabling Non-Legacy SQLite Transactional Modes"), in one of these ways.
    """

    WRITE = "write"
    """The default: ``BEGIN IMMEDIATE``. The transaction holds SQLite's write lock from its start
    to its COMMIT or ROLLBACK, so what it read is still true when it writes; the writers of every
    process queue on that lock (each waits up to the busy timeout)."""

    READ = "read"
    """A deferred ``BEGIN`` with ``PRAGMA query_only`` on: a snapshot read beside the writer
    (WAL). A write in it fails at once ("attempt to write a readonly database") rather than
    meeting the lock halfway through the transaction."""

    CALLER = "caller"
    """No ``BEGIN``: the caller emits its own, and until it does each statement commits alone
    (the migrations turn foreign keys off, which SQLite allows only outside a transaction, and
    then take ``BEGIN IMMEDIATE``)."""


def _set_sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    # sqlite3 emits no BEGIN of its own: _begin_sqlite_transactions does (see Begin).
    dbapi_connection.isolation_level = None
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


def _raw(connection: Any) -> Any:
    """The sqlite3 connection behind a pool's proxy (or the sqlite3 connection itself)."""
    return getattr(connection, "dbapi_connection", connection)


class _WriteTurns:
    """Lets one thread of this process at a time hold SQLite's write lock, from its
    ``BEGIN IMMEDIATE`` until its commit or rollback has finished; the others wait their turn on a
    plain lock.

    SQLite's own busy handler makes a blocked writer sleep in growing steps (up to 100 ms) and
    retry, so with dozens of threads a writer can lose the race many times in a row: most
    transactions take milliseconds and a few take seconds. Queued here, only one thread per
    process contends with the other processes. A thread that has waited ``wait`` seconds goes on
    without a turn and meets SQLite's busy timeout as before."""

    def __init__(self, wait: float) -> None:
        self._wait = wait
        self._lock = threading.Lock()
        self._holder: int | None = None  # id() of the sqlite3 connection whose transaction has the turn

    def take(self, connection: Any) -> None:
        if self._lock.acquire(timeout=self._wait):
            self._holder = id(_raw(connection))

    def give_back(self, connection: Any) -> None:
        if self._holder is not None and self._holder == id(_raw(connection)):
            self._holder = None
            self._lock.release()


def _begin_sqlite_transactions(engine: Engine, turns: _WriteTurns | None) -> None:
    """Begin each transaction of ``engine`` as its :data:`BEGIN_OPTION` says; a write transaction
    first takes one of ``turns`` (if given), which it gives back when it ends, however it ends."""
    query_only_key = "ledger_query_only"  # in the pool's info for each sqlite3 connection

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        begin = Begin(conn.get_execution_options().get(BEGIN_OPTION, Begin.WRITE))
        info = conn.connection.info
        query_only = begin is Begin.READ
        if info.get(query_only_key, False) is not query_only:
            conn.exec_driver_sql(f"PRAGMA query_only={int(query_only)}")
            info[query_only_key] = query_only
        if begin is Begin.READ:
            conn.exec_driver_sql("BEGIN")
        elif begin is Begin.WRITE:
            if turns is not None:
                turns.take(conn.connection)
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                if turns is not None:
                    turns.give_back(conn.connection)
                raise

    if turns is None:
        return
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def do_commit(dbapi_connection: Any) -> None:
        try:
            commit(dbapi_connection)
        finally:
            turns.give_back(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            rollback(dbapi_connection)
        finally:
            turns.give_back(dbapi_connection)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    # A connection closed mid-transaction (also when invalidated) gives SQLite's lock back: its turn too.
    @event.listens_for(engine, "close")
    def _on_close(dbapi_connection: Any, _record: Any) -> None:
        turns.give_back(dbapi_connection)


def application_name(pid: int | None = None) -> str:
    """What a PostgreSQL connection of this process calls itself (``pg_stat_activity``)."""
    return f"ledgerbridge pid {pid or os.getpid()}"


def _name_connections(engine: Engine) -> None:
    """Each connection names the process that opened it (at connect time: a prefork child's are
    its own), so ``pg_stat_activity`` shows how many connections each process holds."""

    @event.listens_for(engine, "do_connect")
    def _named(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams.setdefault("application_name", application_name())


def make_engine(url: str, *, echo: bool = False, pg_pool_size: int = PG_POOL_SIZE) -> Engine:
    """An engine for ``url`` (``sqlite:///path``, ``sqlite://`` in memory, or
    ``postgresql[+psycopg]://...``; plain ``postgresql://`` is driven by psycopg 3). On PostgreSQL
    a process holds at most ``pg_pool_size`` connections."""
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
            # One shared connection, or every session would see its own empty database; so its
            # transactions cannot overlap (a second BEGIN on it fails).
            engine = sa.create_engine(parsed, connect_args=connect_args, poolclass=StaticPool, **common)
            turns = None
        else:
            # A local file has no connection to drop: no ping before each checkout.
            engine = sa.create_engine(parsed, connect_args=connect_args, **pooled, **common)
            turns = _WriteTurns(wait=BUSY_TIMEOUT_SECONDS)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        _begin_sqlite_transactions(engine, turns)
        count_statements(engine)
        return engine
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # The most recently returned connection first (LIFO): the ones a busy process keeps using
        # stay warm, and only those that sat idle are pinged (see _ping_when_idle).
        engine = sa.create_engine(
            parsed, pool_use_lifo=True, pool_size=pg_pool_size, max_overflow=0, **common
        )
        _name_connections(engine)
        _ping_when_idle(engine, PING_AFTER_IDLE_SECONDS)
        count_statements(engine)
        return engine
    raise ValueError(
        f"unsupported ledger database {parsed.render_as_string(hide_password=True)!r}: "
        "use sqlite:///path or postgresql+psycopg://user@host/db"
    )


def _ping_when_idle(engine: Engine, seconds: float) -> None:
    """Ping a pooled PostgreSQL connection before handing it out only when it sat in the pool
    ``seconds`` or longer; a dead one is replaced by a new connection.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip before each transaction,
    one in four of a posted record's. A connection dies while idle (the server restarted, a proxy
    or firewall dropped it) and a restart takes longer than ``seconds``, so a connection that
    was in use a moment ago is alive; should one die in that moment, the statement fails with a
    disconnect error, SQLAlchemy discards every connection of the pool, and the task retries."""
    key = "ledger_idle_since"

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[key] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(key)
        if since is None or time.monotonic() - since < seconds:
            return  # new, or returned a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(f"the ledger connection was dropped while idle: {exc}") from exc


def _autocommit(engine: Engine) -> Engine:
    """``engine`` in autocommit (the same pool; the pool sets the mode back when a connection
    returns), made once per engine and kept on it."""
    found: Engine | None = getattr(engine, "_ledger_autocommit", None)
    if found is None:
        found = engine.execution_options(isolation_level="AUTOCOMMIT")
        engine._ledger_autocommit = found  # type: ignore[attr-defined]
    return found


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """A session whose transaction commits when the block ends and rolls back if it raises.

    Objects stay readable after the block (``expire_on_commit=False``), so repository methods
    can return them. ``read_only`` begins it as :attr:`Begin.READ` on SQLite: it reads beside the
    writer instead of queueing for the write lock, and cannot write. On PostgreSQL a read-only
    session runs its statements in autocommit: at PostgreSQL's READ COMMITTED (the ledger's) each
    statement sees what was committed when it started either way, and no BEGIN and COMMIT go to
    the server around them (two round trips of three for a one-query read).
    """
    options: dict[str, Any] = {BEGIN_OPTION: Begin.READ} if read_only else {}
    bind = _autocommit(engine) if read_only and engine.dialect.name == "postgresql" else engine
    session = Session(bind, expire_on_commit=False, execution_options=options)
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
