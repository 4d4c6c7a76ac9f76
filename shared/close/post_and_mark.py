"""Steps 7 and 8 of the close: post each entry to the ERP once, then mark it Yes in Zuora once.

7. ``post`` - per entry: ``transferredToAccounting=Processing`` in Zuora (a visible trail),
   ``pending -> posting`` committed, the ERP create, ``posting -> posted(erp_ref)`` committed. A
   row found in ``posting`` without an ERP reference is in doubt: the ERP is asked by natural key
   (the JE number) and the row moves to ``posted`` (found) or back to ``pending`` (not found).
   ``concurrency`` entries are in flight at a time (:func:`~shared.close.fanout.step_widths`),
   each on exactly this path. Each entry whose ``posted`` is committed is marked (step 8's path)
   by the same task while it posts the rest, so Zuora's marking overlaps the ERP's posting
   (``mark_while_posting``, :class:`_Marker`).
8. ``mark`` - per entry one ``PUT .../basic-information`` with ``transferredToAccounting=Yes``
   (section 8.4 has no bulk call), then ``posted -> marked``, ``mark_concurrency`` at a time:
   what the post step left unmarked. The entries that may be marked are recorded first
   (``MarkState.inflight``, by either step), so after a crash each is re-read instead of being
   marked a second time.

A step that has used its time budget hands over to a fresh task (``Wait(0)``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context

from shared.close.context import POSTED_STATES, CloseContext, entry_row, entry_rows, rerun
from shared.close.fanout import each
from shared.close.journals import journal_payload
from shared.close.results import Done, StepResult, StopClose, Wait
from shared.close.state import MarkState, PostState, entries_to_post, save_state, step_state
from shared.close.transitions import LateTransitions
from shared.errors import Rejected
from shared.exchange import audit_subject
from shared.ledger import states
from shared.ledger.models import CloseRun, RecordState, SyncRecord
from shared.logs import log_context
from shared.mapping import Mapping as GlMapping
from shared.mapping import MappingError, journal_from_summary_entry

log = logging.getLogger("ledgerbridge.close")


def _in_flight(run: CloseRun) -> set[str]:
    """The entries whose ``Yes`` may have gone out without the ledger showing them marked."""
    return set(step_state(run, MarkState).inflight or [])


def _save_in_flight(ctx: CloseContext, run: CloseRun, numbers: list[str] | None) -> CloseRun:
    state = step_state(run, MarkState)
    state.inflight = numbers
    return save_state(ctx, run, state)


class _Marker:
    """Marks entries ``Yes`` in Zuora on the mark step's path (:func:`_mark_entry`) while the post
    step goes on, each once its ``posted`` is committed, ``width`` at a time: the Zuora requests
    of marking overlap the ERP requests of posting instead of waiting for the last entry to be
    posted.

    Best effort: the first failure stops it, and whatever it did not finish is the mark step's
    (the entries whose PUT went out are kept in flight there, so they are read before written).
    A simulated crash (a BaseException) is raised again by :meth:`close`."""

    def __init__(self, ctx: CloseContext, run: CloseRun, position: Mapping[str, int], width: int) -> None:
        """``width`` 0: marks nothing."""
        self.ctx = ctx
        self.run = run
        self.position = position
        self.late = LateTransitions(ctx.ledger)
        self.started: set[str] = set()  # a PUT may have gone out
        self.marked: set[str] = set()  # ``posted -> marked`` committed
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="close-mark") if width else None
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()

    def submit(self, number: str, row: SyncRecord) -> None:
        if self._pool is None or self._stop.is_set():
            return
        future = self._pool.submit(copy_context().run, self._mark, number, row)
        with self._lock:
            self._futures.append(future)

    def _mark(self, number: str, row: SyncRecord) -> None:
        if self._stop.is_set():
            return
        try:
            _mark_entry(
                self.ctx,
                self.run,
                number,
                rows={number: row},
                position=self.position,
                recheck=set(),
                started=self.started,
                late=self.late,
                then=functools.partial(self.marked.add, number),
            )
        except Exception as exc:
            self._stop.set()
            log.warning(
                "journal entry %s: not marked transferred while posting (the mark step will): %s", number, exc
            )

    def close(self, *, quietly: bool = False) -> None:
        """Wait for the marks under way and commit their transitions; then raise a simulated
        crash one of them met, unless ``quietly`` (another error is on its way out: no new mark
        starts)."""
        if quietly:
            self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.late.flush_quietly()
        for future in self._futures:
            error = future.exception()
            if error is not None and not isinstance(error, Exception) and not quietly:
                raise error

    def unsure(self) -> set[str]:
        return self.started - self.marked


def step_post(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 7: post each entry to the ERP exactly once (see the module docstring); with
    ``concurrency`` > 1, that many entries at a time, each on its own exactly as alone. An entry
    posted here is marked here too as soon as its ``posted`` is committed (:class:`_Marker`)."""
    mapping = ctx.mapping()
    deadline = ctx.clock() + ctx.step_budget
    numbers = entries_to_post(run)
    rows = entry_rows(ctx.ledger, ctx.connection, numbers)
    for number in numbers:
        row = rows.get(number)
        if row is not None and row.state in (RecordState.PARKED.value, RecordState.FAILED.value):
            raise StopClose(
                f"journal entry {number} is {row.state} ({row.last_error}); fix it, then run "
                f"`{rerun(run)}` again"
            )
    todo = [n for n in numbers if n not in rows or rows[n].state not in POSTED_STATES]
    position = {number: index for index, number in enumerate(numbers, start=1)}
    if not todo:
        return Done("mark", PostState(entries=len(numbers)))
    # Before any Yes is sent: a task that dies leaves these for the mark step to read first.
    earlier = _in_flight(run)
    run = _save_in_flight(ctx, run, sorted(earlier | set(todo)))
    late = LateTransitions(ctx.ledger)
    # Half the Zuora requests a step may run: the posting threads' Processing PUTs use the rest.
    marker = _Marker(ctx, run, position, max(1, ctx.mark_width // 2) if ctx.mark_while_posting else 0)

    def post(number: str) -> None:
        row = entry_row(ctx, number, rows)
        _post_entry(ctx, run, row, position[number], mapping, late=late, then=marker.submit)

    try:
        finished = each(
            todo, post, width=ctx.concurrency, clock=ctx.clock, deadline=deadline, raise_first=(StopClose,)
        )
        late.flush()
    except Exception:
        late.flush_quietly()
        marker.close()
        _save_in_flight(ctx, run, sorted(earlier | marker.unsure()) or None)
        raise
    except BaseException:
        late.flush_quietly()
        marker.close(quietly=True)
        raise
    marker.close()
    _save_in_flight(ctx, run, sorted(earlier | marker.unsure()) or None)
    if not finished:
        return Wait(0.0, "posted part of the entries in this task; continuing in a fresh one")
    return Done("mark", PostState(entries=len(numbers)))


def _post_entry(
    ctx: CloseContext,
    run: CloseRun,
    row: SyncRecord,
    index: int,
    mapping: GlMapping,
    *,
    late: LateTransitions,
    then: Callable[[str, SyncRecord], None] | None = None,
) -> None:
    """Post one entry: in doubt -> look it up; else Processing in Zuora, ``posting`` committed in
    the ledger, the one ERP call, ``posted`` with its reference (committed with ``late``, after
    which ``then(number, row)`` runs)."""
    number = row.zuora_id
    if row.state in POSTED_STATES:
        return
    ctx.heartbeat()
    with audit_subject(row.subject), log_context(record_id=number):
        if row.state == RecordState.POSTING.value:
            # In doubt: a worker died between committing `posting` and recording the reference.
            found = ctx.erp.find_document("journal", number)
            with ctx.ledger.session() as session:
                states.resume_in_doubt(
                    session,
                    row.id or 0,
                    found_erp_ref=found.key if found else None,
                    released=found.released if found else False,
                )
            if found is not None:
                return
            row = entry_row(ctx, number)
        try:
            journal = journal_from_summary_entry(row.payload, mapping)
        except MappingError as exc:
            with ctx.ledger.session() as session:
                states.park(session, row.id or 0, exc.reason)
            raise StopClose(
                f"journal entry {number} cannot be posted: {exc.reason}. Run `{rerun(run)}` again after "
                "fixing it.",
                event="close.entries_parked",
                fields={"parked": {number: [exc.reason]}},
            ) from None
        # A visible trail in Zuora before the ERP sees anything (and Zuora refuses to cancel an
        # entry that is Processing, section 8.6).
        ctx.zuora.journal_entries.update_basic_information(number, transferred_to_accounting="Processing")
        # The row read just now: the transition's version check refuses it if another driver has
        # moved it since, and it saves reading it again.
        with ctx.ledger.session() as session:
            states.begin_posting(session, row, erp_payload=journal_payload(journal))
        ctx.reached(f"posting:{index}")
        try:
            ref = ctx.erp.post_journal(journal)
        except Rejected as exc:
            # The ERP refused the document: it certainly does not exist. A person must look.
            with ctx.ledger.session() as session:
                states.park(session, row.id or 0, f"{ctx.erp_name} refused it: {exc}")
            raise StopClose(
                f"{ctx.erp_name} refused journal entry {number}: {exc}. It was parked; fix the cause "
                f"(account, period, currency in the ERP), then run `{rerun(run)}` again.",
                event="close.entries_parked",
                fields={"parked": {number: [str(exc)]}},
            ) from None
        # Transient / RateLimited / OutcomeUnknown propagate: the row stays `posting` (in doubt)
        # and the retried step looks the document up before creating it again.
        ctx.reached(f"posted:{index}")
        late.add(
            functools.partial(
                states.complete_posting,
                record=row,
                erp_ref=ref.key,
                erp_payload=journal_payload(journal),
                released=ref.released,
            ),
            then=None if then is None else functools.partial(then, number, row),
        )


def step_mark(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 8: ``transferredToAccounting=Yes`` per entry (one PUT each), then ``marked``.

    The entries about to be marked are saved as ``inflight`` before any PUT is sent; a task that
    finds entries in flight (the last one died around their PUTs) reads each of them that the
    ledger does not show marked before writing it. A task that ends normally clears the list."""
    deadline = ctx.clock() + ctx.step_budget
    numbers = entries_to_post(run)
    inflight = _in_flight(run)
    rows = entry_rows(ctx.ledger, ctx.connection, numbers)
    for number in numbers:
        row = rows.get(number)
        state = row.state if row is not None else "missing from the ledger"
        if state not in POSTED_STATES:
            raise StopClose(
                f"journal entry {number} is {state}, not posted, so it cannot be marked transferred; "
                f"run `{rerun(run)}` again"
            )
    todo = [n for n in numbers if rows[n].state != RecordState.MARKED.value]
    position = {number: index for index, number in enumerate(numbers, start=1)}
    if todo:
        run = _save_in_flight(ctx, run, todo)  # before any PUT is sent
    started: set[str] = set()
    late = LateTransitions(ctx.ledger)
    work = functools.partial(
        _mark_entry, ctx, run, rows=rows, position=position, recheck=inflight, started=started, late=late
    )
    try:
        finished = each(
            todo, work, width=ctx.mark_width, clock=ctx.clock, deadline=deadline, raise_first=(StopClose,)
        )
        late.flush()
    except Exception:
        late.flush_quietly()
        # A clean failure: only the entries whose PUT may have gone out need a read next time.
        marked = entry_rows(ctx.ledger, ctx.connection, sorted(started))
        unsure = [n for n in sorted(started) if marked[n].state != RecordState.MARKED.value]
        _save_in_flight(ctx, run, sorted(set(unsure) | (inflight & set(todo))))
        raise
    if not finished:
        _save_in_flight(ctx, run, None)
        return Wait(0.0, "continuing in a fresh task")
    return Done("verify", MarkState(entries=len(numbers), inflight=None))


def _mark_entry(
    ctx: CloseContext,
    run: CloseRun,
    number: str,
    *,
    rows: Mapping[str, SyncRecord],
    position: Mapping[str, int],
    recheck: set[str],
    started: set[str],
    late: LateTransitions,
    then: Callable[[], None] | None = None,
) -> None:
    """Mark one entry Yes in Zuora, then ``marked`` in the ledger, committed with ``late`` (after
    which ``then()`` runs; ``recheck``: the entries a dead task had in flight, read before they
    are written)."""
    index = position[number]
    row = entry_row(ctx, number, rows)
    if row.state == RecordState.MARKED.value:
        return
    ctx.heartbeat()
    with audit_subject(row.subject), log_context(record_id=number):
        # The last run died around this PUT: read before writing, so it is never sent twice.
        already = (
            number in recheck and ctx.zuora.journal_entries.get(number).transferred_to_accounting == "Yes"
        )
        if not already:
            started.add(number)  # set.add is atomic: the threads of one step share this set
            try:
                ctx.zuora.journal_entries.update_basic_information(number, transferred_to_accounting="Yes")
            except Rejected as exc:
                if ctx.zuora.journal_entries.get(number).transferred_to_accounting != "Yes":
                    raise StopClose(
                        f"Zuora refused to mark journal entry {number} transferred (it is posted in "
                        f"{ctx.erp_name} as {row.erp_ref}): {exc}. Mark it Yes in Zuora, then run "
                        f"`{rerun(run)}` again.",
                        event="close.verification_failed",
                    ) from None
            ctx.reached(f"marking:{index}")
        late.add(functools.partial(states.mark_transferred, record=row), then=then)
