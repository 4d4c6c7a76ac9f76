"""When to read an asynchronous Zuora job again (trial balance, period close, journal run, its
cancellation): few reads, little lateness, and never a sleep - a step returns :class:`Wait`.

Polling: ~0.5 s first, then 1, 1.5, 2 s, then 15 % of the time already waited but at least every
:data:`POLL_FLOOR` seconds (a job of a few seconds is seen within a second of its end; a long
real Zuora job is read rarely), never more than :data:`POLL_CAP` seconds apart.
"""

from __future__ import annotations

from shared.close.context import CloseContext, rerun
from shared.close.results import StopClose, Wait
from shared.close.state import JobState, save_state
from shared.ledger.models import CloseRun

POLL_SCHEDULE = (0.5, 1.0, 1.5, 2.0)
POLL_FLOOR = 1.0
POLL_SHARE = 0.15
MIN_POLL_DELAY = 0.05
POLL_CAP = 30.0
MAX_JOB_WAIT = 12 * 3600.0


def poll_delay(polls: int, elapsed: float, *, cap: float = POLL_CAP) -> float:
    """Seconds before the next status read of an asynchronous Zuora job that has been read
    ``polls`` times over ``elapsed`` seconds: 0.5, 1, 1.5, 2, then 15 % of ``elapsed`` (at
    least 1 s), capped at ``cap``. A 10 s job costs 9 reads and is seen under a second late; a
    real tenant's hour-long trial balance is read about once a ``cap``."""
    if polls < len(POLL_SCHEDULE):
        delay = POLL_SCHEDULE[polls]
    else:
        delay = max(POLL_FLOOR, POLL_SHARE * max(elapsed, 0.0))
    return min(cap, delay)


def next_poll_in(polls: int, elapsed: float) -> float:
    """Seconds from now to the next status read, for a job read ``polls`` times and started
    ``elapsed`` seconds ago: the reads keep to :func:`poll_delay`'s schedule counted from the
    job's start, so the time each read and its task take does not add up over the wait. A job
    waited on for longer than the schedule (a worker was down) is read ``poll_delay`` apart."""
    due = poll_delay(0, 0.0)
    for n in range(1, polls + 1):
        due += poll_delay(n, due)
    if due < elapsed:
        return poll_delay(polls, elapsed)
    return max(MIN_POLL_DELAY, due - elapsed)


def wait_for_job(ctx: CloseContext, run: CloseRun, state: JobState, what: str) -> Wait:
    """Count one status read of the step's job (``state``, the step's state as read from ``run``),
    save it, and say when to read again. A job waited on past :data:`MAX_JOB_WAIT` stops the close."""
    now = ctx.clock()
    started = state.job_started_at or now
    elapsed = now - started
    if elapsed > MAX_JOB_WAIT:
        raise StopClose(
            f"{what} has not finished after {elapsed / 3600:.1f} hours; look at it in Zuora, then run "
            f"`{rerun(run)}` again"
        )
    state.polls += 1
    state.job_started_at = started
    state.seen_running = True
    save_state(ctx, run, state)
    return Wait(next_poll_in(state.polls, elapsed), f"waiting for {what}")


def job_started() -> Wait:
    """The step just started its job: the first read comes after the first schedule delay."""
    return Wait(poll_delay(0, 0.0), "job started")
