"""Driving a close run: one step per task under the close lock, its result committed on the run.

:func:`drive_step` is what a step task does (take the lock as the chain's driver, run the step if
it is still the run's step, :func:`record_result`, park or release the lock); :func:`take_over`
is what a resume does (become the driver, reopen a run that needs attention). :func:`open_close`
opens a period's run, :func:`chain_alive` tells whether a live chain drives it, :func:`stuck_runs`
finds running runs nothing drives any more (for a sweep that resumes them), and :func:`progress`
counts a run's entries by state (for the CLI).

Exactly once: only one process runs a step of a period's close at a time -
:class:`~shared.coordination.close_lock.CloseLock`, held by the *driver* (a token the chain's
tasks carry). A task of an older chain finds a foreign token and drops out; a close started for a
period already being closed attaches to the running one; a lock whose holder process died is
taken over.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from shared.backoff import exponential, full_jitter
from shared.close import notices
from shared.close.attempts import attempt_note, next_attempt, run_attempt
from shared.close.context import CloseContext, cli_arg, entry_rows, rerun, throttled
from shared.close.entries import step_check, step_discard, step_fetch
from shared.close.post_and_mark import step_mark, step_post
from shared.close.results import FINISHED, STEPS, Done, DriveResult, Stale, StepResult, Stop, StopClose, Wait
from shared.close.state import (
    STATE_MODELS,
    Stored,
    TransientState,
    closed_period_allowed,
    details_update,
    entries_to_post,
    remember_allow_closed,
    skipped_entries,
    step_state,
    stored_state,
)
from shared.close.verification import step_reconcile, step_verify
from shared.close.zuora_jobs import step_close_period, step_journal_run, step_lookup, step_trial_balance
from shared.coordination.close_lock import CloseLock, LockLost
from shared.errors import ApiError, AuthFailed, NotFound, RateLimited, Rejected, Transient
from shared.exchange import audit_subject
from shared.ledger.models import CloseRun, CloseStatus, RecordState
from shared.ledger.repo import Ledger
from shared.logs import log_context

log = logging.getLogger("ledgerbridge.close")

# Transient failures (5xx, timeouts): exponential backoff, then a person is asked.
TRANSIENT_BASE = 2.0
TRANSIENT_CAP = 300.0
MAX_TRANSIENT_ATTEMPTS = 30
# A worker busy with another close of the same period: look again after this long.
BUSY_WAIT = 5.0
# A step renews its lock (and checks it still holds it) at most this often, not once per entry:
# entries are guarded against a second driver by the ledger's versioned transitions anyway.
HEARTBEAT_EVERY = 1.0

# After a needs-attention stop at one of these steps, a resumed run starts over at ``check``:
# it re-validates and un-parks fixed entries; posted and marked entries are skipped.
_RESTART_AT_CHECK = frozenset({"post", "mark", "verify"})

STEP_FUNCTIONS: dict[str, Callable[[CloseContext, CloseRun], StepResult]] = {
    "lookup": step_lookup,
    "trial_balance": step_trial_balance,
    "close_period": step_close_period,
    "journal_run": step_journal_run,
    "fetch": step_fetch,
    "check": step_check,
    "post": step_post,
    "mark": step_mark,
    "verify": step_verify,
    "reconcile": step_reconcile,
    "discard": step_discard,
}


def _transient_wait(ctx: CloseContext, run: CloseRun, step: str, exc: ApiError) -> StepResult:
    before = step_state(run, TransientState)
    attempts = before.attempts + 1 if before.step == step else 1
    ctx.ledger.update_close_run(
        run.id or 0,
        details_update=details_update(TransientState(step=step, attempts=attempts, error=str(exc)[:1000])),
    )
    if attempts > MAX_TRANSIENT_ATTEMPTS:
        return Stop(
            f"step {step} failed {attempts} times in a row with a temporary error, the last: {exc}. Check "
            f"that Zuora and {ctx.erp_name} are reachable, then run `{rerun(run)}` again."
        )
    if isinstance(exc, RateLimited):
        return Wait(min(max(exc.retry_after, 1.0), TRANSIENT_CAP), f"rate limited: {exc}")
    delay = exponential(attempts, base=TRANSIENT_BASE, cap=TRANSIENT_CAP, floor=1.0, jitter=full_jitter)
    return Wait(delay, f"temporary failure ({exc}); retry {attempts}")


def run_step(ctx: CloseContext, run: CloseRun, step: str) -> StepResult:
    """Run one step and turn API errors into results (never raises for an API error): rate limits
    and transient failures wait with backoff; bad credentials, refusals and missing objects stop
    the close with the API's message. :class:`LockLost` propagates."""
    function = STEP_FUNCTIONS[step]
    with (
        audit_subject(f"close:{run.id}"),
        log_context(connection=ctx.connection, close_run=run.id, step=step),
    ):
        try:
            return function(ctx, run)
        except StopClose as stop:
            return stop.stop
        except (RateLimited, Transient) as exc:
            return _transient_wait(ctx, ctx.ledger.get_close_run(run.id or 0), step, exc)
        except AuthFailed as exc:
            return Stop(
                f"{exc.api} refused ledgerbridge's credentials during step {step}: {exc}. Fix the "
                f"connection's credentials, then run `{rerun(run)}` again."
            )
        except (Rejected, NotFound) as exc:
            return Stop(f"step {step} of the close of {cli_arg(run.period_name)} failed: {exc}")


