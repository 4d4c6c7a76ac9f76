"""Steps 5 and 6 of the close, and the dry run's last: the journal run's entries, fetched and checked.

5. ``fetch`` - every summary journal entry of the run, all pages, each upserted as a
   ``SyncRecord(object_type="journal_entry", zuora_id=<JE number>)`` in ``pending``.
6. ``check`` - debits equal credits (Decimal, exact), every accounting code and the currency are
   in the mapping file. A bad entry is parked with its reasons and the close stops before posting
   anything; entries parked earlier that now pass go back to ``pending``. On a connection that
   asks for approval (:mod:`shared.close.approval`), a real close stops here ``awaiting_approval``
   until an approver approves the journals it will post. A dry run stops here
   with a preview of what would be posted, then ``discard`` cancels its journal run (so the real
   close books the same transactions) and the run ends ``dry_run``.
"""

from __future__ import annotations

from decimal import Decimal

from shared.close.approval import approval_required, awaiting_reason
from shared.close.approval import request as approval_request
from shared.close.context import JE, POSTED_STATES, CloseContext, entry_rows, journal_run_number, rerun
from shared.close.journals import journal_payload
from shared.close.polling import job_started, wait_for_job
from shared.close.results import FINISHED, Done, StepResult, Stop, StopClose
from shared.close.state import (
    CheckState,
    DebitCredit,
    DiscardState,
    FetchState,
    JournalRunState,
    PreviewEntry,
    PreviewLine,
    details_update,
    journal_numbers,
    save_state,
    step_state,
)
from shared.erp.base import Journal
from shared.errors import Rejected
from shared.ledger import states
from shared.ledger.models import CloseRun, CloseStatus, RecordSource, RecordState, SyncRecord
from shared.mapping import Mapping as GlMapping
from shared.mapping import MappingError, Unmapped, journal_from_summary_entry
from shared.zuora.journal import JournalEntry


