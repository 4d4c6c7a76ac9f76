"""The sync-record state machine: the only code that writes ``SyncRecord.state``.

::

    (new) -> pending -> posting -> posted (erp_ref) -> marked
                |          |
                |          +--> failed --retry/replay--> pending
                +--> failed
    pending | posting | failed --park--> parked --replay--> pending
    posting (no erp_ref, in doubt) --hold_in_doubt--> posting (looked up again at a set time)
    posting (no erp_ref, in doubt) --resume_in_doubt--> posted (found in the ERP) | pending (not found)
    posted | marked --begin_posting(force=True)--> posting        (``replay --force``)

Every function takes a Session and a record (or its id), validates the transition against the
table (:class:`IllegalTransition` otherwise), writes the state and the bookkeeping columns as one
UPDATE guarded by the row's optimistic-lock ``version`` - so a concurrent change by another worker
is detected here as :class:`TransitionConflict` (the session must then be rolled back) - and
appends an ``AuditEvent(kind="transition")`` row. The hot transitions given an id (pending ->
posting, posting -> posted, posted -> marked) skip the read: their UPDATE is guarded by the state
the table allows them from, which it checks under the row's lock, and returns the row; a row in
another state is then read and refused (or moved) as any other. A pulled page
(:func:`upsert_pulled_page`) and a marked batch (:func:`mark_transferred_many`) are set-based. Nothing commits: the caller owns the transaction, and
before an ERP create the caller commits ``begin_posting`` on its own, so a crash leaves the row
visibly in doubt (see ARCHITECTURE.md, "The ledger is the truth").

``next_attempt_at`` is when the sweep may re-drive the row: a little after it became pending or
posted (its task should have run by then), the posting timeout for ``posting`` (after which it is
in doubt; a worker that lost the ERP's answer sets a lookup seconds away instead), the backoff for
``failed``, and ``None`` for ``marked`` and ``parked``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, col, select

from shared.backoff import exponential, full_jitter
from shared.ledger.db import insert_ignoring_conflict
from shared.ledger.errors import IllegalTransition, RecordNotFound, TransitionConflict
from shared.ledger.models import (
    AuditKind,
    ObjectType,
    RecordSource,
    RecordState,
    SyncRecord,
    metadata,
    utcnow,
)

PENDING = RecordState.PENDING.value
POSTING = RecordState.POSTING.value
POSTED = RecordState.POSTED.value
MARKED = RecordState.MARKED.value
FAILED = RecordState.FAILED.value
PARKED = RecordState.PARKED.value
STATES = tuple(s.value for s in RecordState)

# Transitions any caller may make.
ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        (PENDING, POSTING),
        (POSTING, POSTED),
        (POSTED, MARKED),
        (PENDING, FAILED),
        (POSTING, FAILED),
        (FAILED, PENDING),
        (PENDING, PARKED),
        (POSTING, PARKED),
        (FAILED, PARKED),
        (PARKED, PENDING),
    }
)
# Re-posting a document the ERP already has: only an engineer's ``replay --force``.
FORCE_ONLY: frozenset[tuple[str, str]] = frozenset({(POSTED, POSTING), (MARKED, POSTING)})
# Back to pending from posting: only when an in-doubt row was looked up and not found in the ERP.
IN_DOUBT_ONLY: frozenset[tuple[str, str]] = frozenset({(POSTING, PENDING)})

PENDING_GRACE = timedelta(minutes=5)
POSTING_TIMEOUT = timedelta(minutes=15)
RETRY_BASE_SECONDS = 60.0
RETRY_CAP_SECONDS = 6 * 3600.0
MAX_ERROR_CHARS = 4000

RecordRef = SyncRecord | int
AUDIT_EVENTS = metadata.tables["audit_event"]
SYNC_RECORDS = metadata.tables["sync_record"]


def is_allowed(old: str, new: str, *, force: bool = False, in_doubt: bool = False) -> bool:
    """Whether the table allows ``old -> new`` (``force``: replay --force; ``in_doubt``: the
    in-doubt resolution)."""
    edge = (old, new)
    return edge in ALLOWED or (force and edge in FORCE_ONLY) or (in_doubt and edge in IN_DOUBT_ONLY)


def check_transition(
    old: str, new: str, *, force: bool = False, in_doubt: bool = False, subject: str = "record"
) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is allowed."""
    if is_allowed(old, new, force=force, in_doubt=in_doubt):
        return
    edge = (old, new)
    if edge in FORCE_ONLY:
        hint = " (re-posting a posted record needs force: `replay --force`)"
    elif edge in IN_DOUBT_ONLY:
        hint = " (only resume_in_doubt may return a posting record to pending)"
    else:
        allowed = sorted(n for (o, n) in ALLOWED if o == old)
        hint = f" (from {old} only: {', '.join(allowed) or 'nothing'})"
    raise IllegalTransition(f"illegal transition {old} -> {new} for {subject}{hint}")