def record_result(ctx: CloseContext, run: CloseRun, step: str, result: StepResult) -> CloseRun:
    """Commit a step's result on the run (and tell people when it stopped or finished): a Done
    merges its state into the step's, stamps ``done_at`` and moves the run on; a Stop records its
    reason on the step and the run. The notice of a finished or stopped run is committed with its
    status (the notice outbox), then handed on for delivery."""
    run_id = run.id or 0
    model = STATE_MODELS[step]
    if isinstance(result, Done):
        current = ctx.ledger.get_close_run(run_id)
        state = step_state(current, model)
        if result.state is not None:
            state = state.merged(result.state)
        state.done_at = dt.datetime.now(dt.UTC).isoformat()
        cleared = [TransientState] if stored_state(current, TransientState) is not None else []
        status = None
        if result.next_step == FINISHED:
            status = CloseStatus.DRY_RUN.value if current.dry_run else CloseStatus.DONE.value
        updated = ctx.ledger.update_close_run(
            run_id,
            step=result.next_step,
            status=status,
            details_update=details_update(state.without("stopped"), cleared=cleared),
            error=None,
            notice=notices.when_done(ctx) if status is not None else None,
        )
        if result.next_step == FINISHED:
            ctx.ledger.note(
                f"close:{run_id}", attempt_note(updated, f"close finished ({updated.status})"), ctx.connection
            )
            if not updated.dry_run:
                ctx.notices_recorded()
        return updated
    if isinstance(result, Stop):
        state = step_state(ctx.ledger.get_close_run(run_id), model)
        if result.status != CloseStatus.AWAITING_APPROVAL.value:
            state.stopped = result.reason  # a wait for approval is not a stop of the step
        updated = ctx.ledger.update_close_run(
            run_id,
            status=result.status,
            error=result.reason if result.status == CloseStatus.NEEDS_ATTENTION.value else None,
            details_update=details_update(state),
            notice=notices.when_stopped(ctx, result),
        )
        ctx.ledger.note(
            f"close:{run_id}", attempt_note(updated, f"stopped at {step}: {result.reason}"), ctx.connection
        )
        log.warning("close stopped", extra={"close_run": run_id, "step": step, "reason": result.reason})
        if result.status in notices.TOLD:
            ctx.notices_recorded()
        return updated
    return ctx.ledger.get_close_run(run_id)


