"""Maker-checker for the close: what a close will post waits for a second person's approval.

A connection's ``approval`` setting (:data:`shared.connections.APPROVAL_MODES`) is ``none``,
``close`` or ``all``. With ``close`` (and ``all``), the check step of a real close - once every
entry balances and maps - records what the close will post (:func:`request`: each journal with
its lines, the totals per ERP account and currency, and a fingerprint of each journal as it will
be sent) and the run stops in ``awaiting_approval`` instead of going on to ``post``. Nothing has
been posted; the period is closed in Zuora and its journal run is complete.

An approver who did not start the run (nor start any of its attempts) decides with a comment
(:func:`decide`):

* **approve** - the run is set running again at ``check``, which re-reads the entries and re-maps
  them. The journals it finds are compared with those approved, fingerprint by fingerprint: when
  each was approved (the mapping file and the entries are as they were) the check goes straight on
  to ``post``; a journal that changed since, or one never shown, is asked for again. What is
  posted is therefore always what someone approved, even when the mapping file was edited between
  the approval and the post.
* **reject** - the run needs a person (its error names who rejected it and why). Running the close
  again re-checks and asks for approval again.

Every decision is kept on the run (:class:`~shared.close.state.ApprovalState`), written to the
run's timeline with the user as its actor, and told to people through the notice outbox.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from shared.close.attempts import attempt_note, run_attempt
from shared.close.context import cli_arg, rerun
from shared.close.state import (
    AccountTotal,
    ApprovalDecision,
    ApprovalState,
    LookupState,
    PreviewEntry,
    ReconcileState,
    details_update,
    step_state,
    stored_state,
)
from shared.ledger.errors import TransitionConflict
from shared.ledger.models import CloseRun, CloseStatus
from shared.ledger.notices import NewNotice
from shared.ledger.repo import Ledger
from shared.notify import Notice
from shared.outbox import draft

APPROVED = "approved"
REJECTED = "rejected"
# The longest comment kept with a decision.
MAX_COMMENT = 2000


class ApprovalRefused(ValueError):
    """A decision that cannot be taken; the message says why and what to do instead."""


def comment_problem(comment: str, *, approve: bool) -> str | None:
    """Why ``comment`` cannot go with a decision (None: it can): a rejection must say what to
    fix, and no comment is longer than :data:`MAX_COMMENT`. For closes and manual journal entries
    alike."""
    if not approve and not comment:
        return "a rejection needs a comment that says what to fix"
    if len(comment) > MAX_COMMENT:
        return f"the comment is {len(comment)} characters; keep it under {MAX_COMMENT}"
    return None


def approval_required(mode: str) -> bool:
    """Whether a connection with approval ``mode`` holds its closes for approval."""
    return mode in ("close", "all")


def journal_fingerprint(entry: PreviewEntry) -> str:
    """A digest of one journal exactly as it will be sent (number, date, currency, every line)."""
    text = json.dumps(entry.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_fingerprint(entries: Iterable[PreviewEntry]) -> str:
    """A digest of a set of journals (their own fingerprints, in order of number)."""
    parts = sorted((entry.number, journal_fingerprint(entry)) for entry in entries)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def account_totals(entries: Iterable[PreviewEntry]) -> list[AccountTotal]:
    """Debit and credit per (ERP account, currency) over ``entries``, sorted."""
    sums: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for entry in entries:
        for line in entry.lines:
            key = (line.account, entry.currency)
            debit, credit = sums.get(key, (Decimal(0), Decimal(0)))
            sums[key] = (debit + line.debit, credit + line.credit)
    return [
        AccountTotal(account=account, currency=currency, debit=debit, credit=credit)
        for (account, currency), (debit, credit) in sorted(sums.items())
    ]


def approved_journals(state: ApprovalState) -> set[str]:
    """The fingerprints of every journal an approver has approved on this run."""
    return {
        fingerprint
        for decision in state.decisions
        if decision.decision == APPROVED
        for fingerprint in decision.journals
    }


def request(
    run: CloseRun, entries: list[PreviewEntry], now: dt.datetime | None = None
) -> ApprovalState | None:
    """The approval the check step asks for before ``entries`` are posted, or None when nothing
    needs one: no entries, or each was approved before exactly as it is now."""
    state = step_state(run, ApprovalState)
    if not entries:
        return None
    approved = approved_journals(state)
    if all(journal_fingerprint(entry) in approved for entry in entries):
        return None
    state.requested_at = (now or dt.datetime.now(dt.UTC)).isoformat()
    state.attempt = run_attempt(run)
    state.entries = entries
    state.totals = account_totals(entries)
    state.fingerprint = run_fingerprint(entries)
    return state


def awaiting_reason(run: CloseRun, state: ApprovalState) -> str:
    """The run's message while it waits for approval."""
    who = f" (started by {state.started_by})" if state.started_by else ""
    return (
        f"{len(state.entries)} journal entries are checked and wait for approval before they are posted{who}; "
        f"an approver who did not start the close approves or rejects them with "
        f"`ledgerbridge close-approve {run.id} --as NAME --comment TEXT` (or `close-reject`) or in the console"
    )


