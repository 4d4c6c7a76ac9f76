"""Counts of what a process asks of its ledger: statements, round trips, transactions, connection
checkouts and pings, by statement text. Off unless ``LEDGERBRIDGE_LEDGER_STATEMENTS_DIR`` names a
folder; then every engine :func:`shared.ledger.db.make_engine` builds in the process counts, and
the process writes its totals to ``<folder>/<pid>.json`` (at most twice a second while it works,
and when it exits). ``scripts/bench`` sets it for its fleets and sums the files.

What is counted, per process:

* ``statements``: statements the server executes - one per ``execute``, one per parameter set of
  an ``executemany``;
* ``round_trips``: the waits for the server's answer - one per ``execute`` or ``executemany``
  (psycopg pipelines the parameter sets), plus one for each ``BEGIN`` psycopg sends before the
  first statement of a PostgreSQL transaction (none in autocommit), one per ``COMMIT`` or
  ``ROLLBACK`` that had a transaction to end, and one per ping (a ``SELECT 1`` in autocommit);
* ``transactions`` (commits and rollbacks sent), ``checkouts`` of a pooled connection, ``pings``
  and ``connects`` (new connections);
* ``by_statement``: ``{the SQL (its head and tail when longer than 240 characters): [statements,
  round trips]}``.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

ENV = "LEDGERBRIDGE_LEDGER_STATEMENTS_DIR"
TEXT_CHARS = 240
FLUSH_SECONDS = 0.5
FIELDS = ("statements", "round_trips", "begins", "commits", "rollbacks", "checkouts", "pings", "connects")


def _shortened(text: str) -> str:
    # The head names the statement and the tail its WHERE clause, which tells apart the many
    # SELECTs of one table's columns.
    if len(text) <= TEXT_CHARS:
        return text
    head = TEXT_CHARS // 3
    return f"{text[:head]} ... {text[-(TEXT_CHARS - head) :]}"


class StatementCounts:
    """This process's counts (every counting engine adds to it) and the file they go to."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.totals: Counter[str] = Counter()
        self.by_statement: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._pid = 0
        self._stop = threading.Event()

    def add(self, text: str | None, **counts: int) -> None:
        with self._lock:
            self._started()
            self.totals.update(counts)
            if text is not None:
                key = _shortened(" ".join(text.split()))
                per = self.by_statement.setdefault(key, [0, 0])
                per[0] += counts.get("statements", 0)
                per[1] += counts.get("round_trips", 0)
        self._dirty.set()

    def _started(self) -> None:
        # Per process: a prefork child inherits the parent's counts and no thread, so it starts over.
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        self.totals = Counter()
        self.by_statement = {}
        self._stop = threading.Event()
        threading.Thread(target=self._flusher, name="ledger-statements", daemon=True).start()

    def _flusher(self) -> None:
        stop = self._stop
        while not stop.wait(FLUSH_SECONDS):
            if self._dirty.is_set():
                self.write()

    def write(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                return
            self._dirty.clear()
            data = {
                "pid": self._pid,
                **{f: self.totals[f] for f in FIELDS},
                "by_statement": self.by_statement,
            }
            text = json.dumps(data)
        path = self.folder / f"{self._pid}.json"
        temporary = path.with_suffix(".tmp")
        try:
            temporary.write_text(text)
            temporary.replace(path)
        except FileNotFoundError:
            pass  # the folder was removed (a finished bench or test): nobody reads these counts


_processes: dict[Path, StatementCounts] = {}  # by folder (one, unless a test changes it)


def counts() -> StatementCounts | None:
    """This process's counts when ``LEDGERBRIDGE_LEDGER_STATEMENTS_DIR`` is set, else None."""
    folder = os.environ.get(ENV)
    if not folder:
        return None
    path = Path(folder)
    if path not in _processes:
        path.mkdir(parents=True, exist_ok=True)
        _processes[path] = StatementCounts(path)
        atexit.register(_processes[path].write)
    return _processes[path]


def _in_transaction(connection: Any) -> bool:
    # The driver's connection (SQLAlchemy hands some hooks the pool's proxy of it).
    dbapi_connection = getattr(connection, "dbapi_connection", connection)
    info = getattr(dbapi_connection, "info", None)  # psycopg's ConnectionInfo
    status = getattr(info, "transaction_status", None)
    if status is not None:
        return int(status) != 0  # IDLE
    return bool(getattr(dbapi_connection, "in_transaction", True))  # sqlite3


def count_statements(engine: Engine) -> None:
    """Count ``engine``'s statements into this process's :func:`counts` (when they are on)."""
    tally = counts()
    if tally is None:
        return
    implicit_begin = engine.dialect.name == "postgresql"  # psycopg sends BEGIN itself

    def begin_trips(dbapi_connection: Any) -> int:
        if not implicit_begin or getattr(dbapi_connection, "autocommit", False):
            return 0  # in autocommit psycopg sends each statement alone
        return 0 if _in_transaction(dbapi_connection) else 1

    @event.listens_for(engine, "before_cursor_execute")
    def _execute(  # noqa: PLR0917 - SQLAlchemy's signature for this event
        conn: sa.Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        begins = begin_trips(conn.connection.dbapi_connection)
        if begins:
            tally.add("BEGIN", begins=1, round_trips=1)
        n = len(parameters) if executemany and parameters is not None else 1
        tally.add(statement, statements=n, round_trips=1)

    @event.listens_for(engine, "checkout")
    def _checkout(_dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        tally.add(None, checkouts=1)

    @event.listens_for(engine, "connect")
    def _connect(_dbapi_connection: Any, _record: Any) -> None:
        tally.add(None, connects=1)

    dialect = engine.dialect
    commit, rollback, ping = dialect.do_commit, dialect.do_rollback, dialect.do_ping

    def do_commit(dbapi_connection: Any) -> None:
        if _in_transaction(dbapi_connection):
            tally.add("COMMIT", commits=1, round_trips=1)
        commit(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        if _in_transaction(dbapi_connection):
            tally.add("ROLLBACK", rollbacks=1, round_trips=1)
        rollback(dbapi_connection)

    def do_ping(dbapi_connection: Any) -> bool:
        # SQLAlchemy's psycopg dialect pings in autocommit: no BEGIN.
        tally.add("(pre-ping)", pings=1, statements=1, round_trips=1)
        return bool(ping(dbapi_connection))

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    dialect.do_ping = do_ping  # type: ignore[method-assign]


def read_totals(folder: Path) -> dict[str, Any]:
    """The sum of every process's file in ``folder``: the totals and ``by_statement``."""
    totals: Counter[str] = Counter()
    by_statement: dict[str, list[int]] = {}
    processes = 0
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        processes += 1
        totals.update({f: int(data.get(f, 0)) for f in FIELDS})
        for text, (statements, trips) in data.get("by_statement", {}).items():
            per = by_statement.setdefault(text, [0, 0])
            per[0] += int(statements)
            per[1] += int(trips)
    return {"processes": processes, **{f: totals[f] for f in FIELDS}, "by_statement": by_statement}