def drive_step(ctx: CloseContext, lock: CloseLock, close_run_id: int, step: str, token: str) -> DriveResult:
    """What a step task does: take the lock as driver ``token``, run ``step`` if it is still the
    run's step, commit the result, and park or release the lock. Returns :class:`Stale` when this
    task has nothing to do (another driver, a finished run, a step already done)."""
    run = ctx.ledger.get_close_run(close_run_id)
    if run.status != CloseStatus.RUNNING.value:
        return Stale(f"close run {close_run_id} is {run.status}")
    outcome = lock.acquire(token, close_run_id)
    if outcome == "busy":
        return Wait(BUSY_WAIT, "another worker holds the close lock of this period")
    if outcome == "stale":
        return Stale(f"another driver holds the close lock of close run {close_run_id}")
    run = ctx.ledger.get_close_run(close_run_id)
    if run.status != CloseStatus.RUNNING.value or run.step != step:
        lock.release(token)
        return Stale(f"close run {close_run_id} is {run.status} at step {run.step}, not {step}")
    ctx.heartbeat = throttled(lambda: lock.heartbeat(token, close_run_id), HEARTBEAT_EVERY, ctx.clock)
    ctx.reached(f"before:{step}")
    try:
        try:
            result = run_step(ctx, run, step)
        except LockLost as exc:
            return Stale(str(exc))
        except SQLAlchemyError:
            raise  # the ledger is unreachable: nothing can be recorded; the task is retried
        except Exception as exc:
            # A bug or an unexpected failure: record it so the run does not hang in `running`.
            log.exception("close step crashed", extra={"close_run": close_run_id, "step": step})
            problem = f"{type(exc).__name__}: {exc}"
            result = Stop(f"step {step} failed unexpectedly: {problem}. Run `{rerun(run)}` again.")
        record_result(ctx, run, step, result)
    except Exception:
        # Free the lock for the retry or a resume (a kill - no exception - leaves it to expire).
        lock.release(token)
        raise
    if isinstance(result, Wait):
        lock.park(token, close_run_id, result.seconds)
    elif isinstance(result, Done) and result.next_step != FINISHED:
        lock.park(token, close_run_id, 0.0)
    else:
        lock.release(token)
    ctx.reached(f"after:{step}")
    return result


@dataclass(frozen=True)
class Resumed:
    """The run is driven by the new token from ``step``."""

    step: str


def take_over(
    ctx: CloseContext, lock: CloseLock, close_run_id: int, token: str, *, reopen: int | None = None
) -> Resumed | Wait | Stale:
    """What a resume does: become the run's driver (waiting while another live process runs a
    step of it) and return the step to run. A needs-attention run is reopened as the run's next
    attempt: its stopped step starts afresh (the step's attempt + 1; post, mark and verify restart
    at check). ``reopen`` (:func:`shared.close.attempts.reopens`) is the stopped attempt the
    caller saw: when the run has moved past it (another resume reopened it), the run is not
    reopened again."""
    run = ctx.ledger.get_close_run(close_run_id)
    if run.status not in (CloseStatus.RUNNING.value, CloseStatus.NEEDS_ATTENTION.value):
        return Stale(f"close run {close_run_id} is {run.status}")
    outcome = lock.acquire(token, close_run_id, takeover=True)
    if outcome != "acquired":
        return Wait(BUSY_WAIT, "another worker is running a step of this close")
    try:
        step = _reopen(ctx, close_run_id, reopen)
    except Exception:
        lock.release(token)
        raise
    if isinstance(step, Stale):
        lock.release(token)
        return step
    if step == FINISHED:
        lock.release(token)
        return Stale(f"close run {close_run_id} has finished")
    lock.park(token, close_run_id, 0.0)
    return Resumed(step)


