"""What the close tells Finance (through the connection's notifier): it needs attention, or it is
done, with the counts and the reconciled totals.

A notice is recorded in the ledger's notice outbox in the transaction that gives the run its new
status (:func:`when_done`, :func:`when_stopped` are given to ``update_close_run``), and delivered
after the commit (:mod:`shared.outbox`). Its dedupe key is the run, the status and the run's
attempt: one notice per outcome of an attempt."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from shared.close.approval import awaiting_notice
from shared.close.attempts import run_attempt
from shared.close.context import CloseContext, cli_arg
from shared.close.results import Stop
from shared.close.state import ApprovalState, ReconcileState, entries_to_post, skipped_entries, step_state
from shared.ledger.models import CloseRun, CloseStatus
from shared.ledger.notices import NewNotice
from shared.notify import Notice
from shared.outbox import draft


def recorded(notice: Notice, run: CloseRun) -> NewNotice:
    """``notice`` as the outbox records it: one per (run, status, attempt)."""
    return draft(notice, dedupe_key=f"close:{run.id}:{run.status}:attempt-{run_attempt(run)}")


def when_done(ctx: CloseContext) -> Callable[[CloseRun], NewNotice | None]:
    """The notice to record with a run's finishing status: :func:`completed`, for a real close."""
    return lambda run: recorded(completed(ctx, run), run) if run.status == CloseStatus.DONE.value else None


def when_stopped(ctx: CloseContext, stop: Stop) -> Callable[[CloseRun], NewNotice | None]:
    """The notice to record with a stop: :func:`needs_attention` when the run needs attention, the
    approvers' notice when it waits for approval."""

    def notice(run: CloseRun) -> NewNotice | None:
        if run.status == CloseStatus.NEEDS_ATTENTION.value:
            return recorded(needs_attention(ctx, run, stop), run)
        if run.status == CloseStatus.AWAITING_APPROVAL.value:
            state = step_state(run, ApprovalState)
            return draft(
                awaiting_notice(run, state),
                dedupe_key=f"close:{run.id}:awaiting_approval:{state.fingerprint}:{state.requested_at}",
            )
        return None

    return notice


# Stops that people are told of.
TOLD = (CloseStatus.NEEDS_ATTENTION.value, CloseStatus.AWAITING_APPROVAL.value)


def needs_attention(ctx: CloseContext, run: CloseRun, stop: Stop) -> Notice:
    """The notice of a close that stopped: the reason, and the step it stopped at."""
    return Notice(
        event=stop.event,
        text=f"ledgerbridge close of {cli_arg(run.period_name)} on {ctx.connection} needs attention "
        f"(close run {run.id}): {stop.reason}",
        severity="error",
        subject=f"close:{run.id}",
        connection=ctx.connection,
        fields={"close_run": run.id, "period": run.period_name, "step": run.step, **stop.fields},
    )


def completed(ctx: CloseContext, run: CloseRun) -> Notice:
    """The notice of a finished close: entries posted and marked, skipped, and the ERP's totals
    per currency as reconciled."""
    by_currency: dict[str, dict[str, Decimal]] = {}
    for line in step_state(run, ReconcileState).lines:
        cur = by_currency.setdefault(line.currency, {"debit": Decimal(0), "credit": Decimal(0)})
        cur["debit"] += line.erp_debit
        cur["credit"] += line.erp_credit
    count = len(entries_to_post(run))
    skipped = len(skipped_entries(run))
    totals = ", ".join(f"{c} {t['debit']} Dr / {t['credit']} Cr" for c, t in sorted(by_currency.items()))
    text = (
        f"ledgerbridge close of {cli_arg(run.period_name)} on {ctx.connection} is done (close run {run.id}): "
        f"{count} journal entries of journal run {run.journal_run_number} posted to {ctx.erp_name} and "
        f"marked transferred in Zuora"
        + (f", {skipped} skipped" if skipped else "")
        + f"; reconciled to the cent{': ' + totals if totals else ''}."
    )
    return Notice(
        event="close.completed",
        text=text,
        severity="info",
        subject=f"close:{run.id}",
        connection=ctx.connection,
        fields={
            "close_run": run.id,
            "period": run.period_name,
            "journal_run": run.journal_run_number,
            "entries": count,
            "skipped": skipped,
            "totals": by_currency,
        },
    )
