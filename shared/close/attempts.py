"""A close run's attempts: which one the run is on, which one a resume drives, and when the attempt
a caller follows has an outcome.

A run's attempt 1 begins when the run is opened. An attempt ends with an outcome: the run is
done (or a finished dry run), or it stopped (``needs_attention``, ``failed``). Running the close of
a run that needs attention reopens it, and that starts the next attempt
(:func:`shared.close.driver.take_over`); resuming a running run whose chain died continues the
attempt it is on. The number is stored in ``details["run_attempt"]``
(:class:`~shared.close.state.AttemptState`), and the close's notes in the run's timeline begin
with it (``attempt 2: ...``).

Whoever starts or resumes a run and waits for it (``ledgerbridge close --wait``) asks
:func:`attempt_to_follow` before sending the resume, then waits until :func:`settled`: an
earlier attempt's outcome is never taken for the one it started.
"""

from __future__ import annotations

import datetime as dt

from shared.close.state import AttemptState, step_state
from shared.ledger.models import CloseRun, CloseStatus


def run_attempt(run: CloseRun) -> int:
    """The attempt the run is on (1 for a run never reopened)."""
    return step_state(run, AttemptState).number


def next_attempt(run: CloseRun, now: dt.datetime | None = None) -> AttemptState:
    """The state of the attempt that reopening ``run`` starts."""
    started = (now or dt.datetime.now(dt.UTC)).isoformat()
    return AttemptState(number=run_attempt(run) + 1, started_at=started)


def reopens(run: CloseRun) -> int | None:
    """The attempt a resume of ``run`` as it is now should reopen: the stopped one when the run
    needs attention, else None (a running run is continued, not reopened). A resume sent with this
    number reopens the run only while it is still on that attempt, so two closes started on the
    same stopped attempt start one new attempt between them, not two."""
    return run_attempt(run) if run.status == CloseStatus.NEEDS_ATTENTION.value else None


def attempt_to_follow(run: CloseRun) -> int:
    """The attempt a resume of ``run`` as it is now drives: the next one when the run needs
    attention (the resume reopens it), else the one it is on."""
    return run_attempt(run) + (1 if reopens(run) is not None else 0)


def settled(run: CloseRun, attempt: int) -> bool:
    """Whether the run has an outcome that belongs to ``attempt`` or a later attempt: it is on
    that attempt (or a later one) and no longer running. False while ``attempt`` has not begun:
    the run's status is then an earlier attempt's."""
    return run_attempt(run) >= attempt and run.status != CloseStatus.RUNNING.value


def attempt_note(run: CloseRun, text: str) -> str:
    """A note for the run's timeline, headed by the attempt it belongs to."""
    return f"attempt {run_attempt(run)}: {text}"