def _reopen(ctx: CloseContext, close_run_id: int, reopen: int | None) -> str | Stale:
    """The step a resumed run continues at; a needs-attention run is set running again, as its
    next attempt (unless it is no longer on attempt ``reopen``)."""
    run = ctx.ledger.get_close_run(close_run_id)
    if run.status != CloseStatus.NEEDS_ATTENTION.value:
        return run.step
    if reopen is not None and run_attempt(run) != reopen:
        return Stale(
            f"close run {close_run_id} is on attempt {run_attempt(run)}, not {reopen}: not reopened again"
        )
    step = "check" if run.step in _RESTART_AT_CHECK else run.step
    stopped = step_state(run, STATE_MODELS[run.step])
    # The step run again starts with nothing but its attempt count.
    attempt = next_attempt(run)
    states: list[Stored] = [STATE_MODELS[step](attempt=stopped.attempt + 1), attempt]
    if step != run.step:
        # The stopped step keeps what it recorded (the mark step's in-flight entry) but not the stop.
        states.append(stopped.without("stopped"))
    ctx.ledger.update_close_run(
        close_run_id,
        step=step,
        status=CloseStatus.RUNNING.value,
        error=None,
        details_update=details_update(*states, cleared=[TransientState]),
    )
    ctx.ledger.note(
        f"close:{close_run_id}",
        f"attempt {attempt.number} started: resumed at {step} after attempt {attempt.number - 1} needed attention",
        ctx.connection,
    )
    return step


def chain_alive(lock: CloseLock, close_run_id: int) -> bool:
    """Whether a live chain drives this run now (a new close of the period then attaches to it)."""
    holder = lock.holder()
    return holder is not None and holder.run_id == close_run_id and lock.holder_alive(holder)


def stuck_runs(
    ledger: Ledger,
    connection: str,
    lock_for: Callable[[str], CloseLock],
    *,
    stale_after: float = 900.0,
    now: dt.datetime | None = None,
) -> list[CloseRun]:
    """The connection's running close runs that nothing drives: unchanged for ``stale_after``
    seconds and no live chain on their lock (the worker died and nobody re-enqueued them, or Redis
    lost the queue). ``lock_for(period_name)`` builds the period's lock. A sweep resumes them."""
    now = now or dt.datetime.now(dt.UTC)
    stuck = []
    for run in ledger.latest_close_runs(connection, limit=100):
        if run.status != CloseStatus.RUNNING.value:
            continue
        if (now - run.updated_at).total_seconds() < stale_after:
            continue
        if not chain_alive(lock_for(run.period_name), run.id or 0):
            stuck.append(run)
    return stuck


def open_close(
    ledger: Ledger, connection: str, period_name: str, *, allow_closed: bool, dry_run: bool
) -> tuple[CloseRun, bool]:
    """The open close run of the period (real or dry), or a new one at ``lookup``; returns
    ``(run, created)``. ``allow_closed`` given again is remembered on an existing run."""
    run, created = ledger.open_close_run(connection, period_name, allow_closed, dry_run, step=STEPS[0])
    if created:
        ledger.note(f"close:{run.id}", attempt_note(run, f"started at {run.step}"), connection)
    if not created and allow_closed and not closed_period_allowed(run):
        run = remember_allow_closed(ledger, run)
    return run, created


@dataclass(frozen=True)
class Progress:
    """Counts of a run's journal entries by ledger state."""

    entries: int
    skipped: int
    posted: int
    marked: int
    parked: int
    in_doubt: int


def progress(ledger: Ledger, run: CloseRun) -> Progress:
    """How far the run's entries are (a dry run's are never in the ledger: all zero)."""
    numbers = entries_to_post(run)
    rows = entry_rows(ledger, run.connection, numbers) if not run.dry_run else {}
    by_state: dict[str, int] = {}
    for row in rows.values():
        by_state[row.state] = by_state.get(row.state, 0) + 1
    return Progress(
        entries=len(numbers),
        skipped=len(skipped_entries(run)),
        posted=by_state.get(RecordState.POSTED.value, 0) + by_state.get(RecordState.MARKED.value, 0),
        marked=by_state.get(RecordState.MARKED.value, 0),
        parked=by_state.get(RecordState.PARKED.value, 0),
        in_doubt=by_state.get(RecordState.POSTING.value, 0),
    )
