"""Maker-checker for manual summary journal entries (connections with approval ``all``).

``ledgerbridge journal-entry create`` checks the entry as always; on a connection whose approval
rule is ``all`` it then records it as a request (:func:`request_entry`) instead of creating it,
and tells the approvers. An approver who did not ask for it decides (:func:`decide_entry`):

* approved - the entry is checked again (its period may have been closed meanwhile) and created
  in Zuora with the Idempotency-Key of its content, so an approval retried after a lost answer
  never creates it twice; the request ends ``created`` with the JE number. A check that now
  fails ends it ``failed`` with every problem. A Zuora error puts it back to
  ``awaiting_approval`` with the error, for the approval to be given again.
* rejected (with a comment) - it ends ``rejected``; nothing is created.

Every step is written to the request's timeline (``journal-request:<id>``) with its actor.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from shared.close.approval import comment_problem
from shared.errors import ApiError
from shared.journal_entry import idempotency_parts
from shared.ledger.errors import TransitionConflict
from shared.ledger.models import JournalEntryRequest, utcnow
from shared.ledger.notices import NewNotice
from shared.ledger.repo import Ledger
from shared.notify import Notice
from shared.outbox import draft

AWAITING = "awaiting_approval"
CREATING = "creating"
CREATED = "created"
REJECTED = "rejected"
FAILED = "failed"

Check = Callable[[Mapping[str, Any]], list[str]]
Create = Callable[[Mapping[str, Any], tuple[str, str]], str]


class RequestRefused(ValueError):
    """A decision that cannot be taken; the message says why."""


def subject(request_id: int | None) -> str:
    return f"journal-request:{request_id}"


def _describe(entry: Mapping[str, Any]) -> str:
    items = entry.get("journalEntryItems") or []
    period = entry.get("accountingPeriodName", "?")
    currency = entry.get("currency", "?")
    return f"a manual journal entry of {len(items)} items in {currency} for {period}"


def request_entry(
    ledger: Ledger, connection: str, entry: Mapping[str, Any], *, user: str
) -> JournalEntryRequest:
    """Record a checked entry as waiting for approval, and its notice for the approvers."""
    if not user.strip():
        raise RequestRefused("say who asks: a user name is needed (--as NAME)")

    def notice(row: JournalEntryRequest) -> NewNotice:
        return draft(
            Notice(
                event="journal_entry.awaiting_approval",
                text=(
                    f"ledgerbridge: {_describe(entry)} on {connection} (request {row.id}, by {user}) waits for "
                    f"approval: `ledgerbridge journal-entry approve {row.id} --as NAME`"
                ),
                severity="warning",
                subject=subject(row.id),
                connection=connection,
                fields={"request": row.id, "requested_by": user},
            ),
            dedupe_key=f"{subject(row.id)}:awaiting",
        )

    row = ledger.add_journal_request(
        connection,
        dict(entry),
        fingerprint=idempotency_parts(entry)[1],
        requested_by=user,
        status=AWAITING,
        notice=notice,
    )
    ledger.note(subject(row.id), f"requested by {user}: {_describe(entry)}", connection, actor=user)
    return row


def decide_entry(
    ledger: Ledger,
    request_id: int,
    *,
    user: str,
    approve: bool,
    comment: str,
    check: Check,
    create: Create,
) -> JournalEntryRequest:
    """``user``'s decision on request ``request_id``: approved, the entry is checked again with
    ``check`` and created with ``create(entry, idempotency_key)``; rejected, it ends there. Raises
    :class:`RequestRefused` for a request that is not waiting, a decision by the person who asked,
    or a rejection without a comment."""
    user, comment = user.strip(), comment.strip()
    row = ledger.get_journal_request(request_id)
    if row.status != AWAITING:
        raise RequestRefused(f"journal entry request {request_id} is {row.status}, not awaiting approval")
    if user == row.requested_by:
        raise RequestRefused(
            f"{user} asked for journal entry request {request_id}, so {user} cannot decide on it: "
            "another approver must (maker-checker)"
        )
    problem = comment_problem(comment, approve=approve)
    if problem:
        raise RequestRefused(problem)
    decided = {"decided_by": user, "decided_at": utcnow(), "comment": comment or None}
    try:
        if not approve:
            row = ledger.update_journal_request(
                request_id, expect_status=AWAITING, status=REJECTED, **decided
            )
            ledger.note(subject(request_id), f"rejected by {user}: {comment}", row.connection, actor=user)
            return row
        row = ledger.update_journal_request(
            request_id, expect_status=AWAITING, status=CREATING, error=None, **decided
        )
    except TransitionConflict as exc:
        raise RequestRefused(str(exc)) from None
    ledger.note(
        subject(request_id),
        f"approved by {user}" + (f": {comment}" if comment else ""),
        row.connection,
        actor=user,
    )
    problems = check(row.entry)
    if problems:
        row = ledger.update_journal_request(
            request_id, expect_status=CREATING, status=FAILED, error="; ".join(problems)
        )
        ledger.note(
            subject(request_id),
            f"not created, the entry no longer passes its check: {row.error}",
            row.connection,
        )
        return row
    try:
        number = create(row.entry, idempotency_parts(row.entry))
    except ApiError as exc:
        row = ledger.update_journal_request(
            request_id, expect_status=CREATING, status=AWAITING, error=str(exc)
        )
        ledger.note(
            subject(request_id),
            f"Zuora did not create it ({exc}); it waits for the approval again",
            row.connection,
        )
        raise RequestRefused(
            f"Zuora did not create the entry of request {request_id}: {exc}. It waits for approval again; "
            "approving it again is safe (the same Idempotency-Key)"
        ) from None
    row = ledger.update_journal_request(
        request_id, expect_status=CREATING, status=CREATED, zuora_number=number
    )
    ledger.note(subject(request_id), f"created in Zuora as {number}", row.connection)
    return row