def makers(state: ApprovalState) -> list[str]:
    """Who may not decide on the run: the person who started it."""
    return [state.started_by] if state.started_by else []


def record_maker(ledger: Ledger, run: CloseRun, user: str | None) -> CloseRun:
    """Remember that ``user`` started the run (kept from the first start: a later start of the
    same run resumes it and is in its timeline)."""
    state = step_state(run, ApprovalState)
    if not user or state.started_by is not None:
        return run
    state.started_by = user
    return ledger.update_close_run(run.id or 0, details_update=details_update(state))


@dataclass(frozen=True)
class AccountChange:
    """One (account, currency) line of what a close will post, beside the previous period's."""

    account: str
    currency: str
    debit: Decimal
    credit: Decimal
    previous_debit: Decimal | None
    previous_credit: Decimal | None

    @property
    def net(self) -> Decimal:
        return self.debit - self.credit

    @property
    def change(self) -> Decimal | None:
        """Net debit now minus the previous period's (None: the account was not posted then)."""
        if self.previous_debit is None or self.previous_credit is None:
            return None
        return self.net - (self.previous_debit - self.previous_credit)


@dataclass(frozen=True)
class ApprovalView:
    """What an approver is shown: the run, what it will post, and the decisions so far."""

    run_id: int
    connection: str
    period_name: str
    status: str
    attempt: int
    started_by: str | None
    requested_at: str | None
    fingerprint: str | None
    entries: list[PreviewEntry]
    totals: list[AccountChange]
    previous_run_id: int | None
    previous_period: str | None
    decisions: list[ApprovalDecision]

    @property
    def awaiting(self) -> bool:
        return self.status == CloseStatus.AWAITING_APPROVAL.value


def previous_close(ledger: Ledger, run: CloseRun) -> CloseRun | None:
    """The connection's finished real close of the period before ``run``'s: the latest period that
    ended before this one starts (by the dates the lookup step read from Zuora); for runs without
    those dates, the last such close opened before ``run``."""
    starts = step_state(run, LookupState).start_date
    best: tuple[str, int, CloseRun] | None = None
    for other in ledger.latest_close_runs(run.connection, limit=200):
        if other.dry_run or other.status != CloseStatus.DONE.value or other.period_name == run.period_name:
            continue
        ended = step_state(other, LookupState).end_date
        if starts and ended:
            if ended < starts and (best is None or (ended, other.id or 0) > best[:2]):
                best = (ended, other.id or 0, other)
        elif (other.id or 0) < (run.id or 0) and best is None:
            best = ("", other.id or 0, other)
    return best[2] if best is not None else None


def approval_view(ledger: Ledger, run_id: int) -> ApprovalView:
    """What close run ``run_id`` will post, with the previous period's totals per account and
    currency (as reconciled) and every decision taken on it."""
    run = ledger.get_close_run(run_id)
    state = step_state(run, ApprovalState)
    previous = previous_close(ledger, run)
    before: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    if previous is not None:
        reconciled = stored_state(previous, ReconcileState)
        for line in reconciled.lines if reconciled is not None else []:
            before[(line.account, line.currency)] = (line.ledger_debit, line.ledger_credit)
    totals = []
    for total in state.totals:
        prev = before.get((total.account, total.currency))
        totals.append(
            AccountChange(
                account=total.account,
                currency=total.currency,
                debit=total.debit,
                credit=total.credit,
                previous_debit=prev[0] if prev else (Decimal(0) if previous is not None else None),
                previous_credit=prev[1] if prev else (Decimal(0) if previous is not None else None),
            )
        )
    return ApprovalView(
        run_id=run.id or 0,
        connection=run.connection,
        period_name=run.period_name,
        status=run.status,
        attempt=run_attempt(run),
        started_by=state.started_by,
        requested_at=state.requested_at,
        fingerprint=state.fingerprint,
        entries=list(state.entries),
        totals=totals,
        previous_run_id=previous.id if previous is not None else None,
        previous_period=previous.period_name if previous is not None else None,
        decisions=list(state.decisions),
    )


