"""Posting ledger rows to the ERP: at least once, with idempotent effects.

For one row (:func:`post_one`):

* ``pending``: make sure its dependencies are in the ERP (the account's customer; the documents a
  payment, refund or credit memo applies to), map it with the mapping file, commit ``posting``
  (with the ERP payload), make the *one* ERP call, commit ``posted`` with the ERP's reference. An
  account's row goes straight on to ``marked``: accounts have no transferred flag.
* ``posting`` without an ERP reference is *in doubt*. A worker that lost the ERP's answer (a
  timeout, a dropped connection: ``OutcomeUnknown``) knows it and holds the row for a lookup
  seconds later (``in_doubt_first_look``, then at growing intervals); a worker that died leaves
  the row to its posting timeout (the lease). Either way, once due, the ERP is asked by natural
  key whether the document exists: found, the row is posted with that reference; not found, it
  is created again (acumatica-api.md section 7), but only once ``in_doubt_quiet`` has passed
  since the answer was lost, as the ERP may still be running the lost request. A row not yet due
  is being posted, or waits for its lookup, and is left alone. The claim binds the claiming worker too: its
  create is sent only while enough of the claim is left for the answer to arrive before it ends,
  and is given up (``NotSent``, nothing created, the row fails and is retried) otherwise, so a
  create held up in the ERP client's queues can never land after another worker's lookup
  (:mod:`shared.erp.fence`).
* ``failed`` past its backoff goes back to ``pending`` first; ``posted``/``marked``/``parked``
  rows are left alone (a parked row needs a person and ``replay``).

Outcomes of the ERP call, by error type (never by message): ``OutcomeUnknown`` leaves the row in
``posting`` (in doubt); ``RateLimited`` and other ``Transient``/``NotFound``/``AuthFailed`` errors
fail it with a backoff (the request certainly did not create anything); ``Rejected`` fails it and
parks it after ``max_rejections``; ``DuplicateDocuments`` parks it at once. Mapping problems
(an unmapped account, payment method or currency; an inconsistent record) park the row with the
reason. A document whose account has no customer yet *waits*: it stays ``pending`` and is tried
again later, it does not fail.

The document and what it waits for come from :func:`shared.item_level.planner.plan` in its posting
mode (the replay preview uses the same planner read-only). Applications: an application is sent
when the ledger has its target posted *and released* in the ERP (Acumatica applies only to open
documents, section 6.4). A target still to be posted is posted first (up to ``MAX_DEPTH`` levels
deep); one posted but not released (Acumatica without ``LEDGERBRIDGE_ITEM_RELEASE``) is left out
and named under ``not_applied`` in the row's ERP payload; a target the ledger has not seen yet is
waited for up to ``apply_wait``, then left out too. What is left out is kept as a waiting application
and applied once its target is posted and released (:mod:`shared.item_level.applications`).

:func:`post_records` posts a batch: dependency levels in order (accounts, then invoices and debit
memos, then payments and credit memos, then refunds), each level concurrently on the process's
posting threads, as many as the ERP's concurrency licence and shared by all the tasks of the
process (the ERP client's Redis limiter enforces the licence fleet-wide).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextvars import copy_context
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlmodel import Session

from shared.erp import fence
from shared.erp.base import ArDocument, Customer, ErpRef, RefKind
from shared.erp.errors import ClosedPeriod, DuplicateDocuments, OutcomeUnknown
from shared.errors import ApiError, RateLimited, Rejected
from shared.exchange import audit_subject
from shared.item_level import planner
from shared.item_level.applications import apply_waiting
from shared.item_level.changes import carry_change
from shared.item_level.context import ItemContext
from shared.item_level.planner import ItemDocument, Park, Wait, erp_payload
from shared.item_level.queries import LOST_ANSWER, row_keys_by_ids, row_keys_by_zuora_ids
from shared.item_level.streams import Stream, for_object_type
from shared.ledger.applications import record_left_out
from shared.ledger.errors import IllegalTransition, LedgerError, TransitionConflict
from shared.ledger.links import link_created
from shared.ledger.models import ObjectType, SyncRecord
from shared.ledger.states import (
    FAILED,
    MARKED,
    PARKED,
    PENDING,
    POSTED,
    POSTING,
    audit_note,
    begin_posting,
    complete_posting,
    fail,
    hold_in_doubt,
    mark_transferred,
    park,
    record_release,
    reschedule,
    resume_in_doubt,
    retry,
)
from shared.logs import log_context

log = logging.getLogger("ledgerbridge.item_level.posting")

# How deep post_one goes posting dependencies inline (refund -> payment -> invoice -> account).
MAX_DEPTH = 3

# Outcomes of post_one.
POSTED_OUTCOME = "posted"
MARKED_OUTCOME = "marked"
WAITING = "waiting"
PARKED_OUTCOME = "parked"
FAILED_OUTCOME = "failed"
IN_DOUBT = "in_doubt"
BUSY = "busy"
SKIPPED = "skipped"


@dataclass(frozen=True)
class PostOutcome:
    """What :func:`post_one` did. ``retry_in`` (seconds) asks the caller to dispatch the row again
    that much later (a short wait: a dependency being posted elsewhere)."""

    record_id: int
    outcome: str
    stream: str | None = None
    detail: str | None = None
    retry_in: float | None = None
    erp_ref: str | None = None


@dataclass
class PostSummary:
    outcomes: list[PostOutcome] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for outcome in self.outcomes:
            counts[outcome.outcome] += 1
        return dict(counts)

    @property
    def streams_to_mark(self) -> set[str]:
        return {o.stream for o in self.outcomes if o.outcome == POSTED_OUTCOME and o.stream}


# -- ledger transitions ---------------------------------------------------------------------------


def _apply(ctx: ItemContext, change: Callable[[Session], SyncRecord]) -> SyncRecord | None:
    """Run one state change in its own committed transaction; None when another worker changed
    the row first (the caller treats the row as busy)."""
    try:
        with ctx.ledger.session() as session:
            return change(session)
    except (TransitionConflict, IllegalTransition) as exc:
        log.info("record changed underneath us: %s", exc)
        return None


def _wait(ctx: ItemContext, rec: SyncRecord, stream: Stream, plan: Wait) -> PostOutcome:
    now = ctx.now()
    assert rec.id is not None
    _apply(
        ctx,
        lambda s: reschedule(
            s, rec.id or 0, retry_at=ctx.shifted(now + plan.delay), error=plan.reason, now=now
        ),
    )
    return PostOutcome(
        rec.id,
        WAITING,
        stream.name,
        plan.reason,
        retry_in=plan.delay.total_seconds() if plan.redispatch else None,
    )


def _hold(
    ctx: ItemContext, rec: SyncRecord, stream: Stream, reason: str, *, still_running: bool = False
) -> PostOutcome:
    """Keep an in-doubt row posting and look it up again soon. The first hold (the answer was just
    lost) looks ``in_doubt_first_look`` later and sets when a lookup that finds nothing may create
    the document again: at once when the ERP answered, ``in_doubt_quiet`` later when it may
    ``still_running`` the lost request. Each later hold waits twice as long as the one before it
    (lookups 2, 4, 8, 16 s apart...), never past that moment while it lies ahead."""
    assert rec.id is not None
    record_id = rec.id
    now = ctx.now()
    first = ctx.options.in_doubt_first_look
    recreate_after = now + ctx.options.in_doubt_quiet if still_running else now
    delay = first
    if rec.recreate_after is not None:  # held before: rec.updated_at is when
        delay = max(first, 2 * (now - rec.updated_at))
        if now < rec.recreate_after:
            delay = min(delay, max(rec.recreate_after - now, first))
    held = _apply(
        ctx,
        lambda s: hold_in_doubt(
            s, record_id, look_at=now + delay, reason=reason, recreate_after=recreate_after, now=now
        ),
    )
    if held is None:
        return PostOutcome(record_id, BUSY, stream.name)
    return PostOutcome(record_id, IN_DOUBT, stream.name, reason, retry_in=delay.total_seconds())


def _park(ctx: ItemContext, rec: SyncRecord, stream: Stream, reason: str) -> PostOutcome:
    assert rec.id is not None
    record_id = rec.id
    done = _apply(ctx, lambda s: park(s, record_id, reason, now=ctx.now()))
    log.warning("parked %s: %s", rec.subject, reason)
    return PostOutcome(record_id, PARKED_OUTCOME if done else BUSY, stream.name, reason)


# -- the ERP call ---------------------------------------------------------------------------------


def _call_erp(ctx: ItemContext, document: ItemDocument) -> ErpRef:
    if isinstance(document, Customer):
        return ctx.erp.upsert_customer(document)
    if isinstance(document, ArDocument):
        ref = ctx.erp.create_document(document)
    else:
        ref = ctx.erp.create_payment(document)
    return _release_created(ctx, ref)


def _release_created(ctx: ItemContext, ref: ErpRef) -> ErpRef:
    """A document just created (or found after its create's answer was lost) released, where
    releasing is configured. If the ERP refuses now, it stays unreleased, still a posting: what
    applies to it releases it first, and the sweep sends it to be released again."""
    if not ctx.options.release or ref.released:
        return ref
    try:
        return ctx.erp.release(ref)
    except ApiError as exc:
        log.warning("created %s but could not release it: %s", ref.key, exc)
        return ref


RELEASABLE: frozenset[str] = frozenset(
    {ObjectType.INVOICE.value, ObjectType.DEBIT_MEMO.value, ObjectType.CREDIT_MEMO.value,
     ObjectType.PAYMENT.value, ObjectType.REFUND.value}
)  # fmt: skip


def needs_release(ctx: ItemContext, rec: SyncRecord) -> bool:
    """Whether ``rec`` is posted (or marked) but its document is not released, though releasing
    is configured: its release failed after the create, and it is to be released again."""
    return (
        ctx.options.release
        and rec.object_type in RELEASABLE
        and rec.state in (POSTED, MARKED)
        and bool(rec.erp_ref)
        and not rec.erp_released
    )


def release_posted(ctx: ItemContext, rec: SyncRecord) -> SyncRecord:
    """Release the document of a posted row whose release failed after its create (Acumatica
    applies payments and credits only to released documents, so what applies to it waits for
    this). The release re-reads the document's status on an error, so releasing again is safe.
    Returns the row as it is now; an ERP that refuses again leaves it unreleased, for later."""
    assert rec.id is not None and rec.erp_ref
    record_id = rec.id
    kind = cast(RefKind, rec.object_type)
    try:
        with audit_subject(rec.subject):
            ctx.erp.release(ErpRef(kind=kind, key=rec.erp_ref, released=False))
    except ApiError as exc:
        log.warning("%s is still not released in the ERP: %s", rec.erp_ref, exc)
        # Noted, so the sweep sends it again only after its grace, not on each pass.
        error = str(exc)
        noted = _apply(ctx, lambda s: record_release(s, record_id, error=error, now=ctx.now()))
        return noted or rec
    log.info("released %s in the ERP", rec.erp_ref)
    for _ in range(2):  # a row marked meanwhile by another worker is read again, once
        done = _apply(ctx, lambda s: record_release(s, record_id, now=ctx.now()))
        if done is not None:
            return done
    return ctx.ledger.get_record_by_id(record_id) or rec


# -- one row --------------------------------------------------------------------------------------


def _resolve_in_doubt(ctx: ItemContext, stream: Stream, rec: SyncRecord) -> SyncRecord | PostOutcome:
    """A posting row without an ERP reference, due: look it up by natural key. Found, it is
    posted; not found, it goes back to pending (to be created again) once the quiet period since
    the lost answer is over, and is held for another lookup before; a failed lookup holds it too."""
    assert rec.id is not None
    record_id = rec.id
    found: ErpRef | None = None
    if stream.erp_method != "upsert_customer":  # a customer upsert by key is safe to repeat
        if not rec.zuora_number:
            return _park(ctx, rec, stream, f"{rec.subject} is in doubt and has no number to look it up by")
        customer_id = planner.posted_customer_id(ctx, rec)
        try:
            with audit_subject(rec.subject):
                found = ctx.erp.find_document(stream.erp_kind, rec.zuora_number, customer_id)
        except DuplicateDocuments as exc:
            return _park(ctx, rec, stream, f"in doubt and found more than once in the ERP: {exc}")
        except ApiError as exc:
            log.warning("could not look %s up in the ERP: %s", rec.subject, exc)
            return _hold(ctx, rec, stream, f"lookup failed: {exc}")
        if found is None and rec.recreate_after is not None and ctx.now() < rec.recreate_after:
            return _hold(ctx, rec, stream, "not in the ERP yet; the lost request may still be running")
    ref = found
    if ref is not None:
        # Found: the lost answer was the create's, and the release after it never ran.
        with audit_subject(rec.subject):
            ref = _release_created(ctx, ref)

    def settle(session: Session) -> SyncRecord:
        # The row as read before the lookup: its version check refuses the change if another
        # worker settled it and claimed it afresh meanwhile (its create may be on its way).
        row = resume_in_doubt(
            session,
            rec,
            now=ctx.now(),
            found_erp_ref=ref.key if ref else None,
            released=bool(ref and ref.released),
        )
        if ref is not None:
            record_left_out(session, row, now=ctx.now())
            link_created(session, row, now=ctx.now())
            if not stream.marks:
                row = mark_transferred(session, record_id, now=ctx.now())
        return row

    settled = _apply(ctx, settle)
    if settled is None:
        return PostOutcome(record_id, BUSY, stream.name)
    if ref is not None:
        log.info("%s was in doubt and is in the ERP as %s", rec.subject, ref.key)
        return PostOutcome(
            record_id,
            POSTED_OUTCOME if stream.marks else MARKED_OUTCOME,
            stream.name,
            "in doubt: found",
            erp_ref=ref.key,
        )
    log.info("%s was in doubt and is not in the ERP: posting it again", rec.subject)
    return settled


def post_one(ctx: ItemContext, record_id: int, *, _depth: int = 0) -> PostOutcome:
    """Post one ledger row (see the module docstring). Never raises for the ERP's or the
    mapping's errors: they become the row's state. Ledger errors propagate (the task retries)."""
    rec = ctx.ledger.get_record_by_id(record_id)
    if rec is None:
        return PostOutcome(record_id, SKIPPED, None, "no such ledger row")
    stream = for_object_type(rec.object_type)
    if stream is None:
        return PostOutcome(record_id, SKIPPED, None, f"{rec.object_type} is not an item-level record")
    with log_context(connection=ctx.connection, stream=stream.name, record_id=rec.subject):
        now = ctx.now()
        if rec.state in (MARKED, POSTED) and needs_release(ctx, rec):
            rec = release_posted(ctx, rec)
        if rec.state in (MARKED, POSTED) and rec.changed_at is not None:
            carry_change(ctx, rec)  # changed in Zuora after it was posted
            rec = ctx.ledger.get_record_by_id(record_id) or rec
        if rec.state in (MARKED, POSTED):
            apply_waiting(ctx, rec)  # what it was created without, now that its targets are in
        if rec.state == MARKED:
            return PostOutcome(record_id, MARKED_OUTCOME, stream.name)
        if rec.state == POSTED:
            return PostOutcome(record_id, POSTED_OUTCOME, stream.name, erp_ref=rec.erp_ref)
        if rec.state == PARKED:
            return PostOutcome(record_id, PARKED_OUTCOME, stream.name, rec.last_error)
        if rec.state == FAILED:
            if rec.next_attempt_at is not None and rec.next_attempt_at > now:
                return PostOutcome(record_id, FAILED_OUTCOME, stream.name, "not due yet")
            retried = _apply(ctx, lambda s: retry(s, record_id, now=now))
            if retried is None:
                return PostOutcome(record_id, BUSY, stream.name)
            rec = retried
        if rec.state == POSTING:
            if rec.erp_ref or (rec.next_attempt_at is not None and rec.next_attempt_at > now):
                return PostOutcome(record_id, BUSY, stream.name, "being posted by another worker")
            resolved = _resolve_in_doubt(ctx, stream, rec)
            if isinstance(resolved, PostOutcome):
                return resolved
            rec = resolved
        return _post_pending(ctx, stream, rec, _depth)


def _post_pending(ctx: ItemContext, stream: Stream, rec: SyncRecord, depth: int) -> PostOutcome:
    assert rec.id is not None
    record_id = rec.id

    # Dependencies are posted inline, but only so deep (refund -> payment -> invoice -> account).
    def post_dependency(dependency_id: int) -> PostOutcome:
        outcome = post_one(ctx, dependency_id, _depth=depth + 1)
        if outcome.outcome == POSTED_OUTCOME and outcome.stream:
            # Posted here, not by its own batch (which found it busy, or has not run yet): that
            # batch would not ask for its marking, so ask now.
            ctx.dispatch.mark(ctx.connection, outcome.stream)
        if outcome.retry_in is not None:
            # Its own batch found it busy (being posted here) and sent nothing: an in-doubt
            # dependency must be looked up again when due, or the rows waiting for it wait on.
            ctx.dispatch.post(ctx.connection, [dependency_id], countdown=outcome.retry_in)
        return outcome

    post_first = post_dependency if depth < MAX_DEPTH else None
    plan = planner.plan(ctx, stream, rec, rec.payload, planner.Post(post_first))
    if isinstance(plan, Wait):
        return _wait(ctx, rec, stream, plan)
    if isinstance(plan, Park):
        return _park(ctx, rec, stream, plan.reason)
    payload = erp_payload(stream, plan)
    started = _apply(
        ctx,
        lambda s: begin_posting(
            s, record_id, erp_payload=payload, timeout=ctx.options.posting_timeout, now=ctx.now()
        ),
    )
    if started is None:
        return PostOutcome(record_id, BUSY, stream.name)
    # The claim ends at next_attempt_at: past it another worker may look the document up and
    # create it again, so our create must be answered (or not sent at all) before then.
    claim = (started.next_attempt_at - ctx.now()).total_seconds() if started.next_attempt_at else 0.0
    try:
        with audit_subject(rec.subject), fence.send_by(claim):
            ref = _call_erp(ctx, plan.document)
    except OutcomeUnknown as exc:
        log.warning("%s: the ERP may or may not have it; in doubt until looked up: %s", rec.subject, exc)
        return _hold(ctx, started, stream, f"{LOST_ANSWER}: {exc}", still_running=exc.still_running)
    except DuplicateDocuments as exc:
        return _park(ctx, rec, stream, f"the ERP has more than one candidate: {exc}")
    except ClosedPeriod as exc:
        # Nothing was created, and trying again changes nothing until the period is opened.
        return _park(ctx, rec, stream, str(exc))
    except RateLimited as exc:
        retry_at = ctx.now() + timedelta(seconds=max(exc.retry_after, 1.0))
        return _failed(ctx, stream, record_id, f"rate limited: {exc}", retry_at)
    except Rejected as exc:
        if started.attempts + 1 >= ctx.options.max_rejections:
            return _park(ctx, rec, stream, f"the ERP refused it {started.attempts + 1} times: {exc}")
        return _failed(ctx, stream, record_id, f"the ERP refused it: {exc}", None)
    except ApiError as exc:  # Transient, NotFound, AuthFailed: nothing was created
        return _failed(ctx, stream, record_id, str(exc), None)
    except Exception as exc:
        # Not an API answer (a bug, a crash in the adapter): we cannot know whether the ERP got
        # it, so the row stays in posting and the in-doubt lookup settles it.
        log.exception("unexpected error posting %s", rec.subject)
        return _hold(ctx, started, stream, f"{type(exc).__name__}: {exc}", still_running=True)

    def finish(session: Session) -> SyncRecord:
        row = complete_posting(session, record_id, erp_ref=ref.key, released=ref.released, now=ctx.now())
        record_left_out(session, row, now=ctx.now())
        link_created(session, row, now=ctx.now())
        if ref.note:  # what the ERP adapter did differently (a closed period), with the post
            audit_note(session, ctx.now(), ctx.connection, rec.subject, f"{ref.key} {ref.note}")
        if not stream.marks:
            row = mark_transferred(session, record_id, now=ctx.now())
        return row

    try:
        with ctx.ledger.session() as session:
            finish(session)
    except LedgerError as exc:
        # The ERP has it but the ledger could not say so: the row stays posting, in doubt, and
        # the lookup by natural key finds the document (it is never created twice).
        log.error("posted %s as %s but could not record it: %s", rec.subject, ref.key, exc)
        return PostOutcome(record_id, IN_DOUBT, stream.name, str(exc), erp_ref=ref.key)
    if ref.note:
        log.info("%s %s", ref.key, ref.note)
    return PostOutcome(
        record_id, POSTED_OUTCOME if stream.marks else MARKED_OUTCOME, stream.name, erp_ref=ref.key
    )


def _failed(
    ctx: ItemContext, stream: Stream, record_id: int, error: str, retry_at: datetime | None
) -> PostOutcome:
    done = _apply(ctx, lambda s: fail(s, record_id, error, retry_at=retry_at, now=ctx.now()))
    log.warning("posting failed (will retry): %s", error)
    return PostOutcome(record_id, FAILED_OUTCOME if done else BUSY, stream.name, error)


# -- a batch --------------------------------------------------------------------------------------


def post_records(ctx: ItemContext, record_ids: Sequence[int]) -> PostSummary:
    """Post these rows: dependency levels in order, each level on the process's posting threads
    (:func:`posting_threads`, as many as the ERP concurrency). Afterwards dispatch marking for the
    streams that got postings and dispatch again the rows that wait briefly. Returns every row's
    outcome. Only the rows' keys are held here: each row is read when its turn comes."""
    summary = PostSummary()
    levels: dict[int, list[int]] = defaultdict(list)
    account_ids: set[str] = set()
    for key in row_keys_by_ids(ctx.ledger, record_ids):
        stream = for_object_type(key.object_type)
        if stream is None:
            continue
        levels[stream.level].append(key.id)
        if stream.depends_on_account and key.account_id:
            account_ids.add(key.account_id)
    # The customers first, once each, so documents of one new account do not race for it.
    own = {i for ids in levels.values() for i in ids}
    accounts = row_keys_by_zuora_ids(
        ctx.ledger, ctx.connection, ObjectType.ACCOUNT.value, sorted(account_ids)
    )
    levels[-1] = [a.id for a in accounts.values() if a.id not in own and a.state in (PENDING, FAILED)]
    for level in sorted(levels):
        ids = levels[level]
        if not ids:
            continue
        width = max(1, min(ctx.options.erp_concurrency, len(ids)))
        if width == 1:
            summary.outcomes.extend(post_one(ctx, i) for i in ids)
        else:
            summary.outcomes.extend(_on_posting_threads(ctx, ids))
    later: dict[float, list[int]] = defaultdict(list)
    for outcome in summary.outcomes:
        if outcome.retry_in is not None:
            later[round(outcome.retry_in, 1)].append(outcome.record_id)
    for delay, ids in sorted(later.items()):
        ctx.dispatch.post(ctx.connection, ids, countdown=delay)
    for name in sorted(summary.streams_to_mark):
        ctx.dispatch.mark(ctx.connection, name)
    return summary


_threads: dict[int, ThreadPoolExecutor] = {}
_threads_lock = threading.Lock()


def _forget_threads() -> None:
    # A forked child (Celery's prefork pool) has none of its parent's threads.
    _threads.clear()


os.register_at_fork(after_in_child=_forget_threads)


def posting_threads(width: int) -> ThreadPoolExecutor:
    """This process's posting threads for an ERP concurrency of ``width``, shared by all its tasks:
    a worker running 16 batches at once keeps ``width`` posting threads, not 16 x ``width``, and the
    rows waiting for a thread wait as ids. (The ERP client's limiter still bounds the fleet.)"""
    with _threads_lock:
        pool = _threads.get(width)
        if pool is None:
            pool = _threads[width] = ThreadPoolExecutor(max_workers=width, thread_name_prefix="post")
        return pool


def _on_posting_threads(ctx: ItemContext, ids: Sequence[int]) -> list[PostOutcome]:
    """``post_one`` of each id on the posting threads, in order; waits for every one of them
    before raising the first error (a ledger error: the task is retried)."""
    pool = posting_threads(max(1, ctx.options.erp_concurrency))
    futures = [pool.submit(copy_context().run, post_one, ctx, i) for i in ids]
    wait(futures)
    return [future.result() for future in futures]
