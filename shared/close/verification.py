"""Steps 9 and 10 of the close: check what the close did, in Zuora and in the ERP.

9. ``verify`` - re-read every entry of the run: each must be ``Yes`` in Zuora and have an ERP
   reference in the ledger; any miss stops the close, loudly.
10. ``reconcile`` - per (ERP account, currency), Zuora's debit and credit totals for the run must
    equal the ledger's (what was posted) and the ERP's (read back), to the cent. Only then is the
    run ``done``; otherwise it needs attention with the differing lines.
"""

from __future__ import annotations

from decimal import Decimal

from shared.close.context import CloseContext, cli_arg, entry_rows, journal_run_number, rerun
from shared.close.entries import skip_reason
from shared.close.journals import TotalsKey, add_totals, entry_totals, totals_from_rows, totals_rows
from shared.close.results import FINISHED, Done, StepResult, StopClose
from shared.close.state import (
    ReconcileLine,
    ReconcileState,
    VerifyState,
    entries_to_post,
    save_state,
    skipped_entries,
    step_state,
)
from shared.erp.base import Totals
from shared.ledger.models import CloseRun, RecordState
from shared.zuora.journal import JournalEntry


def step_verify(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 9: re-read the run; every entry must be Yes in Zuora and have an ERP reference."""
    mapping = ctx.mapping()
    number = journal_run_number(run)
    seen: dict[str, JournalEntry] = {}
    for page in ctx.zuora.journal_entries.list_by_run(number):
        seen.update((e.number, e) for e in page.entries)
    expected = entries_to_post(run)
    skipped = skipped_entries(run)
    rows = entry_rows(ctx.ledger, ctx.connection, expected)
    misses: list[str] = []
    totals: dict[TotalsKey, Totals] = {}
    for je in expected:
        entry = seen.get(je)
        row = rows.get(je)
        if entry is None:
            misses.append(f"{je} is no longer in journal run {number} in Zuora")
        elif entry.status == "Cancelled":
            misses.append(f"{je} was cancelled in Zuora after it was posted")
        elif entry.transferred_to_accounting != "Yes":
            misses.append(
                f"{je} is transferredToAccounting={entry.transferred_to_accounting} in Zuora, not Yes"
            )
        if row is None or not row.erp_ref:
            misses.append(f"{je} has no ERP reference in the ledger")
        elif row.state != RecordState.MARKED.value:
            misses.append(f"{je} is {row.state} in the ledger, not marked")
        if entry is not None:
            add_totals(totals, entry_totals(entry.raw, mapping))
    for je, extra in sorted(seen.items()):
        if je not in expected and je not in skipped and skip_reason(extra) is None:
            misses.append(f"{je} appeared in journal run {number} after it was fetched and was not posted")
    if misses:
        st = step_state(run, VerifyState)
        st.misses = misses
        save_state(ctx, run, st)
        raise StopClose(
            f"VERIFICATION FAILED for journal run {number} of {cli_arg(run.period_name)}: "
            f"{len(misses)} problem(s): {'; '.join(misses)}. Do not treat the period as transferred; "
            f"fix these, then run `{rerun(run)}` again.",
            event="close.verification_failed",
            fields={"misses": misses, "journal_run": number},
        )
    return Done("reconcile", VerifyState(entries=len(expected), zuora_totals=totals_rows(totals), misses=[]))


def _ledger_totals(ctx: CloseContext, numbers: list[str]) -> dict[TotalsKey, Totals]:
    """Debit/credit per (account, currency) of what the ledger says was posted for ``numbers``."""
    totals: dict[TotalsKey, Totals] = {}
    for number, row in entry_rows(ctx.ledger, ctx.connection, numbers).items():
        payload = row.posted_payload or {}
        currency = str(payload.get("currency"))
        for line in payload.get("lines", []):
            key = (str(line["account"]), currency)
            amount = Totals(Decimal(str(line["debit"])), Decimal(str(line["credit"])))
            totals[key] = totals.get(key, Totals()) + amount
        if not payload:
            totals[(f"no posted payload for {number}", "")] = Totals()
    return totals


def step_reconcile(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 10: Zuora totals = ledger totals = ERP totals per (account, currency), to the cent."""
    expected = entries_to_post(run)
    zuora_rows = step_state(run, VerifyState).zuora_totals
    if zuora_rows is None:
        raise StopClose(f"close run {run.id} has no verified Zuora totals; run `{rerun(run)}` again")
    zuora = totals_from_rows(zuora_rows)
    ledger_totals = _ledger_totals(ctx, expected)
    erp = dict(ctx.erp.journal_totals(natural_keys=expected)) if expected else {}
    keys = sorted(set(zuora) | set(ledger_totals) | set(erp))
    lines: list[ReconcileLine] = []
    differences: list[ReconcileLine] = []
    for account, currency in keys:
        z = zuora.get((account, currency), Totals())
        led = ledger_totals.get((account, currency), Totals())
        e = erp.get((account, currency), Totals())
        line = ReconcileLine(
            account=account,
            currency=currency,
            zuora_debit=z.debit,
            zuora_credit=z.credit,
            ledger_debit=led.debit,
            ledger_credit=led.credit,
            erp_debit=e.debit,
            erp_credit=e.credit,
        )
        lines.append(line)
        if not (z.debit == led.debit == e.debit and z.credit == led.credit == e.credit):
            differences.append(line)
    if differences:
        st = step_state(run, ReconcileState)
        st.lines = lines
        st.differences = differences
        save_state(ctx, run, st)
        shown = "; ".join(
            f"{d.account} {d.currency}: Zuora {d.zuora_debit} Dr / {d.zuora_credit} Cr, "
            f"ledger {d.ledger_debit} Dr / {d.ledger_credit} Cr, "
            f"{ctx.erp_name} {d.erp_debit} Dr / {d.erp_credit} Cr"
            for d in differences
        )
        raise StopClose(
            f"RECONCILIATION FAILED for {cli_arg(run.period_name)}: {len(differences)} account line(s) "
            f"differ between Zuora, the ledger and {ctx.erp_name}: {shown}. Find the cause in {ctx.erp_name} "
            f"(a changed or voided batch), then run `{rerun(run)}` again.",
            event="close.reconciliation_failed",
            fields={"differences": [d.model_dump() for d in differences]},
        )
    return Done(FINISHED, ReconcileState(lines=lines, differences=[], entries=len(expected)))