def decide(
    ledger: Ledger,
    run_id: int,
    *,
    user: str,
    approve: bool,
    comment: str,
    now: dt.datetime | None = None,
) -> CloseRun:
    """Record ``user``'s decision on close run ``run_id`` and move the run on: approved, it runs
    again from ``check`` (the caller resumes its chain); rejected, it needs a person. Raises
    :class:`ApprovalRefused` when the run is not awaiting approval, when ``user`` started it, or
    when a rejection has no comment. Role checks are the caller's (console, CLI)."""
    user = user.strip()
    comment = comment.strip()
    if not user:
        raise ApprovalRefused("say who decides: a user name is needed")
    run = ledger.get_close_run(run_id)
    if run.status != CloseStatus.AWAITING_APPROVAL.value:
        raise ApprovalRefused(
            f"close run {run_id} is {run.status}, not awaiting approval: there is nothing to decide"
        )
    state = step_state(run, ApprovalState)
    if user in makers(state):
        raise ApprovalRefused(
            f"{user} started close run {run_id}, so {user} cannot approve or reject it: "
            "another approver must (maker-checker)"
        )
    problem = comment_problem(comment, approve=approve)
    if problem:
        raise ApprovalRefused(problem)
    at = (now or dt.datetime.now(dt.UTC)).isoformat()
    decision = ApprovalDecision(
        user=user,
        decision=APPROVED if approve else REJECTED,
        comment=comment,
        at=at,
        attempt=run_attempt(run),
        journals=[journal_fingerprint(entry) for entry in state.entries] if approve else [],
    )
    state.decisions = [*state.decisions, decision]
    if approve:
        status, error = CloseStatus.RUNNING.value, None
    else:
        status = CloseStatus.NEEDS_ATTENTION.value
        error = (
            f"rejected by {user}: {comment}. Fix what the comment asks for, then run "
            f"`{rerun(run)}` again: the close checks the entries again and asks for approval again."
        )
    try:
        updated = ledger.update_close_run(
            run_id,
            step="check",  # either way the run goes on from the check: now, or at its next attempt
            status=status,
            error=error,
            details_update=details_update(state),
            notice=_decision_notice(decision, error),
            expect_status=CloseStatus.AWAITING_APPROVAL.value,
        )
    except TransitionConflict as exc:
        raise ApprovalRefused(str(exc)) from None
    verb = "approved" if approve else "rejected"
    text = f"{verb} by {user}" + (f": {comment}" if comment else "")
    ledger.note(f"close:{run_id}", attempt_note(updated, text), run.connection, actor=user)
    return updated


def _decision_notice(decision: ApprovalDecision, error: str | None) -> Callable[[CloseRun], NewNotice | None]:
    def notice(run: CloseRun) -> NewNotice:
        approved = decision.decision == APPROVED
        text = (
            f"ledgerbridge close of {cli_arg(run.period_name)} on {run.connection} (close run {run.id}) was "
            + (f"approved by {decision.user}; it goes on to post." if approved else f"{error}")
        )
        return draft(
            Notice(
                event="close.approved" if approved else "close.rejected",
                text=text,
                severity="info" if approved else "error",
                subject=f"close:{run.id}",
                connection=run.connection,
                fields={
                    "close_run": run.id,
                    "period": run.period_name,
                    "user": decision.user,
                    "decision": decision.decision,
                    "comment": decision.comment,
                },
            ),
            dedupe_key=f"close:{run.id}:{decision.decision}:{decision.at}",
        )

    return notice


def awaiting_notice(run: CloseRun, state: ApprovalState) -> Notice:
    """The notice that tells the approvers a close waits for them."""
    totals = ", ".join(
        f"{currency} {debit} Dr / {credit} Cr"
        for currency, (debit, credit) in sorted(_by_currency(state.totals).items())
    )
    return Notice(
        event="close.awaiting_approval",
        text=(
            f"ledgerbridge close of {cli_arg(run.period_name)} on {run.connection} (close run {run.id}) waits for "
            f"approval: {len(state.entries)} journal entries{': ' + totals if totals else ''}. "
            f"An approver who did not start it approves or rejects it in the console or with "
            f"`ledgerbridge close-approve {run.id} --as NAME`."
        ),
        severity="warning",
        subject=f"close:{run.id}",
        connection=run.connection,
        fields={
            "close_run": run.id,
            "period": run.period_name,
            "entries": len(state.entries),
            "started_by": state.started_by,
        },
    )


def _by_currency(totals: Iterable[AccountTotal]) -> dict[str, tuple[Decimal, Decimal]]:
    sums: dict[str, tuple[Decimal, Decimal]] = {}
    for total in totals:
        debit, credit = sums.get(total.currency, (Decimal(0), Decimal(0)))
        sums[total.currency] = (debit + total.debit, credit + total.credit)
    return sums
