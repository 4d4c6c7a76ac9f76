"""The ledger side of applications applied after their document (:class:`ErpApplication`).

A payment, refund or credit memo is posted with the applications whose targets the ERP has; the
others are named under ``not_applied`` in its ERP payload. :func:`record_left_out` keeps each of
those (in the transaction that records the document as posted) as a ``waiting`` application;
:func:`due_sources` finds the documents with one whose target is now posted and released;
:func:`claim`, :func:`settle` and :func:`back_off` move one application through ``applying`` to
``applied`` with the same discipline as a record: a guarded UPDATE per change, an audit line on
the document's subject for each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import Session, col, select

from shared.ledger.db import insert_ignoring_conflict
from shared.ledger.models import ApplicationState, ErpApplication, SyncRecord, metadata, utcnow
from shared.ledger.states import MARKED, POSTED, SYNC_RECORDS, audit_note

WAITING = ApplicationState.WAITING.value
APPLYING = ApplicationState.APPLYING.value
APPLIED = ApplicationState.APPLIED.value

APPLICATIONS = metadata.tables["erp_application"]

# The not_applied entries never applied later: an unreadable amount, and a target left unreleased
# by configuration (documents are not released, so Acumatica cannot apply to it; a person
# releases and applies there).
_NEVER = ("unreadable", "not released in the ERP")


def left_out_entries(erp_payload: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The ``not_applied`` entries of an ERP payload that can be applied later: those naming their
    target's object type, Zuora id and amount."""
    entries = (erp_payload or {}).get("not_applied") or []
    return [
        e
        for e in entries
        if isinstance(e, dict)
        and e.get("object_type")
        and e.get("zuora_id")
        and e.get("amount")
        and not any(never in str(e.get("reason", "")) for never in _NEVER)
    ]


def record_left_out(session: Session, rec: SyncRecord, *, now: datetime | None = None) -> int:
    """Keep the applications ``rec``'s ERP document was created without as waiting ones (once
    each: recording the same document again adds nothing). Returns how many were new."""
    return keep(session, rec, left_out_entries(rec.posted_payload), now=now)


def keep(
    session: Session, rec: SyncRecord, entries: Sequence[Mapping[str, Any]], *, now: datetime | None = None
) -> int:
    """Keep these applications of ``rec`` (``not_applied``-shaped entries: ``target``, ``reason``,
    ``object_type``, ``zuora_id``, ``amount``) as waiting ones, each (document, target) once.
    Returns how many were new."""
    assert rec.id is not None
    now = now or utcnow()
    added = 0
    for entry in entries:
        values = {
            "connection": rec.connection,
            "record_id": rec.id,
            "target_type": entry["object_type"],
            "target_id": entry["zuora_id"],
            "amount": str(entry["amount"]),
            "state": WAITING,
            "reason": entry.get("reason"),
            "attempts": 0,
            "next_attempt_at": None,
            "created_at": now,
            "updated_at": now,
        }
        if insert_ignoring_conflict(session, APPLICATIONS, values, ["record_id", "target_type", "target_id"]):
            added += 1
            name = entry.get("target") or entry["zuora_id"]
            audit_note(
                session, now, rec.connection, rec.subject,
                f"application to {entry['object_type']} {name} for {entry['amount']} is kept to be applied in "
                f"the ERP once {name} is posted there ({entry.get('reason')})",
            )  # fmt: skip
    return added


def open_applications(session: Session, record_id: int) -> list[ErpApplication]:
    """The waiting and applying applications of one document, oldest first."""
    rows = session.exec(
        select(ErpApplication)
        .where(ErpApplication.record_id == record_id, col(ErpApplication.state).in_([WAITING, APPLYING]))
        .order_by(col(ErpApplication.id))
    ).all()
    return list(rows)


def applications_of(session: Session, record_ids: Sequence[int]) -> list[ErpApplication]:
    """Every application kept for these documents (any state), by document then id."""
    if not record_ids:
        return []
    rows = session.exec(
        select(ErpApplication)
        .where(col(ErpApplication.record_id).in_(list(record_ids)))
        .order_by(col(ErpApplication.record_id), col(ErpApplication.id))
    ).all()
    return list(rows)


