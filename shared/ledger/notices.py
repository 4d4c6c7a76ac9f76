"""The notice outbox of the ledger: notices for people, recorded with the change they report and
delivered afterwards, at least once.

A notice is written by :func:`add_notice` inside the caller's unit of work (the transaction that
changes a close run's status, :meth:`~shared.ledger.repo.Ledger.update_close_run`), so the change
and its notice commit together or not at all. A deliverer then works one row at a time:

1. :meth:`NoticeOutbox.claim_notice` - one conditional UPDATE: the row is undelivered and due;
   ``attempts`` + 1 and ``next_attempt_at`` moved a lease ahead, so no other deliverer takes it
   while this one sends (a deliverer that dies mid-send leaves it due again when the lease ends);
2. the send, outside any transaction;
3. :meth:`NoticeOutbox.notice_delivered` (``delivered_at``) or :meth:`NoticeOutbox.notice_failed`
   (``last_error`` and the next attempt's time, only while the claim is still this deliverer's).

A crash between 2 and 3 sends the notice again after the lease: delivery is at least once, and
each delivery carries the row's id for the receiver to drop a repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from shared.ledger.db import insert_ignoring_conflict, session_scope
from shared.ledger.models import NoticeOutbox as NoticeRow
from shared.ledger.models import metadata, utcnow

# A last error is kept to this many characters.
_ERROR_CHARS = 1000


@dataclass(frozen=True)
class NewNotice:
    """A notice to record: ``payload`` is what the deliverer sends (JSON-ready), ``dedupe_key`` is
    unique to the change it reports (the same change recorded twice is one notice)."""

    connection: str
    subject: str
    event: str
    dedupe_key: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class UndeliveredNotices:
    """What ``ledgerbridge status`` says of the outbox: how many notices are undelivered, since
    when (the oldest's ``created_at``) and the newest failure's reason."""

    count: int
    oldest: datetime | None
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "oldest": self.oldest.isoformat() if self.oldest is not None else None,
            "last_error": self.last_error,
        }


def add_notice(session: Session, notice: NewNotice, *, now: datetime | None = None) -> bool:
    """Record ``notice`` in ``session``'s transaction, due at once; False when its dedupe key is
    already recorded (nothing is written)."""
    at = now or utcnow()
    return insert_ignoring_conflict(
        session,
        metadata.tables["notice_outbox"],
        {
            "connection": notice.connection,
            "subject": notice.subject,
            "event": notice.event,
            "payload": dict(notice.payload),
            "dedupe_key": notice.dedupe_key,
            "created_at": at,
            "next_attempt_at": at,
            "attempts": 0,
        },
        ["dedupe_key"],
    )


def _undelivered() -> sa.ColumnElement[bool]:
    return col(NoticeRow.delivered_at).is_(None)


class NoticeOutbox:
    """The outbox's part of :class:`~shared.ledger.repo.Ledger` (one transaction a method)."""

    engine: Engine

    def notices_due(self, *, now: datetime | None = None, limit: int = 50) -> list[int]:
        """The ids of undelivered notices due by ``now``, oldest first."""
        with session_scope(self.engine, read_only=True) as session:
            query = (
                select(NoticeRow.id)
                .where(_undelivered(), col(NoticeRow.next_attempt_at) <= (now or utcnow()))
                .order_by(col(NoticeRow.next_attempt_at), col(NoticeRow.id))
                .limit(limit)
            )
            return [int(i) for i in session.exec(query).all() if i is not None]

    def next_notice_due(self) -> datetime | None:
        """When the next undelivered notice is due (None: every notice is delivered)."""
        with session_scope(self.engine, read_only=True) as session:
            return session.exec(select(func.min(NoticeRow.next_attempt_at)).where(_undelivered())).one()

    def claim_notice(self, notice_id: int, *, lease: float, now: datetime | None = None) -> NoticeRow | None:
        """Take the notice for one delivery attempt: None unless it is undelivered and due (another
        deliverer has it, or it is delivered, or its retry is not due yet). The claim lasts
        ``lease`` seconds; the returned row's ``attempts`` identifies it."""
        at = now or utcnow()
        with session_scope(self.engine) as session:
            claimed = session.execute(
                sa.update(NoticeRow)
                .where(col(NoticeRow.id) == notice_id, _undelivered(), col(NoticeRow.next_attempt_at) <= at)
                .values(attempts=col(NoticeRow.attempts) + 1, next_attempt_at=at + timedelta(seconds=lease))
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult of an UPDATE
                return None
            return session.get(NoticeRow, notice_id)

    def notice_delivered(self, notice_id: int, *, now: datetime | None = None) -> bool:
        """Record that the notice was sent; False when it was already recorded delivered."""
        with session_scope(self.engine) as session:
            done = session.execute(
                sa.update(NoticeRow)
                .where(col(NoticeRow.id) == notice_id, _undelivered())
                .values(delivered_at=now or utcnow())
                .execution_options(synchronize_session=False)
            )
            return bool(done.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult of an UPDATE

    def notice_failed(self, notice_id: int, *, attempt: int, error: str, retry_at: datetime) -> bool:
        """Record why attempt ``attempt`` failed and when to try again; False (nothing written) when
        the claim is no longer this attempt's (its lease ran out and another deliverer took it) or
        the notice was delivered meanwhile."""
        with session_scope(self.engine) as session:
            failed = session.execute(
                sa.update(NoticeRow)
                .where(col(NoticeRow.id) == notice_id, _undelivered(), col(NoticeRow.attempts) == attempt)
                .values(last_error=error[:_ERROR_CHARS], next_attempt_at=retry_at)
                .execution_options(synchronize_session=False)
            )
            return bool(failed.rowcount == 1)  # type: ignore[attr-defined]  # CursorResult of an UPDATE

    def undelivered_notices(self, connection: str | None = None) -> UndeliveredNotices:
        """The undelivered notices (of ``connection``, or all): count, oldest, last error."""
        with session_scope(self.engine, read_only=True) as session:
            where = [_undelivered()]
            if connection is not None:
                where.append(col(NoticeRow.connection) == connection)
            count, oldest = session.exec(
                select(func.count(), func.min(NoticeRow.created_at)).where(*where)
            ).one()
            last_error = session.exec(
                select(NoticeRow.last_error)
                .where(*where, col(NoticeRow.last_error).is_not(None))
                .order_by(col(NoticeRow.id).desc())
                .limit(1)
            ).first()
            return UndeliveredNotices(count=int(count), oldest=oldest, last_error=last_error)

    def notices_of(self, subject: str) -> list[NoticeRow]:
        """The notices about ``subject`` (``close:<id>``), oldest first."""
        with session_scope(self.engine, read_only=True) as session:
            query = select(NoticeRow).where(col(NoticeRow.subject) == subject).order_by(col(NoticeRow.id))
            return list(session.exec(query).all())
