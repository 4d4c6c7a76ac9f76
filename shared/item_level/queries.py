"""Read-only ledger queries the item-level flows need beyond :class:`~shared.ledger.repo.Ledger`.

Nothing here writes: state changes go through :mod:`shared.ledger.states` only. Each function
opens its own short session and returns detached rows or plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlmodel import col, select

from shared.ledger.models import AuditEvent, AuditKind, CalloutNotification, SyncRecord
from shared.ledger.repo import Ledger
from shared.ledger.states import MARKED, PENDING, POSTED, POSTING

# How a hold for a lost ERP answer starts its reason (posting.py writes it, settle_times reads it).
LOST_ANSWER = "the ERP's answer was lost"

# SQLite limits bound parameters (999 on old builds): look ids up in chunks.
_CHUNK = 500
T = TypeVar("T")


def _chunks(values: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(frozen=True, slots=True)
class RowKey:
    """What posting, marking and the sweep need of a row to order and route it, without its
    payload: a batch holds these and loads a whole record only when its turn comes."""

    id: int
    object_type: str
    zuora_id: str
    zuora_number: str | None
    account_id: str | None
    state: str
    erp_ref: str | None

    @property
    def subject(self) -> str:
        return f"{self.object_type}:{self.zuora_id}"


_KEY_COLUMNS = (
    col(SyncRecord.id),
    col(SyncRecord.object_type),
    col(SyncRecord.zuora_id),
    col(SyncRecord.zuora_number),
    col(SyncRecord.account_id),
    col(SyncRecord.state),
    col(SyncRecord.erp_ref),
)


def due_rows(
    ledger: Ledger,
    connection: str,
    states: Sequence[str],
    object_types: Iterable[str],
    *,
    now: datetime,
    limit: int,
) -> list[RowKey]:
    """Rows of these object types in ``states`` whose ``next_attempt_at`` has passed, most overdue
    first, at most ``limit`` (the sweep's work list, read without payloads)."""
    with ledger.reading() as session:
        rows = session.execute(
            sa.select(*_KEY_COLUMNS)
            .where(
                col(SyncRecord.connection) == connection,
                col(SyncRecord.state).in_(list(states)),
                col(SyncRecord.next_attempt_at) <= now,
                col(SyncRecord.object_type).in_(sorted(set(object_types))),
            )
            .order_by(col(SyncRecord.next_attempt_at), col(SyncRecord.id))
            .limit(limit)
        )
        return [RowKey(*row) for row in rows]


def unreleased_rows(
    ledger: Ledger, connection: str, object_types: Iterable[str], *, updated_before: datetime, limit: int
) -> list[RowKey]:
    """Posted or marked rows of these object types whose ERP document is not released (its
    release failed after the create), unchanged since ``updated_before``, longest first."""
    with ledger.reading() as session:
        rows = session.execute(
            sa.select(*_KEY_COLUMNS)
            .where(
                col(SyncRecord.connection) == connection,
                col(SyncRecord.state).in_([POSTED, MARKED]),
                col(SyncRecord.erp_released).is_(False),
                col(SyncRecord.erp_ref).is_not(None),
                col(SyncRecord.updated_at) < updated_before,
                col(SyncRecord.object_type).in_(sorted(set(object_types))),
            )
            .order_by(col(SyncRecord.updated_at), col(SyncRecord.id))
            .limit(limit)
        )
        return [RowKey(*row) for row in rows]


def changed_rows(ledger: Ledger, connection: str, *, limit: int) -> list[int]:
    """Posted rows changed in Zuora since and not looked at yet, oldest change first (the sweep
    sends them to be posted again: :mod:`shared.item_level.changes`)."""
    with ledger.reading() as session:
        ids = session.execute(
            sa.select(col(SyncRecord.id))
            .where(
                col(SyncRecord.connection) == connection,
                col(SyncRecord.changed_at).is_not(None),
                col(SyncRecord.state).in_([POSTED, MARKED]),
            )
            .order_by(col(SyncRecord.changed_at))
            .limit(limit)
        ).scalars()
        return [int(i) for i in ids if i is not None]


def row_keys_by_ids(ledger: Ledger, record_ids: Sequence[int]) -> list[RowKey]:
    """:class:`RowKey` of the rows with these ledger ids (any order; missing ids are left out)."""
    found: list[RowKey] = []
    with ledger.reading() as session:
        for chunk in _chunks(list(dict.fromkeys(record_ids))):
            rows = session.execute(sa.select(*_KEY_COLUMNS).where(col(SyncRecord.id).in_(list(chunk))))
            found.extend(RowKey(*row) for row in rows)
    return found


def row_keys_by_zuora_ids(
    ledger: Ledger, connection: str, object_type: str, zuora_ids: Sequence[str]
) -> dict[str, RowKey]:
    """``{zuora_id: RowKey}`` for the known ones among ``zuora_ids``."""
    found: dict[str, RowKey] = {}
    with ledger.reading() as session:
        for chunk in _chunks(list(dict.fromkeys(zuora_ids))):
            rows = session.execute(
                sa.select(*_KEY_COLUMNS).where(
                    col(SyncRecord.connection) == connection,
                    col(SyncRecord.object_type) == object_type,
                    col(SyncRecord.zuora_id).in_(list(chunk)),
                )
            )
            found.update((key.zuora_id, key) for key in (RowKey(*row) for row in rows))
    return found


def records_by_zuora_ids(
    ledger: Ledger, connection: str, object_type: str, zuora_ids: Sequence[str]
) -> dict[str, SyncRecord]:
    """``{zuora_id: row}`` for the known ones among ``zuora_ids``."""
    result: dict[str, SyncRecord] = {}
    unique = list(dict.fromkeys(zuora_ids))
    if not unique:
        return result
    with ledger.reading() as session:
        for chunk in _chunks(unique):
            rows = session.exec(
                select(SyncRecord).where(
                    SyncRecord.connection == connection,
                    SyncRecord.object_type == object_type,
                    col(SyncRecord.zuora_id).in_(list(chunk)),
                )
            ).all()
            result.update({r.zuora_id: r for r in rows})
    return result


def known_zuora_ids(ledger: Ledger, connection: str, object_type: str, zuora_ids: Sequence[str]) -> set[str]:
    """The subset of ``zuora_ids`` that has a ledger row (ids only, no payloads)."""
    known: set[str] = set()
    unique = list(dict.fromkeys(zuora_ids))
    with ledger.reading() as session:
        for chunk in _chunks(unique):
            known.update(
                session.exec(
                    select(SyncRecord.zuora_id).where(
                        SyncRecord.connection == connection,
                        SyncRecord.object_type == object_type,
                        col(SyncRecord.zuora_id).in_(list(chunk)),
                    )
                ).all()
            )
    return known


def markable(ledger: Ledger, connection: str, object_type: str, due: datetime, limit: int) -> list[RowKey]:
    """Posted rows of ``object_type`` to mark now: never tried (no error) or due again after a
    failed mark (``next_attempt_at <= due``), oldest first."""
    with ledger.reading() as session:
        rows = session.execute(
            sa.select(*_KEY_COLUMNS)
            .where(
                col(SyncRecord.connection) == connection,
                col(SyncRecord.object_type) == object_type,
                col(SyncRecord.state) == POSTED,
                sa.or_(
                    col(SyncRecord.last_error).is_(None),
                    col(SyncRecord.next_attempt_at).is_(None),
                    col(SyncRecord.next_attempt_at) <= due,
                ),
            )
            .order_by(col(SyncRecord.id))
            .limit(limit)
        )
        return [RowKey(*row) for row in rows]


def still_posting(ledger: Ledger, connection: str, object_type: str) -> bool:
    """Whether rows of ``object_type`` are being posted or wait for their first try (sent to the
    workers; not those waiting for something else, such as a document they apply to): each one
    posted asks for a mark run again soon."""
    with ledger.reading() as session:
        found = session.execute(
            sa.select(col(SyncRecord.id))
            .where(
                col(SyncRecord.connection) == connection,
                col(SyncRecord.object_type) == object_type,
                sa.or_(
                    col(SyncRecord.state) == POSTING,
                    sa.and_(
                        col(SyncRecord.state) == PENDING,
                        col(SyncRecord.attempts) == 0,
                        col(SyncRecord.last_error).is_(None),
                    ),
                ),
            )
            .limit(1)
        ).first()
    return found is not None


def open_callouts(
    ledger: Ledger, connection: str, states: Sequence[str], received_before: datetime, limit: int
) -> list[CalloutNotification]:
    """Callouts still in ``states`` (received, enqueued) that arrived before ``received_before``:
    their task was never enqueued or was lost with Redis."""
    with ledger.reading() as session:
        return list(
            session.exec(
                select(CalloutNotification)
                .where(
                    CalloutNotification.connection == connection,
                    col(CalloutNotification.state).in_(list(states)),
                    col(CalloutNotification.received_at) < received_before,
                )
                .order_by(col(CalloutNotification.id))
                .limit(limit)
            ).all()
        )


def callout(ledger: Ledger, callout_id: int) -> CalloutNotification | None:
    with ledger.reading() as session:
        return session.get(CalloutNotification, callout_id)


def callouts_by_ids(ledger: Ledger, callout_ids: Sequence[int]) -> dict[int, CalloutNotification]:
    """``{id: row}`` of the callouts with these ids (missing ids are left out)."""
    found: dict[int, CalloutNotification] = {}
    with ledger.reading() as session:
        for chunk in _chunks(list(dict.fromkeys(callout_ids))):
            rows = session.exec(
                select(CalloutNotification).where(col(CalloutNotification.id).in_(list(chunk)))
            )
            found.update({r.id: r for r in rows if r.id is not None})
    return found


def callout_counts(ledger: Ledger, connection: str) -> dict[str, int]:
    """``{state: count}`` of the connection's callouts."""
    with ledger.reading() as session:
        rows = session.exec(
            select(CalloutNotification.state, sa.func.count())
            .where(CalloutNotification.connection == connection)
            .group_by(col(CalloutNotification.state))
        ).all()
        return {state: int(n) for state, n in rows}


def unfinished_count(
    ledger: Ledger, connection: str, object_types: Sequence[str], states: Sequence[str]
) -> int:
    """How many rows of these object types are in these states."""
    return _count(ledger, connection, object_types, col(SyncRecord.state).in_(list(states)))


def in_doubt_count(ledger: Ledger, connection: str, object_types: Sequence[str]) -> int:
    """How many rows of these object types are posting, in doubt: a worker lost the ERP's answer
    and looks them up (``recreate_after`` set)."""
    return _count(
        ledger,
        connection,
        object_types,
        col(SyncRecord.state) == POSTING,
        col(SyncRecord.recreate_after).is_not(None),
    )


def _count(
    ledger: Ledger, connection: str, object_types: Sequence[str], *conditions: sa.ColumnElement[bool]
) -> int:
    with ledger.reading() as session:
        value = session.exec(
            select(sa.func.count())
            .select_from(SyncRecord)
            .where(
                SyncRecord.connection == connection,
                col(SyncRecord.object_type).in_(list(object_types)),
                *conditions,
            )
        ).one()
        return int(value)


def settle_times(ledger: Ledger, connection: str, *, since: datetime | None = None) -> list[timedelta]:
    """For each record whose ERP answer was lost (since ``since``): the time from the loss to the
    record posted with its ERP reference (found by the lookup, or created again), from the audit
    trail. Records not settled yet are left out."""
    lost_at = f"{POSTING} -> {POSTING}: in doubt: {LOST_ANSWER}%"
    query = (
        select(AuditEvent.subject, AuditEvent.at, AuditEvent.message)
        .where(
            AuditEvent.connection == connection,
            AuditEvent.kind == AuditKind.TRANSITION.value,
            sa.or_(
                col(AuditEvent.message).like(lost_at),
                col(AuditEvent.message).like(f"{POSTING} -> {POSTED}%"),
            ),
        )
        .order_by(col(AuditEvent.id))
    )
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    lost: dict[str, datetime] = {}
    times: list[timedelta] = []
    with ledger.reading() as session:
        for subject, at, message in session.exec(query):
            if subject is None or message is None:
                continue
            if message.startswith(f"{POSTING} -> {POSTING}"):
                lost.setdefault(subject, at)
            elif subject in lost:
                times.append(at - lost.pop(subject))
    return times


def mark_failures(ledger: Ledger, connection: str) -> dict[str, int]:
    """``{object_type: n}``: posted rows whose marking in Zuora failed (they carry the error and
    are retried)."""
    with ledger.reading() as session:
        rows = session.exec(
            select(SyncRecord.object_type, sa.func.count())
            .where(
                SyncRecord.connection == connection,
                SyncRecord.state == POSTED,
                col(SyncRecord.last_error).is_not(None),
            )
            .group_by(col(SyncRecord.object_type))
        ).all()
        return {object_type: int(n) for object_type, n in rows}


def earliest_updated(ledger: Ledger, connection: str, object_type: str) -> datetime | None:
    """The oldest Zuora ``updatedDate`` the ledger holds for ``object_type`` (None: no rows)."""
    with ledger.reading() as session:
        value = session.exec(
            select(sa.func.min(SyncRecord.zuora_updated)).where(
                SyncRecord.connection == connection, SyncRecord.object_type == object_type
            )
        ).one()
    if value is None:
        return None
    # SQLite hands the aggregate back without the column type's conversion.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