def step_fetch(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 5: every summary journal entry of the run, all pages, into the ledger (pending)."""
    number = journal_run_number(run)
    numbers: list[str] = []
    pages = 0
    for page in ctx.zuora.journal_entries.list_by_run(number):
        pages += 1
        if not run.dry_run:
            with ctx.ledger.session() as session:
                for entry in page.entries:
                    states.upsert_pulled(
                        session,
                        connection=ctx.connection,
                        object_type=JE,
                        zuora_id=entry.number,
                        zuora_number=entry.number,
                        zuora_updated=None,
                        payload=dict(entry.raw),
                        account_id=None,
                        source=RecordSource.CLOSE.value,
                        period_name=run.period_name,
                        close_run_id=run.id,
                    )
        numbers += [e.number for e in page.entries if e.number not in numbers]
    expected = step_state(run, JournalRunState).total_entries
    if expected is not None and expected > len(numbers):
        raise StopClose(
            f"journal run {number} reports {expected} journal entries but Zuora listed only {len(numbers)}; "
            f"nothing was posted. Run `{rerun(run)}` again to re-read them."
        )
    return Done("check", FetchState(journal_run=number, numbers=numbers, count=len(numbers), pages=pages))


def skip_reason(entry: JournalEntry) -> str | None:
    """Why the close leaves ``entry`` out (None: it posts it)."""
    if entry.status == "Cancelled":
        return "Cancelled in Zuora"
    if entry.transferred_to_accounting == "Ignore":
        return "transferredToAccounting is Ignore in Zuora"
    return None


def check_entry(entry: JournalEntry, mapping: GlMapping) -> list[str]:
    """Every reason the entry cannot be posted (empty: it can): out of balance (exact Decimal
    comparison, in the transaction and - when given - the home currency), an unmapped accounting
    code or currency, an item that is neither Debit nor Credit, no items."""
    reasons: list[str] = []
    if not entry.items:
        reasons.append("it has no journal entry items")
    for item in entry.items:
        if item.type not in ("Debit", "Credit"):
            reasons.append(f"an item on {item.accounting_code_name!r} is {item.type!r}, not Debit or Credit")
    debit, credit = entry.totals()
    currency = entry.currency or "?"
    if debit != credit:
        reasons.append(
            f"out of balance: debits {debit} {currency} != credits {credit} {currency} "
            f"(difference {debit - credit})"
        )
    homes = [i.home_currency_amount for i in entry.items]
    if entry.items and all(h is not None for h in homes):
        home_debit = sum(
            (i.home_currency_amount or Decimal(0) for i in entry.items if i.type == "Debit"), Decimal(0)
        )
        home_credit = sum(
            (i.home_currency_amount or Decimal(0) for i in entry.items if i.type == "Credit"), Decimal(0)
        )
        if home_debit != home_credit:
            home = entry.home_currency or "home currency"
            reasons.append(
                f"out of balance in {home}: debits {home_debit} != credits {home_credit} "
                f"(difference {home_debit - home_credit})"
            )
    codes = sorted({item.accounting_code_name or "" for item in entry.items})
    for code in codes:
        try:
            mapping.account(code)
        except Unmapped as exc:
            reasons.append(str(exc))
    try:
        mapping.currency(entry.currency or "")
    except Unmapped as exc:
        reasons.append(str(exc))
    return reasons


def _dry_run_entries(ctx: CloseContext, run: CloseRun) -> list[JournalEntry]:
    entries: list[JournalEntry] = []
    for page in ctx.zuora.journal_entries.list_by_run(journal_run_number(run)):
        entries += page.entries
    return entries


def _preview(journal: Journal) -> PreviewEntry:
    return PreviewEntry(
        number=journal.natural_key,
        date=journal.date.isoformat(),
        currency=journal.currency,
        description=journal.description,
        debit=journal.total_debit,
        credit=journal.total_credit,
        lines=[PreviewLine.model_validate(line) for line in journal_payload(journal)["lines"]],
    )


def step_check(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 6: every entry balances and maps; bad entries are parked and the close stops before
    posting. Entries parked earlier that now pass are returned to pending. A dry run stops here
    with the preview of what would be posted."""
    mapping = ctx.mapping()
    numbers = journal_numbers(run)
    if run.dry_run:
        entries = _dry_run_entries(ctx, run)
        rows: dict[str, SyncRecord] = {}
    else:
        rows = entry_rows(ctx.ledger, ctx.connection, numbers)
        missing = [n for n in numbers if n not in rows]
        if missing:
            raise StopClose(
                f"journal entries {', '.join(missing)} are not in the ledger; run the close again"
            )
        entries = [JournalEntry.from_json(rows[n].payload) for n in numbers]
    skipped: dict[str, str] = {}
    bad: dict[str, list[str]] = {}
    preview: list[PreviewEntry] = []
    for entry in entries:
        reason = skip_reason(entry)
        if reason:
            skipped[entry.number] = reason
            continue
        row = rows.get(entry.number)
        if row is not None and row.state in POSTED_STATES:
            continue  # posted by this close already (a resumed run re-checks)
        reasons = check_entry(entry, mapping)
        if entry.transferred_to_accounting == "Yes" and (row is None or row.state not in POSTED_STATES):
            reasons.append(
                "Zuora already says transferredToAccounting=Yes but ledgerbridge never posted it: another "
                "tool may have posted it. Check the ERP; if it is there, leave this entry out of the close"
            )
        if not reasons:
            try:
                journal = journal_from_summary_entry(entry.raw, mapping)
            except MappingError as exc:
                reasons.append(exc.reason)
            else:
                preview.append(_preview(journal))
        if reasons:
            bad[entry.number] = reasons
    if run.dry_run:
        return _dry_run_done(preview, bad, skipped)
    with ctx.ledger.session() as session:
        for number, row in rows.items():
            if number in skipped:
                continue
            if number in bad and row.state in (RecordState.PENDING.value, RecordState.FAILED.value):
                states.park(session, row.id or 0, "; ".join(bad[number]))
            elif number not in bad and row.state == RecordState.PARKED.value:
                states.replay(session, row.id or 0, reason=f"passed the check of close run {run.id}")
            elif number not in bad and row.state == RecordState.FAILED.value:
                states.retry(session, row.id or 0)
    checked = CheckState(entries=len(entries), skipped=skipped, bad=bad)
    if not bad and approval_required(ctx.approval):
        asked = approval_request(run, preview)
        if asked is not None:
            ctx.ledger.update_close_run(
                run.id or 0, details_update=details_update(step_state(run, CheckState).merged(checked), asked)
            )
            return Stop(
                awaiting_reason(run, asked),
                event="close.awaiting_approval",
                status=CloseStatus.AWAITING_APPROVAL.value,
            )
    if bad:
        save_state(ctx, run, step_state(run, CheckState).merged(checked))
        lines = "; ".join(f"{n}: {' / '.join(r)}" for n, r in sorted(bad.items()))
        posted = sum(1 for r in rows.values() if r.state in POSTED_STATES)
        already = f" ({posted} entries were posted earlier and stay posted)" if posted else ""
        raise StopClose(
            f"{len(bad)} of {len(entries)} journal entries of journal run {journal_run_number(run)} cannot "
            f"be posted and were parked, so nothing of the run was posted{already}: {lines}. Fix the "
            f"mapping file or the entries in Zuora, then run `{rerun(run)}` again.",
            event="close.entries_parked",
            fields={"parked": bad, "journal_run": journal_run_number(run)},
        )
    return Done("post", checked)


def _dry_run_done(preview: list[PreviewEntry], bad: dict[str, list[str]], skipped: dict[str, str]) -> Done:
    totals: dict[str, DebitCredit] = {}
    for item in preview:
        so_far = totals.get(item.currency, DebitCredit(debit=Decimal(0), credit=Decimal(0)))
        totals[item.currency] = DebitCredit(
            debit=so_far.debit + item.debit, credit=so_far.credit + item.credit
        )
    return Done("discard", CheckState(preview=preview, bad=bad, skipped=skipped, totals=totals))


def step_discard(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Dry run only, after ``check``: cancel the dry run's journal run and wait until Zuora has
    released its transactions, so the real close journalizes them again (section 7.3)."""
    number = step_state(run, JournalRunState).number
    if not number:
        return Done(FINISHED, DiscardState(cancelled=None))
    st = step_state(run, DiscardState)
    journal_run = ctx.zuora.journal_runs.get(number)
    if journal_run.status == "Cancelled":
        return Done(FINISHED, DiscardState(cancelled=number))
    if journal_run.status == "CancelInprogress":
        return wait_for_job(ctx, run, st, f"the cancellation of journal run {number}")
    if journal_run.status in ("Pending", "Completed", "Error") and not st.requested:
        st.requested = True
        st.job_started_at = ctx.clock()
        st.polls = 0
        run = save_state(ctx, run, st)
        try:
            ctx.zuora.journal_runs.cancel(number)
        except Rejected as exc:
            again = ctx.zuora.journal_runs.get(number)
            if again.status not in ("CancelInprogress", "Cancelled"):
                raise StopClose(f"the dry run could not cancel its journal run {number}: {exc}") from None
        return job_started()
    if journal_run.status == "Processing":
        return wait_for_job(ctx, run, st, f"journal run {number}")
    raise StopClose(
        f"the dry run's journal run {number} is {journal_run.status} after it was cancelled (an entry of it "
        "is transferred, or another process changed it); cancel it in Zuora before the real close"
    )
