"""What a replay did to each record (:class:`ReplayResult`), and the ledger changes the re-drive
and the journal entries' replay share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from shared.erp.base import ErpRef
from shared.item_level.context import ItemContext
from shared.item_level.streams import Stream
from shared.ledger import states
from shared.ledger.errors import IllegalTransition, TransitionConflict
from shared.ledger.models import SyncRecord
from shared.replay.records import label

log = logging.getLogger("ledgerbridge.replay")

# What a replay did to one record (ReplayResult.action).
NOTHING = "nothing"  # already posted; no --force
POSTED = "posted"  # posted (or marked: accounts) by this replay
FOUND = "found"  # --force: the ERP has it; its reference is recorded, nothing created
WAITING_ACTION = "waiting"  # back in the posting path, waiting for a dependency
PARKED = "parked"  # parked again (the cause is not fixed)
FAILED = "failed"  # the ERP refused it or was unavailable; retried with backoff
BUSY_ACTION = "busy"  # another worker holds the row
IN_DOUBT_ACTION = "in_doubt"  # the ERP may have it; the in-doubt lookup settles it
TO_CLOSE = "to_close"  # a journal entry back in pending: its close posts it
NOT_IN_ZUORA = "not_in_zuora"
NOT_SYNCED = "not_synced"  # Zuora's status is not the one the sync posts
DUPLICATES = "duplicates"  # the ERP holds more than one candidate: a person must choose
ERROR = "error"

OK_ACTIONS = frozenset({NOTHING, POSTED, FOUND, WAITING_ACTION, TO_CLOSE})


@dataclass(frozen=True)
class ReplayResult:
    """What the replay did to one record. ``ok`` is False when the record needs a person."""

    record_id: int
    subject: str
    label: str
    before: str
    after: str
    action: str
    detail: str | None = None
    erp_ref: str | None = None

    @property
    def ok(self) -> bool:
        return self.action in OK_ACTIONS

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "subject": self.subject,
            "label": self.label,
            "state_before": self.before,
            "state_after": self.after,
            "action": self.action,
            "detail": self.detail,
            "erp_ref": self.erp_ref,
            "ok": self.ok,
        }


def result_of(
    ctx: ItemContext, rec: SyncRecord, action: str, detail: str | None = None, erp_ref: str | None = None
) -> ReplayResult:
    """``rec``'s result: its state before (as read) and after (as the ledger has it now), and
    its ERP reference (``erp_ref``, else the ledger's)."""
    assert rec.id is not None
    now = ctx.ledger.get_record_by_id(rec.id)
    return ReplayResult(
        record_id=rec.id,
        subject=rec.subject,
        label=label(rec),
        before=rec.state,
        after=now.state if now is not None else rec.state,
        action=action,
        detail=detail,
        erp_ref=erp_ref if erp_ref is not None else (now.erp_ref if now is not None else None),
    )


def change(ctx: ItemContext, step: Callable[..., object]) -> bool:
    """Run one state change in its own transaction; False when the row changed meanwhile."""
    try:
        with ctx.ledger.session() as session:
            step(session)
    except (TransitionConflict, IllegalTransition) as exc:
        log.info("record changed underneath the replay: %s", exc)
        return False
    return True


def note(ctx: ItemContext, rec: SyncRecord, message: str) -> None:
    """Add ``message`` to the record's timeline."""
    ctx.ledger.note(rec.subject, message, connection=ctx.connection)


def record_found(
    ctx: ItemContext, stream: Stream | None, rec: SyncRecord, found: ErpRef, reason: str
) -> ReplayResult:
    """--force and the ERP has the document: record its reference; nothing is created."""
    assert rec.id is not None
    record_id = rec.id
    if found.key == rec.erp_ref:
        note(ctx, rec, f"replay --force ({reason}): the ERP has it as {found.key}; nothing posted")
        return result_of(ctx, rec, FOUND, f"the ERP has it as {found.key}; nothing posted", found.key)
    was_marked = rec.state == states.MARKED
    marks = stream.marks if stream is not None else True

    def record(session: Session) -> None:
        states.begin_posting(session, record_id, force=True, now=ctx.now())
        states.resume_in_doubt(
            session, record_id, found_erp_ref=found.key, released=found.released, now=ctx.now()
        )
        if was_marked or not marks:
            states.mark_transferred(session, record_id, now=ctx.now())

    if not change(ctx, record):
        return result_of(ctx, rec, BUSY_ACTION, "the record changed meanwhile; nothing done")
    note(
        ctx,
        rec,
        f"replay --force ({reason}): found in the ERP as {found.key} (was {rec.erp_ref}); nothing posted",
    )
    if stream is not None and stream.marks and not was_marked:
        ctx.dispatch.mark(ctx.connection, stream.name)
    return result_of(
        ctx, rec, FOUND, f"the ERP has it as {found.key} (the ledger said {rec.erp_ref}); recorded", found.key
    )


def already(rec: SyncRecord) -> str:
    """Why a posted record is left alone without ``--force``."""
    return (
        f"already posted as {rec.erp_ref}; nothing done (use --force to check the ERP and post again "
        "only if it is missing)"
    )