def _load(session: Session, record: RecordRef) -> SyncRecord:
    if isinstance(record, int):
        # FOR UPDATE on PostgreSQL narrows the conflict window; SQLite serialises writers anyway.
        found = session.get(SyncRecord, record, with_for_update=True)
        if found is None:
            raise RecordNotFound(f"no sync record with id {record}")
        return found
    if record not in session:
        session.add(record)
    return record


def _flush(session: Session, subject: str) -> None:
    try:
        session.flush()
    except StaleDataError:
        raise TransitionConflict(
            f"{subject} was changed by another worker since it was read; roll back and reload it"
        ) from None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "...[truncated]"


def _check(rec: SyncRecord, new: str, *, force: bool = False, in_doubt: bool = False) -> str:
    # Validate before touching any column, so a refused transition leaves the row unchanged.
    check_transition(rec.state, new, force=force, in_doubt=in_doubt, subject=rec.subject)
    return rec.state


def _move(
    session: Session,
    rec: SyncRecord,
    old: str,
    new: str,
    now: datetime,
    *,
    values: dict[str, Any] | None = None,
    detail: str | None = None,
    kind: str = AuditKind.TRANSITION.value,
    message: str | None = None,
) -> SyncRecord:
    """Write ``values`` and the new state as one versioned UPDATE (a plain statement, no unit of
    work), then the audit line; the record object takes the written values as committed."""
    changes = {**(values or {}), "state": new, "updated_at": now}
    if new != POSTING and rec.recreate_after is not None:
        changes["recreate_after"] = None  # held in doubt only while posting
    _write(session, rec, changes)
    text = message if message is not None else f"{old} -> {new}" + (f": {detail}" if detail else "")
    _audit(session, now, rec.connection, kind, rec.subject, message=text)
    return rec


