"""The ledger repository the flows use: each method is one committed transaction.

Record state changes are not here: open :meth:`Ledger.session` and call ``shared.ledger.states``
inside it, so the caller decides what commits together. Returned rows are detached snapshots
(readable, not live).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from shared.ledger.audit_trail import AuditTrail
from shared.ledger.connection_store import ConnectionStore
from shared.ledger.db import insert_ignoring_conflict, make_engine, session_scope
from shared.ledger.errors import RecordNotFound, TransitionConflict
from shared.ledger.journal_requests import JournalRequestStore
from shared.ledger.models import (
    OPEN_CLOSE_STATUSES,
    CalloutNotification,
    CalloutState,
    CloseRun,
    CloseStatus,
    StreamMark,
    SyncRecord,
    metadata,
    utcnow,
)
from shared.ledger.notices import NewNotice, NoticeOutbox, add_notice
from shared.ledger.refresh_tokens import RefreshTokenStore
from shared.ledger.users import UserStore

logger = logging.getLogger(__name__)


class _Unset(Enum):
    UNSET = 0


UNSET = _Unset.UNSET

_FINISHED_CLOSE_STATUSES = frozenset(
    {CloseStatus.DONE.value, CloseStatus.FAILED.value, CloseStatus.DRY_RUN.value}
)


class Ledger(AuditTrail, ConnectionStore, RefreshTokenStore, NoticeOutbox, UserStore, JournalRequestStore):
    """The ledger over one engine. Thread-safe: every method opens its own session. The audit trail
    (:class:`AuditTrail`), the stored connections (:class:`ConnectionStore`), the ERP's refresh
    tokens (:class:`RefreshTokenStore`), the notice outbox (:class:`NoticeOutbox`), the Finance
    console's users (:class:`UserStore`) and the manual journal entries awaiting approval
    (:class:`JournalRequestStore`) are parts of it kept in modules of their own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, database_url: str) -> Ledger:
        return cls(make_engine(database_url))

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work for ``shared.ledger.states`` calls: commits on success, else rolls back."""
        with session_scope(self.engine) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read-only unit of work: on SQLite it reads one snapshot beside the writer (and beside
        an open :meth:`session` of the same thread) instead of queueing for the write lock."""
        with session_scope(self.engine, read_only=True) as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    # -- stream marks ------------------------------------------------------------------------

    @staticmethod
    def _ensure_stream(session: Session, connection: str, stream: str) -> None:
        insert_ignoring_conflict(
            session,
            metadata.tables["stream_mark"],
            {
                "connection": connection,
                "stream": stream,
                "missed_by_mark": 0,
                "missed_by_push": 0,
                "pulled_total": 0,
            },
            ["connection", "stream"],
        )

    @staticmethod
    def _stream_key(connection: str, stream: str) -> sa.ColumnElement[bool]:
        return sa.and_(col(StreamMark.connection) == connection, col(StreamMark.stream) == stream)

    def _update_stream(self, connection: str, stream: str, **values: Any) -> StreamMark:
        with session_scope(self.engine) as session:
            self._ensure_stream(session, connection, stream)
            session.execute(
                sa.update(StreamMark)
                .where(self._stream_key(connection, stream))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            return session.exec(select(StreamMark).where(self._stream_key(connection, stream))).one()

    def get_stream(self, connection: str, stream: str) -> StreamMark | None:
        with session_scope(self.engine, read_only=True) as session:
            return session.get(StreamMark, (connection, stream))

    def list_streams(self, connection: str) -> list[StreamMark]:
        with session_scope(self.engine, read_only=True) as session:
            query = (
                select(StreamMark).where(StreamMark.connection == connection).order_by(col(StreamMark.stream))
            )
            return list(session.exec(query).all())

    def get_mark(self, connection: str, stream: str) -> datetime | None:
        """The stream's high-water mark; ``None`` before its first committed page."""
        row = self.get_stream(connection, stream)
        return row.mark if row else None

    def advance_mark(self, connection: str, stream: str, mark: datetime) -> datetime:
        """Move the mark to ``mark`` unless it is already later (a mark never moves backwards,
        even when two runs race); returns the mark now stored. Call only after every record up
        to ``mark`` is committed to the ledger."""
        with session_scope(self.engine) as session:
            self._ensure_stream(session, connection, stream)
            session.execute(
                sa.update(StreamMark)
                .where(self._stream_key(connection, stream))
                .where(sa.or_(col(StreamMark.mark).is_(None), col(StreamMark.mark) < mark))
                .values(mark=mark)
                .execution_options(synchronize_session=False)
            )
            stored = session.exec(select(StreamMark.mark).where(self._stream_key(connection, stream))).one()
            assert stored is not None  # just set, or already later
            return stored

    def start_stream_run(self, connection: str, stream: str, *, now: datetime | None = None) -> StreamMark:
        """Record that a pull of ``stream`` began; returns the row (with the mark to read from)."""
        return self._update_stream(
            connection,
            stream,
            run_started_at=now or utcnow(),
            run_finished_at=None,
            last_status="running",
            last_error=None,
        )

    def finish_stream_run(
        self,
        connection: str,
        stream: str,
        *,
        status: str,
        error: str | None = None,
        pulled: int = 0,
        now: datetime | None = None,
    ) -> StreamMark:
        """Record the end of a pull (``status`` such as ``"ok"``/``"failed"``) and add ``pulled``."""
        return self._update_stream(
            connection,
            stream,
            run_finished_at=now or utcnow(),
            last_status=status,
            last_error=error,
            pulled_total=col(StreamMark.pulled_total) + pulled,
        )

    def add_missed(self, connection: str, stream: str, by_mark: int = 0, by_push: int = 0) -> StreamMark:
        """Count records the mark-based pull or the push path missed (found later by the other)."""
        return self._update_stream(
            connection,
            stream,
            missed_by_mark=col(StreamMark.missed_by_mark) + by_mark,
            missed_by_push=col(StreamMark.missed_by_push) + by_push,
        )

    # -- close runs --------------------------------------------------------------------------

    def open_close_run(
        self,
        connection: str,
        period_name: str,
        allow_closed: bool = False,
        dry_run: bool = False,
        *,
        step: str = "start",
    ) -> tuple[CloseRun, bool]:
        """The open run (running, awaiting approval or needing attention) of this period and kind (real or dry run),
        or a new one at ``step``; returns ``(run, created)``. An existing run is returned as is -
        its flags are not changed. Concurrent calls get the same run (partial unique index)."""
        for attempt in (1, 2):
            try:
                with session_scope(self.engine) as session:
                    existing = session.exec(
                        select(CloseRun)
                        .where(
                            CloseRun.connection == connection,
                            CloseRun.period_name == period_name,
                            CloseRun.dry_run == dry_run,
                            col(CloseRun.status).in_(OPEN_CLOSE_STATUSES),
                        )
                        .order_by(col(CloseRun.id))
                    ).first()
                    if existing is not None:
                        return existing, False
                    now = utcnow()
                    run = CloseRun(
                        connection=connection,
                        period_name=period_name,
                        step=step,
                        status=CloseStatus.RUNNING.value,
                        allow_closed=allow_closed,
                        dry_run=dry_run,
                        details={},
                        created_at=now,
                        updated_at=now,
                    )
                    session.add(run)
                    session.flush()
                return run, True
            except IntegrityError:
                # Another process opened the run between our read and our insert: return theirs.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def update_close_run(
        self,
        run_id: int,
        *,
        step: str | None = None,
        status: str | None = None,
        details_update: Mapping[str, Any] | None = None,
        error: str | _Unset | None = UNSET,
        period_id: str | None = None,
        journal_run_number: str | None = None,
        notice: Callable[[CloseRun], NewNotice | None] | None = None,
        expect_status: str | None = None,
    ) -> CloseRun:
        """Change a close run; ``details_update`` is merged into ``details`` (top-level keys
        replaced). A finishing status (done, failed, dry_run) sets ``finished_at``; an open one
        clears it. ``error=None`` clears the error; leaving it out keeps it. ``notice`` is given
        the changed run and what it returns goes into the notice outbox in the same transaction
        (:mod:`shared.ledger.notices`): the change and its notice commit together. With
        ``expect_status``, the change is made only while the run still has that status (read under
        the row lock): :class:`TransitionConflict` otherwise."""
        if status is not None and status not in {s.value for s in CloseStatus}:
            raise ValueError(f"unknown close status {status!r}; one of: {', '.join(CloseStatus)}")
        with session_scope(self.engine) as session:
            run = session.get(CloseRun, run_id, with_for_update=True)
            if run is None:
                raise RecordNotFound(f"no close run with id {run_id}")
            if expect_status is not None and run.status != expect_status:
                raise TransitionConflict(
                    f"close run {run_id} is {run.status} now, not {expect_status}: someone else changed it first"
                )
            now = utcnow()
            if step is not None:
                run.step = step
            if status is not None:
                run.status = status
                run.finished_at = now if status in _FINISHED_CLOSE_STATUSES else None
            if details_update:
                run.details = {**run.details, **details_update}
            if not isinstance(error, _Unset):
                run.error = error
            if period_id is not None:
                run.period_id = period_id
            if journal_run_number is not None:
                run.journal_run_number = journal_run_number
            run.updated_at = now
            new_notice = notice(run) if notice is not None else None
            if new_notice is not None:
                add_notice(session, new_notice, now=now)
            return run

    def get_close_run(self, run_id: int) -> CloseRun:
        with session_scope(self.engine, read_only=True) as session:
            run = session.get(CloseRun, run_id)
            if run is None:
                raise RecordNotFound(f"no close run with id {run_id}")
            return run

    def latest_close_runs(self, connection: str, limit: int = 20) -> list[CloseRun]:
        """The connection's most recent close runs, newest first."""
        with session_scope(self.engine, read_only=True) as session:
            query = (
                select(CloseRun)
                .where(CloseRun.connection == connection)
                .order_by(col(CloseRun.id).desc())
                .limit(limit)
            )
            return list(session.exec(query).all())

    # -- sync records ------------------------------------------------------------------------

    def get_record(self, connection: str, object_type: str, zuora_id: str) -> SyncRecord | None:
        with session_scope(self.engine, read_only=True) as session:
            return session.exec(
                select(SyncRecord).where(
                    SyncRecord.connection == connection,
                    SyncRecord.object_type == object_type,
                    SyncRecord.zuora_id == zuora_id,
                )
            ).first()

    def get_record_by_id(self, record_id: int) -> SyncRecord | None:
        with session_scope(self.engine, read_only=True) as session:
            return session.get(SyncRecord, record_id)

    def find_records(self, connection: str, number_or_id: str) -> list[SyncRecord]:
        """Records whose Zuora id, Zuora number or ERP reference is ``number_or_id``."""
        with session_scope(self.engine, read_only=True) as session:
            query = (
                select(SyncRecord)
                .where(
                    SyncRecord.connection == connection,
                    sa.or_(
                        col(SyncRecord.zuora_id) == number_or_id,
                        col(SyncRecord.zuora_number) == number_or_id,
                        col(SyncRecord.erp_ref) == number_or_id,
                    ),
                )
                .order_by(col(SyncRecord.object_type), col(SyncRecord.id))
            )
            return list(session.exec(query).all())

    def records_for_close_run(self, close_run_id: int) -> list[SyncRecord]:
        """The journal entries a close run put in the ledger, in insertion order."""
        with session_scope(self.engine, read_only=True) as session:
            query = (
                select(SyncRecord).where(SyncRecord.close_run_id == close_run_id).order_by(col(SyncRecord.id))
            )
            return list(session.exec(query).all())

    def counts_by_state(self, connection: str) -> dict[tuple[str, str], int]:
        """``{(object_type, state): count}`` for the connection."""
        with session_scope(self.engine, read_only=True) as session:
            query = (
                select(SyncRecord.object_type, SyncRecord.state, func.count())
                .where(SyncRecord.connection == connection)
                .group_by(col(SyncRecord.object_type), col(SyncRecord.state))
            )
            return {(object_type, state): int(n) for object_type, state, n in session.exec(query).all()}

    # -- callout notifications ---------------------------------------------------------------

    def record_callout(
        self,
        connection: str,
        notification_id: str,
        event_code: str,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        account_id: str | None = None,
        digest: str | None = None,
    ) -> tuple[CalloutNotification, bool]:
        """Store a received callout; returns ``(row, is_new)`` - ``False`` for a duplicate delivery:
        the same notification id, or the same ``digest`` of what the signature covers (a captured
        delivery replayed under a fresh id)."""
        same = col(CalloutNotification.notification_id) == notification_id
        if digest is not None:
            same = sa.or_(same, col(CalloutNotification.digest) == digest)
        key = sa.and_(col(CalloutNotification.connection) == connection, same)
        with session_scope(self.engine) as session:
            inserted = insert_ignoring_conflict(
                session,
                metadata.tables["callout_notification"],
                {
                    "connection": connection,
                    "notification_id": notification_id,
                    "event_code": event_code,
                    "object_type": object_type,
                    "object_id": object_id,
                    "account_id": account_id,
                    "digest": digest,
                    "received_at": utcnow(),
                    "state": CalloutState.RECEIVED.value,
                },
                None,  # either key: the id or the digest
            )
            first = select(CalloutNotification).where(key).order_by(col(CalloutNotification.id)).limit(1)
            return session.exec(first).one(), inserted

    def set_callout_state(self, callout_id: int, state: str, error: str | None = None) -> None:
        self.set_callout_states({callout_id: (state, error)})

    def set_callout_states(self, changes: Mapping[int, tuple[str, str | None]]) -> None:
        """Set ``{callout id: (state, error)}`` in one transaction (one UPDATE per distinct pair);
        :class:`RecordNotFound` (and nothing written) if an id has no row."""
        known = {s.value for s in CalloutState}
        groups: dict[tuple[str, str | None], list[int]] = {}
        for callout_id, (state, error) in changes.items():
            if state not in known:
                raise ValueError(f"unknown callout state {state!r}; one of: {', '.join(CalloutState)}")
            groups.setdefault((state, error), []).append(callout_id)
        with session_scope(self.engine) as session:
            for (state, error), ids in groups.items():
                updated = session.execute(
                    sa.update(CalloutNotification)
                    .where(col(CalloutNotification.id).in_(ids))
                    .values(state=state, error=error)
                    .execution_options(synchronize_session=False)
                )
                if updated.rowcount != len(ids):  # type: ignore[attr-defined]
                    found = set(
                        session.exec(
                            select(CalloutNotification.id).where(col(CalloutNotification.id).in_(ids))
                        )
                    )
                    missing = sorted(set(ids) - found)
                    raise RecordNotFound(f"no callout notification with id {', '.join(map(str, missing))}")
