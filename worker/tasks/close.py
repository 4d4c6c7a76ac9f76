"""The summary-GL close as a chain of thin Celery tasks, one per step of :mod:`shared.close`.

``ledgerbridge.close.resume(close_run_id=, connection=, reopen=)`` becomes the run's driver (its
task id is the driver token) and enqueues the task of the run's recorded step (``reopen``: the
stopped attempt the sender saw; a run already past it is not reopened again). Each step task
(``ledgerbridge.close.lookup`` ... ``ledgerbridge.close.reconcile``, ``ledgerbridge.close.discard``)
takes ``close_run_id``, ``connection`` and ``driver``, runs the step under the close lock, and:

* ``Done`` - the result is committed; the next step's task is enqueued with the same driver;
* ``Wait`` - ``self.retry(countdown=...)`` (capped at ``MAX_COUNTDOWN``), never a sleep;
* ``Stop`` / ``Stale`` - the chain ends (a stop is on the run, its notice in the outbox and its
  delivery enqueued: ``ledgerbridge.notices.deliver``).

Re-enqueueing ``resume`` after any crash continues at the recorded step; tasks of an older chain
find another driver's token on the lock and end without doing anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from celery import Task

from shared import ports
from shared.close.approval import record_maker
from shared.close.attempts import attempt_to_follow, reopens
from shared.close.context import CloseContext
from shared.close.driver import Resumed, chain_alive, drive_step, open_close, stuck_runs, take_over
from shared.close.fanout import step_widths
from shared.close.results import FINISHED, Done, Stale, Stop, Wait
from shared.connections import Connection
from shared.coordination.close_lock import CloseLock
from shared.ledger.models import CloseRun, CloseStatus
from worker.app import INFRA_RETRY, MAX_COUNTDOWN, app
from worker.wiring import deliver_notices_now, notifier

ERP_NAMES = {"acumatica": "Acumatica", "file": "the GL file export"}

# API failures never reach INFRA_RETRY: the steps turn them into Wait or Stop.


def context(connection: str | None) -> CloseContext:
    """The close context of a connection, built from the process's long-lived clients."""
    conn: Connection = ports.connection(connection)
    post_width, mark_width = step_widths(
        conn.zuora.max_concurrent, conn.acumatica.max_concurrent if conn.acumatica is not None else None
    )
    return CloseContext(
        connection=conn.name,
        zuora=ports.zuora(conn),
        erp=ports.erp(conn),
        ledger=ports.ledger(),
        settings=ports.settings(),
        notifier=notifier(),
        deliver_notices=deliver_notices_now,
        erp_name=ERP_NAMES.get(conn.erp_kind, conn.erp_kind),
        concurrency=post_width,
        mark_concurrency=mark_width,
        approval=conn.approval,
    )


def lock_for(connection: str, period_name: str) -> CloseLock:
    return CloseLock(ports.redis_client(), connection, period_name)


def _countdown(seconds: float) -> float:
    return max(0.0, min(float(seconds), float(MAX_COUNTDOWN)))


def _enqueue(step: str, *, close_run_id: int, connection: str, driver: str) -> None:
    """Send the task of ``step`` (its result is already committed). A failed send is noted on
    the run before it propagates, so the run shows why it stopped moving."""
    try:
        STEP_TASKS[step].apply_async(
            kwargs={"close_run_id": close_run_id, "connection": connection, "driver": driver}
        )
    except Exception as exc:
        ports.ledger().note(
            f"close:{close_run_id}", f"could not enqueue step {step}: {exc}; run the close again", connection
        )
        raise


def _summary(result: object, close_run_id: int) -> dict[str, Any]:
    if isinstance(result, Done):
        return {"close_run_id": close_run_id, "result": "done", "next_step": result.next_step}
    if isinstance(result, Stop):
        return {"close_run_id": close_run_id, "result": result.status, "reason": result.reason}
    if isinstance(result, Stale):
        return {"close_run_id": close_run_id, "result": "stale", "reason": result.reason}
    return {"close_run_id": close_run_id, "result": type(result).__name__.lower()}


