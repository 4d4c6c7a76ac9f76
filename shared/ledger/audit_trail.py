"""The audit trail of the ledger: every HTTP exchange and note, a subject's timeline, pruning."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from shared.exchange import Exchange, current_subject
from shared.ledger.db import session_scope
from shared.ledger.models import AuditEvent, AuditKind, metadata, utcnow

logger = logging.getLogger("shared.ledger.repo")


class AuditTrail:
    """The audit trail's part of :class:`~shared.ledger.repo.Ledger` (one transaction a method)."""

    engine: Engine

    def record_exchange(self, exchange: Exchange) -> None:
        """The API clients' audit hook: store one (already redacted) HTTP exchange. Never raises."""
        self.record_exchanges([exchange])

    def record_exchanges(self, exchanges: Iterable[Exchange]) -> None:
        """Store these (already redacted) HTTP exchanges in one transaction. Never raises."""
        subject = current_subject.get()
        now = utcnow()
        # Plain rows through Core: an append-only table needs no unit of work, and a busy worker
        # writes thousands of these a minute.
        rows = [
            {
                "at": exchange.at or now,
                "connection": exchange.connection,
                "kind": AuditKind.HTTP.value,
                "subject": exchange.subject or subject,
                "api": exchange.api,
                "method": exchange.method,
                "url": exchange.url,
                "status": exchange.status,
                "duration_ms": exchange.duration_ms,
                "request_id": exchange.request_id,
                "attempt": exchange.attempt,
                "request_headers": dict(exchange.request_headers),
                "request_body": exchange.request_body,
                "response_headers": dict(exchange.response_headers),
                "response_body": exchange.response_body,
                "message": exchange.error,
            }
            for exchange in exchanges
        ]
        if not rows:
            return
        try:
            with self.engine.begin() as connection:
                connection.execute(sa.insert(metadata.tables["audit_event"]), rows)
        except Exception:
            # The hook runs inside an API call whose effect (an ERP document, a Zuora update) may
            # already have happened; raising here would make the flow treat a success as a
            # failure. A lost audit line costs less: log it loudly and carry on.
            first = rows[0]
            logger.exception(
                "could not write %d audit event(s)",
                len(rows),
                extra={"api": first["api"], "method": first["method"], "url": first["url"]},
            )

    def note(
        self, subject: str | None, message: str, connection: str | None = None, *, actor: str | None = None
    ) -> None:
        """Add a free-text note to ``subject``'s timeline (who replayed it, why a close stopped ...);
        ``actor`` is the console user who did it."""
        with session_scope(self.engine) as session:
            session.add(
                AuditEvent(
                    at=utcnow(),
                    connection=connection,
                    kind=AuditKind.NOTE.value,
                    subject=subject,
                    message=message,
                    actor=actor,
                )
            )

    def timeline(self, subject: str, *, limit: int | None = None) -> list[AuditEvent]:
        """Everything that happened to ``subject`` (exchanges, transitions, notes), oldest first."""
        with session_scope(self.engine, read_only=True) as session:
            query = (
                select(AuditEvent)
                .where(AuditEvent.subject == subject)
                .order_by(col(AuditEvent.at), col(AuditEvent.id))
            )
            if limit is not None:
                query = query.limit(limit)
            return list(session.exec(query).all())

    def prune_audit(self, older_than: datetime, *, batch_size: int = 10_000) -> int:
        """Delete audit events from before ``older_than``; returns how many. Works in batches, each
        its own short transaction, so a large prune never holds long locks."""
        total = 0
        while True:
            with session_scope(self.engine) as session:
                batch = (
                    select(AuditEvent.id)
                    .where(AuditEvent.at < older_than)
                    .order_by(col(AuditEvent.id))
                    .limit(batch_size)
                    .scalar_subquery()
                )
                result = session.execute(
                    sa.delete(AuditEvent)
                    .where(col(AuditEvent.id).in_(batch))
                    .execution_options(synchronize_session=False)
                )
                deleted = int(getattr(result, "rowcount", 0) or 0)
            total += deleted
            if deleted < batch_size:
                return total