def _move_by_id(
    session: Session,
    record: RecordRef,
    old: str,
    new: str,
    now: datetime,
    *,
    values: Mapping[str, Any],
    detail: str | None = None,
) -> SyncRecord | None:
    """``old -> new`` for a row given by id, without reading it first: one UPDATE guarded by the
    state (taking the row's lock, as the read ``FOR UPDATE`` did) that returns the row, then the
    audit line. None when ``record`` is not an id or the row is not in ``old`` (gone, or in
    another state): the caller then reads it and refuses or moves it as before."""
    if not isinstance(record, int):
        return None
    changes = {**values, "state": new, "updated_at": now}
    if new != POSTING:
        changes["recreate_after"] = None  # held in doubt only while posting
    statement = (
        sa.update(SyncRecord)
        .where(col(SyncRecord.id) == record, col(SyncRecord.state) == old)
        .values(**changes, version=col(SyncRecord.version) + 1)
        .returning(SyncRecord)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    rec = session.scalars(statement).first()
    if rec is None:
        return None
    text = f"{old} -> {new}" + (f": {detail}" if detail else "")
    _audit(session, now, rec.connection, AuditKind.TRANSITION.value, rec.subject, message=text)
    return rec


def _write(session: Session, rec: SyncRecord, changes: Mapping[str, Any]) -> None:
    # The optimistic lock by hand: the UPDATE matches only the version this process read.
    version = rec.version
    result = session.execute(
        sa.update(SYNC_RECORDS)
        .where(SYNC_RECORDS.c.id == rec.id, SYNC_RECORDS.c.version == version)
        .values(**changes, version=version + 1)
    )
    if cast(Any, result).rowcount != 1:
        raise TransitionConflict(
            f"{rec.subject} was changed by another worker since it was read; roll back and reload it"
        )
    for name, value in changes.items():
        set_committed_value(rec, name, value)
    set_committed_value(rec, "version", version + 1)


def _audit(session: Session, at: datetime, connection: str, kind: str, subject: str, *, message: str) -> None:
    # One plain INSERT in the caller's transaction (no ORM object, no unit of work).
    session.execute(
        sa.insert(AUDIT_EVENTS).values(
            at=at, connection=connection, kind=kind, subject=subject, message=message
        )
    )


def audit_note(session: Session, at: datetime, connection: str, subject: str, message: str) -> None:
    """A note on ``subject``'s timeline, written in the caller's transaction."""
    _audit(session, at, connection, AuditKind.NOTE.value, subject, message=message)


def settle_change(
    session: Session,
    record_id: int,
    seen: datetime,
    *,
    note: str | None,
    posted_payload: Mapping[str, Any] | None = None,
    now: datetime,
) -> bool:
    """The change of a posted row seen at ``seen`` is dealt with: ``changed_at`` cleared,
    ``change_note`` set to what a person must do (None: nothing), and the ERP payload replaced when
    the change was carried. False, and nothing written, when a newer change arrived meanwhile
    (``changed_at`` is no longer ``seen``): it is looked at again."""
    values: dict[str, Any] = {"changed_at": None, "change_note": note, "updated_at": now}
    if posted_payload is not None:
        values["posted_payload"] = dict(posted_payload)
    result = session.execute(
        sa.update(SYNC_RECORDS)
        .where(SYNC_RECORDS.c.id == record_id, SYNC_RECORDS.c.changed_at == seen)
        .values(**values, version=SYNC_RECORDS.c.version + 1)
    )
    return bool(cast(Any, result).rowcount == 1)


def reschedule_pending(
    session: Session,
    connection: str,
    subjects: Mapping[int, str],
    *,
    retry_at: datetime,
    now: datetime | None = None,
) -> list[int]:
    """:func:`reschedule` for many ``pending`` rows of ``connection`` at once (``{id: subject}``),
    without reading them: one UPDATE of the rows still pending (a row another worker has moved
    on since it was listed is left alone) and their audit lines. Returns the ids deferred."""
    if not subjects:
        return []
    now = now or utcnow()
    result = session.execute(
        sa.update(SYNC_RECORDS)
        .where(
            SYNC_RECORDS.c.connection == connection,
            SYNC_RECORDS.c.id.in_(list(subjects)),
            SYNC_RECORDS.c.state == PENDING,
        )
        .values(next_attempt_at=retry_at, updated_at=now, version=SYNC_RECORDS.c.version + 1)
        .returning(SYNC_RECORDS.c.id)
    )
    done = sorted(int(row[0]) for row in result)
    message = f"{PENDING}: next attempt at {retry_at.isoformat()}"
    if done:
        session.execute(
            sa.insert(AUDIT_EVENTS),
            [
                {
                    "at": now,
                    "connection": connection,
                    "kind": AuditKind.NOTE.value,
                    "subject": subjects[i],
                    "message": message,
                }
                for i in done
            ],
        )
    return done


def upsert_pulled(
    session: Session,
    *,
    connection: str,
    object_type: str,
    zuora_id: str,
    zuora_number: str | None,
    zuora_updated: datetime | None,
    payload: Mapping[str, Any],
    account_id: str | None,
    source: str,
    period_name: str | None = None,
    close_run_id: int | None = None,
    now: datetime | None = None,
    digest: str | None = None,
) -> tuple[SyncRecord, bool]:
    """Put a fetched Zuora record into the ledger; returns ``(row, is_new)``.

    A new record becomes a ``pending`` row. For a known record the state never changes - a
    re-pull of a posted or marked record (marking bumps Zuora's updatedDate) must not re-post it.
    The stored payload, ``zuora_updated``, number and account are refreshed only when the fetch
    is newer (``zuora_updated`` later, or neither has one, or the same with another content
    ``digest``: :func:`_is_newer`); an older fetch, or an equal one with the same content, is a
    duplicate. A posted row whose content changes gets ``changed_at`` (:func:`_content_change`).
    ``period_name``/``close_run_id`` are filled in only where unset. Concurrent inserts of one key
    are safe (INSERT ... ON CONFLICT DO NOTHING).
    """
    if object_type not in {t.value for t in ObjectType}:
        raise ValueError(f"unknown object type {object_type!r}; one of: {', '.join(ObjectType)}")
    if source not in {s.value for s in RecordSource}:
        raise ValueError(f"unknown record source {source!r}; one of: {', '.join(RecordSource)}")
    now = now or utcnow()
    key = (
        (SyncRecord.connection == connection)
        & (SyncRecord.object_type == object_type)
        & (SyncRecord.zuora_id == zuora_id)
    )
    existing = session.exec(select(SyncRecord).where(key)).first()
    if existing is None:
        values = {
            "connection": connection,
            "object_type": object_type,
            "zuora_id": zuora_id,
            "zuora_number": zuora_number,
            "account_id": account_id,
            "zuora_updated": zuora_updated,
            "state": PENDING,
            "attempts": 0,
            "erp_released": False,
            "next_attempt_at": now + PENDING_GRACE,
            "source": source,
            "period_name": period_name,
            "close_run_id": close_run_id,
            "content_digest": digest,
            "payload": dict(payload),
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        inserted = insert_ignoring_conflict(
            session, metadata.tables["sync_record"], values, ["connection", "object_type", "zuora_id"]
        )
        row = session.exec(select(SyncRecord).where(key)).one()
        if inserted:
            _audit(
                session,
                now,
                connection,
                AuditKind.TRANSITION.value,
                row.subject,
                message=f"new -> {PENDING} ({source})",
            )
            return row, True
        existing = row  # another worker inserted it between our read and our insert
    newer = _is_newer(zuora_updated, digest, existing)
    changed = False
    if newer:
        content = _content_change(session, connection, existing.subject, existing, digest=digest, now=now)
        for name, value in content.items():
            setattr(existing, name, value)
        existing.payload = dict(payload)
        existing.zuora_updated = zuora_updated
        existing.zuora_number = zuora_number or existing.zuora_number
        existing.account_id = account_id or existing.account_id
        changed = True
    if period_name and existing.period_name is None:
        existing.period_name = period_name
        changed = True
    if close_run_id is not None and existing.close_run_id is None:
        existing.close_run_id = close_run_id
        changed = True
    if changed:
        existing.updated_at = now
        _flush(session, existing.subject)
    return existing, False


def _is_newer(zuora_updated: datetime | None, digest: str | None, existing: Any) -> bool:
    """Whether a fetch replaces what the ledger holds: a later ``updatedDate`` (or neither has
    one), or the same ``updatedDate`` with other content. Zuora's ``updatedDate`` has whole
    seconds, so a change made in the second the record was last written (e.g. just after it was
    marked transferred) carries the same stamp; its digest tells it apart from a duplicate."""
    if zuora_updated is None:
        return existing.zuora_updated is None
    if existing.zuora_updated is None or zuora_updated > existing.zuora_updated:
        return True
    return bool(
        zuora_updated == existing.zuora_updated
        and digest is not None
        and existing.content_digest is not None
        and digest != existing.content_digest
    )


def _content_change(
    session: Session, connection: str, subject: str, existing: Any, *, digest: str | None, now: datetime
) -> dict[str, Any]:
    """The columns a newer fetch with content digest ``digest`` sets on a known row: the digest,
    and ``changed_at`` (with an audit line) when the row is posted, or being posted from what it
    held before, and its content is not what it was. A row posted before digests were kept only
    takes the digest."""
    if digest is None:
        return {}
    values: dict[str, Any] = {"content_digest": digest}
    if existing.state in (POSTING, POSTED, MARKED) and existing.content_digest not in (None, digest):
        values["changed_at"] = now
        _audit(
            session, now, connection, AuditKind.NOTE.value, subject,
            message="changed in Zuora after it was posted: what changed is carried to the ERP next",
        )  # fmt: skip
    return values


@dataclass(frozen=True)
class Pulled:
    """One fetched Zuora record for :func:`upsert_pulled_page` (the fields :func:`upsert_pulled` takes)."""

    zuora_id: str
    zuora_number: str | None
    zuora_updated: datetime | None
    payload: Mapping[str, Any]
    account_id: str | None
    digest: str | None = None  # of the accounting content (shared.item_level.streams.content_digest)


PAGE_CHUNK = 500  # rows per multi-row INSERT (17 parameters a row: well within both databases' limits)


def upsert_pulled_page(
    session: Session,
    *,
    connection: str,
    object_type: str,
    rows: Sequence[Pulled],
    source: str,
    now: datetime | None = None,
) -> list[tuple[int, bool]]:
    """:func:`upsert_pulled` for a page of one object type, set-based: one SELECT of the keys
    the ledger has, one multi-row ``INSERT ... ON CONFLICT DO NOTHING`` of the others and one
    multi-row INSERT of their audit lines (per 500 rows), then the usual refresh of each known row
    the page brings newer (one versioned UPDATE each). Returns ``(ledger id, is_new)`` per row, in
    order. A page that names one record twice is upserted row by row (the later one wins, as it
    would have)."""
    if object_type not in {t.value for t in ObjectType}:
        raise ValueError(f"unknown object type {object_type!r}; one of: {', '.join(ObjectType)}")
    if source not in {s.value for s in RecordSource}:
        raise ValueError(f"unknown record source {source!r}; one of: {', '.join(RecordSource)}")
    now = now or utcnow()
    if len({r.zuora_id for r in rows}) != len(rows):
        done = []
        for r in rows:
            record, is_new = upsert_pulled(
                session, connection=connection, object_type=object_type, zuora_id=r.zuora_id,
                zuora_number=r.zuora_number, zuora_updated=r.zuora_updated, payload=r.payload,
                account_id=r.account_id, source=source, now=now, digest=r.digest,
            )  # fmt: skip
            assert record.id is not None
            done.append((record.id, is_new))
        return done
    known = _known_rows(session, connection, object_type, [r.zuora_id for r in rows])
    fresh = [r for r in rows if r.zuora_id not in known]
    inserted: dict[str, int] = {}
    for start in range(0, len(fresh), PAGE_CHUNK):
        chunk = fresh[start : start + PAGE_CHUNK]
        values = [
            {
                "connection": connection,
                "object_type": object_type,
                "zuora_id": r.zuora_id,
                "zuora_number": r.zuora_number,
                "account_id": r.account_id,
                "zuora_updated": r.zuora_updated,
                "state": PENDING,
                "attempts": 0,
                "erp_released": False,
                "next_attempt_at": now + PENDING_GRACE,
                "source": source,
                "period_name": None,
                "close_run_id": None,
                "content_digest": r.digest,
                "payload": dict(r.payload),
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            for r in chunk
        ]
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(SYNC_RECORDS)
            .values(values)
            .on_conflict_do_nothing(index_elements=["connection", "object_type", "zuora_id"])
            .returning(SYNC_RECORDS.c.id, SYNC_RECORDS.c.zuora_id)
        )
        inserted.update({str(zuora_id): int(i) for i, zuora_id in session.execute(statement)})
    if inserted:
        message = f"new -> {PENDING} ({source})"
        session.execute(
            sa.insert(AUDIT_EVENTS),
            [
                {"at": now, "connection": connection, "kind": AuditKind.TRANSITION.value,
                 "subject": f"{object_type}:{zuora_id}", "message": message}
                for zuora_id in (r.zuora_id for r in fresh) if zuora_id in inserted
            ],
        )  # fmt: skip
    raced = [r.zuora_id for r in fresh if r.zuora_id not in inserted]
    if raced:  # another worker inserted these between our read and our insert
        known.update(_known_rows(session, connection, object_type, raced))
    done = []
    for r in rows:
        if r.zuora_id in inserted:
            done.append((inserted[r.zuora_id], True))
            continue
        existing = known[r.zuora_id]
        if _is_newer(r.zuora_updated, r.digest, existing):
            changes = {
                "payload": dict(r.payload),
                "zuora_updated": r.zuora_updated,
                "zuora_number": r.zuora_number or existing.zuora_number,
                "account_id": r.account_id or existing.account_id,
                "updated_at": now,
            }
            changes.update(
                _content_change(
                    session, connection, f"{object_type}:{r.zuora_id}", existing, digest=r.digest, now=now
                )
            )
            result = session.execute(
                sa.update(SYNC_RECORDS)
                .where(SYNC_RECORDS.c.id == existing.id, SYNC_RECORDS.c.version == existing.version)
                .values(**changes, version=existing.version + 1)
            )
            if cast(Any, result).rowcount != 1:
                raise TransitionConflict(
                    f"{object_type}:{r.zuora_id} was changed by another worker since it was read; "
                    "roll back and reload it"
                )
        done.append((existing.id, False))
    return done


def _known_rows(
    session: Session, connection: str, object_type: str, zuora_ids: Sequence[str]
) -> dict[str, Any]:
    """``{zuora_id: (id, zuora_id, zuora_updated, zuora_number, account_id, version, state,
    content_digest)}`` of the ledger's rows among ``zuora_ids``."""
    c = SYNC_RECORDS.c
    found: dict[str, Any] = {}
    for start in range(0, len(zuora_ids), PAGE_CHUNK):
        chunk = list(zuora_ids[start : start + PAGE_CHUNK])
        query = sa.select(
            c.id,
            c.zuora_id,
            c.zuora_updated,
            c.zuora_number,
            c.account_id,
            c.version,
            c.state,
            c.content_digest,
        ).where(c.connection == connection, c.object_type == object_type, c.zuora_id.in_(chunk))
        found.update({str(row.zuora_id): row for row in session.execute(query)})
    return found


def begin_posting(
    session: Session,
    record: RecordRef,
    *,
    erp_payload: Mapping[str, Any] | None = None,
    force: bool = False,
    timeout: timedelta = POSTING_TIMEOUT,
    now: datetime | None = None,
) -> SyncRecord:
    """pending -> posting (or posted|marked -> posting with ``force``). Commit this before the
    ERP create. A forced re-post forgets the previous ERP reference (kept in the audit message)."""
    if not force:
        now = now or utcnow()
        values: dict[str, Any] = {"next_attempt_at": now + timeout}
        if erp_payload is not None:
            values["posted_payload"] = dict(erp_payload)
        moved = _move_by_id(session, record, PENDING, POSTING, now, values=values)
        if moved is not None:
            return moved
    rec = _load(session, record)
    old = _check(rec, POSTING, force=force)
    now = now or utcnow()
    detail = None
    values = {"next_attempt_at": now + timeout}
    if old in (POSTED, MARKED):
        detail = f"forced re-post; previous erp_ref {rec.erp_ref}"
        values.update(erp_ref=None, erp_released=False)
    if erp_payload is not None:
        values["posted_payload"] = dict(erp_payload)
    return _move(session, rec, old, POSTING, now, values=values, detail=detail)


def complete_posting(
    session: Session,
    record: RecordRef,
    *,
    erp_ref: str,
    erp_payload: Mapping[str, Any] | None = None,
    released: bool = False,
    now: datetime | None = None,
) -> SyncRecord:
    """posting -> posted: the ERP has the document ``erp_ref`` (required); next, mark it in Zuora."""
    now = now or utcnow()
    values: dict[str, Any] = {
        "erp_ref": erp_ref,
        "erp_released": released,
        "last_error": None,
        "posted_at": now,
        "next_attempt_at": now + PENDING_GRACE,
    }
    if erp_payload is not None:
        values["posted_payload"] = dict(erp_payload)
    if erp_ref and erp_ref.strip():
        moved = _move_by_id(session, record, POSTING, POSTED, now, values=values, detail=f"erp_ref {erp_ref}")
        if moved is not None:
            return moved
    rec = _load(session, record)
    old = _check(rec, POSTED)
    if not erp_ref or not erp_ref.strip():
        raise IllegalTransition(f"posting -> posted for {rec.subject} needs the ERP reference")
    return _move(session, rec, old, POSTED, now, values=values, detail=f"erp_ref {erp_ref}")


def mark_transferred(session: Session, record: RecordRef, *, now: datetime | None = None) -> SyncRecord:
    """posted -> marked: Zuora has ``transferredToAccounting=Yes``; the record is done."""
    now = now or utcnow()
    values = {"marked_at": now, "next_attempt_at": None, "last_error": None}
    moved = _move_by_id(session, record, POSTED, MARKED, now, values=values)
    if moved is not None:
        return moved
    rec = _load(session, record)
    old = _check(rec, MARKED)
    return _move(session, rec, old, MARKED, now, values=values)


def mark_transferred_many(
    session: Session, connection: str, subjects: Mapping[int, str], *, now: datetime | None = None
) -> None:
    """:func:`mark_transferred` for many posted rows of ``connection`` (``{id: subject}``) at once:
    one UPDATE of the rows still posted and one multi-row INSERT of their audit lines. If a row is
    no longer posted (another worker moved it), :class:`TransitionConflict` is raised and nothing
    may be committed: roll back and mark the rows one by one."""
    if not subjects:
        return
    now = now or utcnow()
    c = SYNC_RECORDS.c
    result = session.execute(
        sa.update(SYNC_RECORDS)
        .where(c.connection == connection, c.id.in_(list(subjects)), c.state == POSTED)
        .values(
            state=MARKED, marked_at=now, next_attempt_at=None, last_error=None, recreate_after=None,
            updated_at=now, version=c.version + 1,
        )
        .returning(c.id)
    )  # fmt: skip
    done = {int(row[0]) for row in result}
    if len(done) != len(subjects):
        missing = sorted(set(subjects) - done)
        raise TransitionConflict(
            f"{len(missing)} of {len(subjects)} rows were not posted any more, e.g. {subjects[missing[0]]}; "
            "roll back and mark them one by one"
        )
    session.execute(
        sa.insert(AUDIT_EVENTS),
        [
            {"at": now, "connection": connection, "kind": AuditKind.TRANSITION.value, "subject": subject,
             "message": f"{POSTED} -> {MARKED}"}
            for _id, subject in sorted(subjects.items())
        ],
    )  # fmt: skip


def fail(
    session: Session,
    record: RecordRef,
    error: str,
    *,
    retry_at: datetime | None = None,
    now: datetime | None = None,
) -> SyncRecord:
    """pending|posting -> failed (retryable): ``attempts`` + 1, ``last_error``, and
    ``next_attempt_at`` = ``retry_at`` or exponential backoff with full jitter (1 min doubling,
    capped at 6 h). Only fail a posting row when the ERP certainly did not create the document
    (a rejection); when unsure, leave it in posting - the in-doubt path will look it up."""
    rec = _load(session, record)
    old = _check(rec, FAILED)
    now = now or utcnow()
    attempts = rec.attempts + 1
    if retry_at is None:
        delay = exponential(
            attempts,
            base=RETRY_BASE_SECONDS,
            cap=RETRY_CAP_SECONDS,
            floor=RETRY_BASE_SECONDS / 2,
            jitter=full_jitter,
        )
        retry_at = now + timedelta(seconds=delay)
    values = {"attempts": attempts, "last_error": _clip(error), "next_attempt_at": retry_at}
    return _move(session, rec, old, FAILED, now, values=values, detail=f"attempt {attempts}: {_clip(error)}")


def park(session: Session, record: RecordRef, reason: str, *, now: datetime | None = None) -> SyncRecord:
    """pending|posting|failed -> parked: needs a person (unmapped account, missing customer,
    unbalanced entry...). ``reason`` says what to fix; the sweep leaves parked rows alone."""
    rec = _load(session, record)
    old = _check(rec, PARKED)
    now = now or utcnow()
    values = {"last_error": _clip(reason), "next_attempt_at": None}
    return _move(session, rec, old, PARKED, now, values=values, detail=_clip(reason))


def retry(session: Session, record: RecordRef, *, now: datetime | None = None) -> SyncRecord:
    """failed -> pending, keeping ``attempts`` (so the backoff keeps growing): the sweep's retry."""
    rec = _load(session, record)
    if rec.state != FAILED:
        raise IllegalTransition(
            f"cannot retry {rec.subject} in state {rec.state}: only failed records are retried"
        )
    old = _check(rec, PENDING)
    now = now or utcnow()
    values = {"next_attempt_at": now + PENDING_GRACE}
    return _move(
        session, rec, old, PENDING, now, values=values, detail=f"retry after {rec.attempts} attempt(s)"
    )


def replay(
    session: Session, record: RecordRef, *, reason: str | None = None, now: datetime | None = None
) -> SyncRecord:
    """failed|parked -> pending after a person fixed the cause: ``attempts`` and ``last_error``
    reset. (A posted or marked record is re-posted with ``begin_posting(force=True)``.)"""
    rec = _load(session, record)
    now = now or utcnow()
    if rec.state not in (FAILED, PARKED):
        raise IllegalTransition(
            f"cannot replay {rec.subject} in state {rec.state}: only failed or parked records are replayed"
            + (" (a posted record needs `replay --force`)" if rec.state in (POSTED, MARKED) else "")
        )
    old = _check(rec, PENDING)
    values = {"attempts": 0, "last_error": None, "next_attempt_at": now + PENDING_GRACE}
    return _move(
        session, rec, old, PENDING, now, values=values, detail="replay" + (f": {reason}" if reason else "")
    )


def resume_in_doubt(
    session: Session,
    record: RecordRef,
    *,
    found_erp_ref: str | None,
    released: bool = False,
    now: datetime | None = None,
) -> SyncRecord:
    """Resolve a row found in ``posting`` without an ERP reference (the worker died mid-post)
    after looking the document up in the ERP by natural key: found -> posted with that
    reference; not found -> pending, to be posted again."""
    rec = _load(session, record)
    if rec.state != POSTING or rec.erp_ref:
        raise IllegalTransition(
            f"{rec.subject} is not in doubt (state {rec.state}, erp_ref {rec.erp_ref!r}); "
            "only a posting row without an ERP reference is"
        )
    now = now or utcnow()
    if found_erp_ref:
        old = _check(rec, POSTED)
        values = {
            "erp_ref": found_erp_ref,
            "erp_released": released,
            "last_error": None,
            "posted_at": now,
            "next_attempt_at": now + PENDING_GRACE,
        }
        detail = f"in doubt; found in the ERP as {found_erp_ref}"
        return _move(session, rec, old, POSTED, now, values=values, detail=detail)
    old = _check(rec, PENDING, in_doubt=True)
    values = {"next_attempt_at": now + PENDING_GRACE}
    return _move(session, rec, old, PENDING, now, values=values, detail="in doubt; not found in the ERP")


def hold_in_doubt(
    session: Session,
    record: RecordRef,
    *,
    look_at: datetime,
    reason: str,
    recreate_after: datetime | None = None,
    now: datetime | None = None,
) -> SyncRecord:
    """A posting row without an ERP reference stays posting, in doubt, to be looked up at
    ``look_at`` (its ``next_attempt_at``, instead of the end of the posting lease): the ERP's
    answer to its create was lost, or a lookup found nothing yet or failed. The first hold sets
    ``recreate_after`` (``now`` by default): from then on a lookup that finds nothing may create
    the document again. Later holds keep it."""
    rec = _load(session, record)
    if rec.state != POSTING or rec.erp_ref:
        raise IllegalTransition(
            f"{rec.subject} is not in doubt (state {rec.state}, erp_ref {rec.erp_ref!r}); "
            "only a posting row without an ERP reference is"
        )
    now = now or utcnow()
    values: dict[str, Any] = {"next_attempt_at": look_at, "last_error": _clip(f"in doubt: {reason}")}
    if rec.recreate_after is None:
        values["recreate_after"] = recreate_after or now
    detail = f"in doubt: {_clip(reason)}; look it up at {look_at.isoformat()}"
    return _move(session, rec, POSTING, POSTING, now, values=values, detail=detail)


def reschedule(
    session: Session,
    record: RecordRef,
    *,
    retry_at: datetime,
    error: str | None = None,
    now: datetime | None = None,
) -> SyncRecord:
    """Defer a pending, posted or failed row to ``retry_at`` without changing its state (a rate
    limit before posting, a transient failure while marking). Noted in the audit trail."""
    rec = _load(session, record)
    if rec.state not in (PENDING, POSTED, FAILED):
        raise IllegalTransition(f"cannot reschedule {rec.subject} in state {rec.state}")
    now = now or utcnow()
    values: dict[str, Any] = {"next_attempt_at": retry_at}
    if error is not None:
        values["last_error"] = _clip(error)
    message = f"{rec.state}: next attempt at {retry_at.isoformat()}" + (f": {_clip(error)}" if error else "")
    return _move(
        session, rec, rec.state, rec.state, now, values=values, kind=AuditKind.NOTE.value, message=message
    )


def record_release(
    session: Session, record: RecordRef, *, error: str | None = None, now: datetime | None = None
) -> SyncRecord:
    """A posted or marked row's ERP document, whose release had failed after its create, was
    released (``erp_released`` becomes true) or, with ``error``, failed to release again; the
    state stays. Either is noted in the audit trail, and ``updated_at`` says when it was tried."""
    rec = _load(session, record)
    if rec.state not in (POSTED, MARKED) or not rec.erp_ref:
        raise IllegalTransition(f"cannot record a release of {rec.subject} in state {rec.state}")
    now = now or utcnow()
    if error is None:
        values: dict[str, Any] = {"erp_released": True}
        message = f"{rec.state}: {rec.erp_ref} released in the ERP"
    else:
        values = {}
        message = f"{rec.state}: {rec.erp_ref} still not released in the ERP: {_clip(error)}"
    return _move(
        session, rec, rec.state, rec.state, now, values=values, kind=AuditKind.NOTE.value, message=message
    )
