"""Manual journal entries waiting for a second person (``journal_entry_request``): see
:mod:`shared.journal_requests` for the flow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import col, select

from shared.ledger.db import session_scope
from shared.ledger.errors import RecordNotFound, TransitionConflict
from shared.ledger.models import JournalEntryRequest, utcnow
from shared.ledger.notices import NewNotice, add_notice


class JournalRequestStore:
    """The journal entry requests' part of :class:`~shared.ledger.repo.Ledger`."""

    engine: Engine

    def add_journal_request(
        self,
        connection: str,
        entry: dict[str, Any],
        *,
        fingerprint: str,
        requested_by: str,
        status: str,
        notice: Callable[[JournalEntryRequest], NewNotice] | None = None,
    ) -> JournalEntryRequest:
        """Record a checked entry waiting for approval, with the notice ``notice(row)`` gives in the
        same transaction (the notice outbox)."""
        with session_scope(self.engine) as session:
            row = JournalEntryRequest(
                connection=connection,
                status=status,
                entry=entry,
                fingerprint=fingerprint,
                requested_by=requested_by,
                requested_at=utcnow(),
            )
            session.add(row)
            session.flush()
            if notice is not None:
                add_notice(session, notice(row))
            return row

    def get_journal_request(self, request_id: int) -> JournalEntryRequest:
        with session_scope(self.engine, read_only=True) as session:
            row = session.get(JournalEntryRequest, request_id)
            if row is None:
                raise RecordNotFound(f"there is no journal entry request {request_id}")
            return row

    def list_journal_requests(
        self, connection: str, *, status: str | None = None, limit: int = 100
    ) -> list[JournalEntryRequest]:
        """The connection's requests, newest first (only those in ``status`` when given)."""
        with session_scope(self.engine, read_only=True) as session:
            query = select(JournalEntryRequest).where(JournalEntryRequest.connection == connection)
            if status is not None:
                query = query.where(JournalEntryRequest.status == status)
            query = query.order_by(col(JournalEntryRequest.id).desc()).limit(limit)
            return list(session.exec(query).all())

    def update_journal_request(
        self, request_id: int, *, expect_status: str, **values: Any
    ) -> JournalEntryRequest:
        """Change a request while it still has ``expect_status`` (read under the row lock);
        :class:`TransitionConflict` when someone changed it first."""
        with session_scope(self.engine) as session:
            row = session.get(JournalEntryRequest, request_id, with_for_update=True)
            if row is None:
                raise RecordNotFound(f"there is no journal entry request {request_id}")
            if row.status != expect_status:
                raise TransitionConflict(
                    f"journal entry request {request_id} is {row.status} now, not {expect_status}"
                )
            for name, value in values.items():
                setattr(row, name, value)
            session.add(row)
            session.flush()
            return row
