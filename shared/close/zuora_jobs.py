"""Steps 1-4 of the close: find the period, then start Zuora's asynchronous jobs and wait for them.

1. ``lookup`` - find the period by name with ZOQL (``Dec'16`` is escaped, zuora-api.md section
   5.2) and cache its id. A Closed period goes straight to ``journal_run`` only with
   ``allow_closed``; otherwise the close stops and says so. The mapping file is validated here,
   before anything changes in Zuora.
2. ``trial_balance`` - start a trial balance unless one already completed for the period, and
   poll ``GET /v1/accounting-periods/{id}`` (section 6.2). ``Error`` stops the close with Zuora's
   ``runTrialBalanceErrorMessage``; a stopped run never polls again.
3. ``close_period`` - close the period when Open (or PendingClose) and wait for the trial
   balance the close starts. A dry run leaves the period open.
4. ``journal_run`` - ``POST /v1/journal-runs`` with the configured transaction types and a
   deterministic Idempotency-Key (close run, attempt, period, types), so a retried start never
   makes a second run; poll until ``Completed``; stop on ``Error``, ``CancelInprogress``,
   ``Cancelled`` or ``DeleteInprogress`` (section 7.2).

Each step records the intent to start a job before the request that starts it, so a job found
after a crash is known to be the close's own.
"""

from __future__ import annotations

import datetime as dt

from shared.close.context import CloseContext, cli_arg, period_id, rerun
from shared.close.polling import job_started, wait_for_job
from shared.close.results import Done, StepResult, StopClose
from shared.close.state import (
    ClosePeriodState,
    JournalRunState,
    LookupState,
    TrialBalanceState,
    closed_period_allowed,
    save_state,
    step_state,
)
from shared.errors import Rejected
from shared.ledger.models import CloseRun

# A closed period whose first read shows the pre-close trial balance (same end time, never seen
# running) is read once more before that is taken as the close's own (Zuora may register the new
# one a moment late; the sandbox's fast jobs can end within the same second).
STALE_TRIAL_BALANCE_POLLS = 1