def is_due(app: ErpApplication, now: datetime) -> bool:
    """A waiting application past its backoff, or an applying one whose claim is over."""
    if app.state == WAITING:
        return app.next_attempt_at is None or app.next_attempt_at <= now
    return app.state == APPLYING and app.next_attempt_at is not None and app.next_attempt_at <= now


def claim(session: Session, app: ErpApplication, *, until: datetime, now: datetime) -> bool:
    """Claim a due application until ``until`` (waiting or expired applying -> applying); False
    when another worker changed it since it was read."""
    result = session.execute(
        sa.update(APPLICATIONS)
        .where(
            APPLICATIONS.c.id == app.id,
            APPLICATIONS.c.state == app.state,
            APPLICATIONS.c.updated_at == app.updated_at,
        )
        .values(state=APPLYING, next_attempt_at=until, attempts=app.attempts + 1, updated_at=now)
    )
    return bool(cast(Any, result).rowcount == 1)


def settle(
    session: Session, app: ErpApplication, subject: str, *, target_ref: str, found: bool, now: datetime
) -> None:
    """applying -> applied: the ERP has the application (``found``: it had it already, a lost
    answer's work)."""
    session.execute(
        sa.update(APPLICATIONS)
        .where(APPLICATIONS.c.id == app.id)
        .values(
            state=APPLIED, target_ref=target_ref, applied_at=now, updated_at=now,
            next_attempt_at=None, last_error=None,
        )
    )  # fmt: skip
    how = "found applied already" if found else "applied"
    audit_note(
        session, now, app.connection, subject,
        f"application to {app.target_type} {target_ref} for {app.amount} {how} in the ERP",
    )  # fmt: skip


def back_off(
    session: Session, app: ErpApplication, subject: str, *, error: str, retry_at: datetime, now: datetime
) -> None:
    """applying -> waiting until ``retry_at``, with why."""
    session.execute(
        sa.update(APPLICATIONS)
        .where(APPLICATIONS.c.id == app.id, APPLICATIONS.c.state == APPLYING)
        .values(state=WAITING, next_attempt_at=retry_at, last_error=error[:2000], updated_at=now)
    )
    audit_note(
        session, now, app.connection, subject, f"application to {app.target_type} not applied yet: {error}"
    )


def due_sources(session: Session, connection: str, *, now: datetime, limit: int) -> list[int]:
    """Posted and released documents with a due application whose target is posted and released
    in the ERP now (at most ``limit``)."""
    app, target, source = APPLICATIONS.alias("a"), SYNC_RECORDS.alias("t"), SYNC_RECORDS.alias("s")
    posted = (POSTED, MARKED)
    due = sa.or_(
        sa.and_(
            app.c.state == WAITING, sa.or_(app.c.next_attempt_at.is_(None), app.c.next_attempt_at <= now)
        ),
        sa.and_(app.c.state == APPLYING, app.c.next_attempt_at <= now),
    )
    statement = (
        sa.select(app.c.record_id)
        .select_from(
            app.join(
                target,
                sa.and_(
                    target.c.connection == app.c.connection,
                    target.c.object_type == app.c.target_type,
                    target.c.zuora_id == app.c.target_id,
                ),
            ).join(source, source.c.id == app.c.record_id)
        )
        .where(
            app.c.connection == connection,
            due,
            target.c.state.in_(posted),
            target.c.erp_released == sa.true(),
            source.c.state.in_(posted),
            source.c.erp_released == sa.true(),
        )
        .distinct()
        .order_by(app.c.record_id)
        .limit(limit)
    )
    return [int(r) for r in session.execute(statement).scalars()]


def counts(session: Session, connection: str) -> dict[str, int]:
    """How many applications are in each state."""
    rows = session.execute(
        sa.select(APPLICATIONS.c.state, sa.func.count())
        .where(APPLICATIONS.c.connection == connection)
        .group_by(APPLICATIONS.c.state)
    ).all()
    return {str(state): int(n) for state, n in rows}