def _drive(task: Task, step: str, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    ctx = context(connection)
    run = ctx.ledger.get_close_run(close_run_id)
    result = drive_step(ctx, lock_for(ctx.connection, run.period_name), close_run_id, step, driver)
    if isinstance(result, Wait):
        raise task.retry(countdown=_countdown(result.seconds), max_retries=None)
    if isinstance(result, Done) and result.next_step != FINISHED:
        _enqueue(result.next_step, close_run_id=close_run_id, connection=ctx.connection, driver=driver)
    return _summary(result, close_run_id)


@app.task(bind=True, name="ledgerbridge.close.resume", **INFRA_RETRY)
def resume(
    self: Task, *, close_run_id: int, connection: str | None = None, reopen: int | None = None
) -> dict[str, Any]:
    """Drive the run from its recorded step (reopening it as its next attempt if it needs
    attention and, when ``reopen`` is given, is still on that attempt)."""
    ctx = context(connection)
    run = ctx.ledger.get_close_run(close_run_id)
    driver = str(self.request.id or uuid.uuid4())
    outcome = take_over(ctx, lock_for(ctx.connection, run.period_name), close_run_id, driver, reopen=reopen)
    if isinstance(outcome, Wait):
        raise self.retry(countdown=_countdown(outcome.seconds), max_retries=None)
    if isinstance(outcome, Resumed):
        _enqueue(outcome.step, close_run_id=close_run_id, connection=ctx.connection, driver=driver)
        return {"close_run_id": close_run_id, "result": "resumed", "step": outcome.step, "driver": driver}
    return _summary(outcome, close_run_id)


@app.task(bind=True, name="ledgerbridge.close.lookup", **INFRA_RETRY)
def lookup(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 1: find the period by name and cache its id."""
    return _drive(self, "lookup", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.trial_balance", **INFRA_RETRY)
def trial_balance(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 2: run the trial balance and wait for it."""
    return _drive(self, "trial_balance", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.close_period", **INFRA_RETRY)
def close_period(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 3: close the period and wait for its trial balance."""
    return _drive(self, "close_period", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.journal_run", **INFRA_RETRY)
def journal_run(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 4: start the journal run and wait for it."""
    return _drive(self, "journal_run", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.fetch", **INFRA_RETRY)
def fetch(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 5: fetch every summary journal entry of the run."""
    return _drive(self, "fetch", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.check", **INFRA_RETRY)
def check(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 6: check balance and mapping; park bad entries."""
    return _drive(self, "check", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.post", **INFRA_RETRY)
def post(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 7: post each entry to the ERP exactly once."""
    return _drive(self, "post", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.mark", **INFRA_RETRY)
def mark(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 8: mark each entry transferredToAccounting=Yes."""
    return _drive(self, "mark", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.verify", **INFRA_RETRY)
def verify(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 9: re-read the run; every entry Yes with an ERP reference."""
    return _drive(self, "verify", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.reconcile", **INFRA_RETRY)
def reconcile(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Step 10: Zuora = ledger = ERP totals per account and currency."""
    return _drive(self, "reconcile", close_run_id, connection, driver)


@app.task(bind=True, name="ledgerbridge.close.discard", **INFRA_RETRY)
def discard(self: Task, *, close_run_id: int, connection: str, driver: str) -> dict[str, Any]:
    """Dry run only: cancel the dry run's journal run."""
    return _drive(self, "discard", close_run_id, connection, driver)


STEP_TASKS: dict[str, Task] = {
    "lookup": lookup,
    "trial_balance": trial_balance,
    "close_period": close_period,
    "journal_run": journal_run,
    "fetch": fetch,
    "check": check,
    "post": post,
    "mark": mark,
    "verify": verify,
    "reconcile": reconcile,
    "discard": discard,
}


@app.task(name="ledgerbridge.close.sweep", **INFRA_RETRY)
def sweep(*, connection: str | None = None, stale_after: float = 900.0) -> dict[str, Any]:
    """Resume the connection's close runs that are running but driven by no live chain (for a
    beat entry: a killed worker or a flushed Redis then delays a close, never strands it)."""
    name = connection or ports.settings().connection
    stuck = stuck_runs(ports.ledger(), name, lambda period: lock_for(name, period), stale_after=stale_after)
    for run in stuck:
        resume.apply_async(kwargs={"close_run_id": run.id, "connection": name})
    return {"connection": name, "resumed": [run.id for run in stuck]}


@dataclass(frozen=True)
class Started:
    """What ``start_close`` did: ``action`` is ``started`` (a new run), ``resumed`` (an existing
    run re-driven), ``attached`` (a live chain already drives it) or ``awaiting_approval`` (the
    run waits for an approver; nothing was sent); ``attempt`` is the run's
    attempt that this drives (:mod:`shared.close.attempts`): the next one when the run needed
    attention, else the one it is on."""

    run: CloseRun
    action: str
    attempt: int


def start_close(
    connection: str, period_name: str, *, allow_closed: bool, dry_run: bool, started_by: str | None = None
) -> Started:
    """Open (or find) the period's close run and make sure a chain drives it: a second close of a
    period being closed attaches to the running chain instead of starting another. ``started_by``
    (who asks) is kept on a new run: that person may not approve what it will post."""
    ledger = ports.ledger()
    run, created = open_close(ledger, connection, period_name, allow_closed=allow_closed, dry_run=dry_run)
    if created:
        run = record_maker(ledger, run, started_by)
    if run.status == CloseStatus.AWAITING_APPROVAL.value:
        return Started(run, "awaiting_approval", attempt_to_follow(run))
    if (
        not created
        and run.status == CloseStatus.RUNNING.value
        and chain_alive(lock_for(connection, period_name), run.id or 0)
    ):
        return Started(run, "attached", attempt_to_follow(run))
    resume.apply_async(kwargs={"close_run_id": run.id, "connection": connection, "reopen": reopens(run)})
    return Started(run, "started" if created else "resumed", attempt_to_follow(run))