def step_lookup(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 1: find the period by name (ZOQL), cache its id; Closed needs ``allow_closed``."""
    ctx.mapping()  # a broken mapping file stops the close before anything changes in Zuora
    period = ctx.zuora.periods.find_by_name(run.period_name)
    if period is None:
        raise StopClose(
            f"there is no accounting period named {cli_arg(run.period_name)} in Zuora; check the name "
            "(it must match exactly, including case and apostrophes)"
        )
    found = LookupState(
        period_id=period.id,
        status=period.status,
        start_date=period.start_date.isoformat() if period.start_date else None,
        end_date=period.end_date.isoformat() if period.end_date else None,
    )
    ctx.ledger.update_close_run(run.id or 0, period_id=period.id)
    if period.status == "Closed":
        if not closed_period_allowed(run):
            raise StopClose(
                f"accounting period {cli_arg(run.period_name)} is already Closed in Zuora, so there is no "
                "trial balance to run and nothing to close. To run the journal run and post its entries "
                f"anyway, run `{rerun(run, allow_closed=True)}`"
            )
        found.skipped = "period already Closed (--allow-closed)"
        return Done("journal_run", found)
    return Done("trial_balance", found)


def _trial_balance_error(run: CloseRun, message: str | None, *, after_close: bool) -> StopClose:
    text = (message or "").strip().rstrip(".") or "(Zuora gave no message)"  # one full stop after it
    if after_close:
        advice = (
            "The period is Closed; reopen it in Zuora, fix the cause (for example import the missing "
            f"exchange rate), then run `{rerun(run)}` again."
        )
        where = "after closing it"
    else:
        advice = (
            "The period was not closed and nothing was posted or marked. Fix the cause in Zuora (for "
            f"example import the missing exchange rate), then run `{rerun(run)}` again."
        )
        where = "before closing it"
    return StopClose(
        f"the trial balance of accounting period {cli_arg(run.period_name)} failed in Zuora {where}: "
        f"{text}. {advice}",
        event="close.trial_balance_error",
        fields={"period": run.period_name, "runTrialBalanceErrorMessage": message},
    )


def step_trial_balance(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 2: start a trial balance unless one completed, and wait for it; Error stops."""
    pid = period_id(run)
    st = step_state(run, TrialBalanceState)
    period = ctx.zuora.periods.get(pid)
    status = period.run_trial_balance_status
    if period.status == "Closed":
        return Done("close_period", TrialBalanceState(skipped="the period is already Closed"))
    if status in ("Pending", "Processing"):
        return wait_for_job(ctx, run, st, f"the trial balance of {run.period_name}")
    if period.trial_balance_completed:
        return Done(
            "close_period",
            TrialBalanceState(completed_at=str(period.run_trial_balance_end), ours=st.requested),
        )
    if status == "Error" and (st.requested or st.seen_running):
        st.error_message = period.run_trial_balance_error_message
        save_state(ctx, run, st)
        raise _trial_balance_error(run, period.run_trial_balance_error_message, after_close=False)
    if period.status != "Open":
        raise StopClose(
            f"accounting period {cli_arg(run.period_name)} is {period.status} and its trial balance is "
            f"{status or 'not run'}; Zuora only runs a trial balance on an Open period. Reopen it or "
            f"finish the trial balance in Zuora, then run `{rerun(run)}` again."
        )
    # Record the intent before the PUT: an Error seen after a crash is then known to be ours.
    st.requested = True
    st.job_started_at = ctx.clock()
    st.polls = 0
    run = save_state(ctx, run, st)
    try:
        ctx.zuora.periods.run_trial_balance(pid)
    except Rejected as exc:
        # A retried PUT after an unseen success is refused (already running): re-read first.
        period = ctx.zuora.periods.get(pid)
        if period.run_trial_balance_status not in ("Pending", "Processing", "Completed"):
            raise StopClose(
                f"Zuora refused to start a trial balance for {cli_arg(run.period_name)}: {exc}"
            ) from None
    ctx.reached("trial_balance:started")
    return job_started()


def step_close_period(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 3: close the period if Open (or PendingClose) and wait for the trial balance the
    close starts. A dry run leaves the period as it is."""
    pid = period_id(run)
    if run.dry_run:
        return Done("journal_run", ClosePeriodState(skipped="dry run: the period is left open"))
    st = step_state(run, ClosePeriodState)
    period = ctx.zuora.periods.get(pid)
    if period.status in ("Open", "PendingClose"):
        if period.run_trial_balance_status in ("Pending", "Processing"):
            return wait_for_job(ctx, run, st, f"the trial balance of {run.period_name}")
        st.requested = True
        st.job_started_at = ctx.clock()
        st.polls = 0
        st.previous_end = str(period.run_trial_balance_end)
        run = save_state(ctx, run, st)
        try:
            ctx.zuora.periods.close(pid)
        except Rejected as exc:
            period = ctx.zuora.periods.get(pid)
            if period.status != "Closed":
                raise StopClose(
                    f"Zuora refused to close accounting period {cli_arg(run.period_name)}: {exc}. Nothing "
                    f"was posted or marked. Fix it in Zuora, then run `{rerun(run)}` again."
                ) from None
        ctx.reached("close_period:closed")
        return job_started()
    status = period.run_trial_balance_status
    if status in ("Pending", "Processing"):
        return wait_for_job(ctx, run, st, f"the trial balance of closed period {run.period_name}")
    if status == "Error":
        st.error_message = period.run_trial_balance_error_message
        save_state(ctx, run, st)
        raise _trial_balance_error(run, period.run_trial_balance_error_message, after_close=True)
    if (
        st.requested
        and not st.seen_running
        and status == "Completed"
        and str(period.run_trial_balance_end) == st.previous_end
        and st.polls < STALE_TRIAL_BALANCE_POLLS
    ):
        # Still the trial balance from before the close: the one the close starts may not show yet.
        return wait_for_job(ctx, run, st, f"the trial balance of closed period {run.period_name}")
    return Done("journal_run", ClosePeriodState(closed=True, ours=st.requested))


def step_journal_run(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 4: start the journal run (Idempotency-Key per close run and attempt) and wait."""
    st = step_state(run, JournalRunState)
    number = st.number
    if not number:
        attempt = st.attempt
        types = list(ctx.transaction_types())
        end = step_state(run, LookupState).end_date
        if not end:
            raise StopClose(
                f"close run {run.id} does not know the period's end date; run it again from the start"
            )
        entry_date = dt.date.fromisoformat(end[:10])
        key = (
            "close.journal-run",
            str(run.id),
            str(attempt),
            run.period_name,
            entry_date.isoformat(),
            *types,
        )
        st.attempt = attempt  # stored with the request: its Idempotency-Key depends on it
        st.transaction_types = types
        st.journal_entry_date = entry_date.isoformat()
        run = save_state(ctx, run, st)
        number = ctx.zuora.journal_runs.create(run.period_name, entry_date, types, idempotency_key=key)
        ctx.reached("journal_run:created")
        st.number = number
        st.job_started_at = ctx.clock()
        st.polls = 0
        run = save_state(ctx, run, st)
        ctx.ledger.update_close_run(run.id or 0, journal_run_number=number)
        return job_started()
    journal_run = ctx.zuora.journal_runs.get(number)
    if journal_run.completed:
        return Done(
            "fetch",
            JournalRunState(status=journal_run.status, total_entries=journal_run.total_journal_entry_count),
        )
    if journal_run.failed:
        raise StopClose(
            f"journal run {number} for accounting period {cli_arg(run.period_name)} ended with status "
            f"{journal_run.status} in Zuora; nothing was posted or marked. Look at the run in Zuora "
            f"(Finance > Journal Runs), fix the cause, then run `{rerun(run)}` again: a new journal "
            "run is started.",
            event="close.journal_run_failed",
            fields={"journal_run": number, "status": journal_run.status},
        )
    return wait_for_job(ctx, run, st, f"journal run {number}")
