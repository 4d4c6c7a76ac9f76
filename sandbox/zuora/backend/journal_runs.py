"""Journal runs (section 7) and the summary journal entries a run booked (section 8.1).

A run drafts its entries when it starts (``sandbox.zuora.journal.draft_entries``) and claims their
transaction lines, so two runs never book one line; the entries are booked when its job completes.
Cancelling a run cancels its entries except those transferred to accounting (section 7.3);
deleting a cancelled run removes it and its entries.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sandbox.zuora.catalog import ALL_TRANSACTION_TYPES
from sandbox.zuora.errors import (
    RESOURCE_JOURNAL_ENTRY,
    RESOURCE_JOURNAL_RUN,
    invalid,
    missing,
    not_found,
    rule,
)
from sandbox.zuora.formats import finance_datetime, from_epoch
from sandbox.zuora.jobs import DONE, Job
from sandbox.zuora.journal import draft_entries
from sandbox.zuora.paging import page_slice

from .state import JournalEntry, JournalRun, TenantState, object_body, optional_date, required_date

JE_DEFAULT_PAGE_SIZE = 8
DEFAULT_JR_ERROR = "Journal run failed: an accounting code is missing on one or more transactions."


class JournalRuns(TenantState):
    """``/v1/journal-runs``, ``GET /v1/journal-entries/journal-runs/{number}`` and the control
    plane's journal-run failure knob."""

    def create_journal_run(self, body: Any) -> dict[str, Any]:
        """Start a journal run over an accounting period or a date range; returns its number.

        The run drafts its entries now (or, with a failure armed, is set to end in Error)."""
        body = object_body(body, resource=RESOURCE_JOURNAL_RUN)
        res = RESOURCE_JOURNAL_RUN
        entry_date = required_date(body, "journalEntryDate", res)
        types = body.get("transactionTypes")
        if not types:
            raise missing("transactionTypes is required", resource=res)
        if not isinstance(types, list) or not all(
            isinstance(t, dict) and isinstance(t.get("type"), str) for t in types
        ):
            raise invalid('transactionTypes must be an array of {"type": "..."}', resource=res)
        names = [t["type"] for t in types]
        with self._lock:
            self._advance()
            for name in names:
                if name not in ALL_TRANSACTION_TYPES:
                    raise invalid(f"Invalid transaction type: {name}", resource=res)
                if name not in self._config.enabled_transaction_types:
                    raise invalid(f"Transaction type {name} is not enabled for this tenant", resource=res)
            start, end, period_name = self._run_target(body)
            number = f"JR-{self._factory.next_number('JournalRun'):08d}"
            run = JournalRun(number, entry_date, start, end, period_name, names, self._now_dt(), None)
            if self._fail_runs:
                run.job = Job(self.now(), self._config.journal_run, "Error", self._fail_runs.popleft())
            else:
                run.job = Job(self.now(), self._config.journal_run)
                run.drafts = draft_entries(
                    self._tables, start, end, types=names, taken=self._taken, config=self._config
                )
                for draft in run.drafts:
                    for line in draft.lines:
                        self._taken[line] = number
            self._runs[number] = run
            return {"journalRunNumber": number, "success": True}

    def _run_target(self, body: dict[str, Any]) -> tuple[date, date, str | None]:
        res = RESOURCE_JOURNAL_RUN
        name = body.get("accountingPeriodName")
        start_text, end_text = body.get("targetStartDate"), body.get("targetEndDate")
        start = optional_date(body, "targetStartDate", res)
        end = optional_date(body, "targetEndDate", res)
        if name:
            period = self._period_by_name(str(name))
            if period is None:
                raise invalid(f"Accounting period {name} does not exist", resource=res)
            if start is not None and start != period["StartDate"]:
                raise invalid(
                    "targetStartDate must be empty or equal the accounting period's start date", resource=res
                )
            if end is not None and end != period["EndDate"]:
                raise invalid(
                    "targetEndDate must be empty or equal the accounting period's end date", resource=res
                )
            return period["StartDate"], period["EndDate"], period["Name"]
        if end_text and not start_text:
            raise missing("targetStartDate is required when targetEndDate is given", resource=res)
        if start is None or end is None:
            raise missing(
                "accountingPeriodName, or targetStartDate and targetEndDate, is required", resource=res
            )
        if start > end:
            raise invalid("targetStartDate must not be after targetEndDate", resource=res)
        return start, end, None

    def get_journal_run(self, number: str, *, poll: bool = True) -> dict[str, Any]:
        """The run as ``GET /v1/journal-runs/{number}`` gives it; a read counts as a status poll."""
        with self._lock:
            run = self._run(number)
            if poll and run.job is not None:
                run.job.poll()
            self._advance()
            run = self._run(number)  # a finished delete removes it
            return self._render_run(run)

    def cancel_journal_run(self, number: str) -> None:
        """Start cancelling a Pending, Error or Completed run (``CancelInprogress`` until done)."""
        with self._lock:
            self._advance()
            run = self._run(number)
            status = self._run_status(run)
            if status not in ("Pending", "Error", "Completed"):
                raise rule(
                    f"Journal run {number} cannot be cancelled while {status}.", resource=RESOURCE_JOURNAL_RUN
                )
            if run.job is not None:  # still Pending: the run never books anything
                self._release_run_lines(run)
                run.drafts = []
            run.action = "cancel"
            run.job = Job(self.now(), self._config.journal_run)

    def delete_journal_run(self, number: str) -> None:
        """Start deleting a cancelled run and its entries (``DeleteInprogress`` until done)."""
        with self._lock:
            self._advance()
            run = self._run(number)
            status = self._run_status(run)
            if status != "Cancelled":
                raise rule(
                    f"Only a cancelled journal run can be deleted; {number} is {status}.",
                    resource=RESOURCE_JOURNAL_RUN,
                )
            run.action = "delete"
            run.job = Job(self.now(), self._config.journal_run)

    def list_journal_entries(
        self, run_number: str, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """One page of the entries run ``run_number`` booked, and whether more follow."""
        limit = self.config.list_max_page_size
        if page < 1 or not 1 <= page_size <= limit:
            raise invalid(f"page must be >= 1 and pageSize 1..{limit}", resource=RESOURCE_JOURNAL_ENTRY)
        with self._lock:
            self._advance()
            run = self._run(run_number)
            entries = [self._entries[n] for n in run.entry_numbers if n in self._entries]
            chosen, more = page_slice(entries, page, page_size)
            return [self._render_entry(e) for e in chosen], more

    def fail_next_journal_runs(self, count: int = 1, message: str | None = None) -> None:
        """The next ``count`` journal runs end in Error and book nothing."""
        with self._lock:
            self._fail_runs.extend([message or DEFAULT_JR_ERROR] * count)

    def _run(self, number: str) -> JournalRun:
        run = self._runs.get(number)
        if run is None:
            raise not_found(f"Journal run {number} does not exist.", resource=RESOURCE_JOURNAL_RUN)
        return run

    def _run_status(self, run: JournalRun) -> str:
        if run.job is None:
            return run.status
        phase = run.job.phase(self.now())
        if run.action == "cancel":
            return "CancelInprogress"
        if run.action == "delete":
            return "DeleteInprogress"
        return phase if phase != DONE else run.job.outcome

    def _render_run(self, run: JournalRun) -> dict[str, Any]:
        return {
            "number": run.number,
            "status": self._run_status(run),
            "executedOn": finance_datetime(run.executed_at, self.zone),
            "journalEntryDate": run.journal_entry_date.isoformat(),
            "targetStartDate": run.start.isoformat(),
            "targetEndDate": run.end.isoformat(),
            "segmentationRuleName": self._config.segmentation_rule_name,
            "aggregateCurrency": False,
            "totalJournalEntryCount": len(run.entry_numbers),
            "transactionTypes": [{"type": t} for t in run.transaction_types],
            "success": True,
        }

    def _release_run_lines(self, run: JournalRun) -> None:
        for draft in run.drafts:
            for line in draft.lines:
                if self._taken.get(line) == run.number:
                    del self._taken[line]

    def _finish_journal_runs(self, now: float) -> None:
        """Finish every journal run (or its cancellation or deletion) whose job is done at ``now``."""
        for run in list(self._runs.values()):
            job = run.job
            if job is not None and job.phase(now) == DONE:
                self._finish_run(run, job)

    def _finish_run(self, run: JournalRun, job: Job) -> None:
        run.job = None
        if run.action is None:
            run.status = job.outcome
            run.error_message = job.message
            if job.outcome == "Completed":
                self._book(run)
            else:
                self._release_run_lines(run)
            run.drafts = []
            self._emit("completed", "JournalRun", run.number, run.number, 3110, status=run.status)
        elif run.action == "cancel":
            run.action = None
            survivors = 0
            for number in run.entry_numbers:
                entry = self._entries[number]
                if entry.status == "Cancelled":
                    continue
                if entry.transferred in ("Yes", "Processing"):
                    survivors += 1  # a transferred entry blocks its cancellation (section 7.3)
                else:
                    self._cancel_entry(entry)
            run.status = "Completed" if survivors else "Cancelled"
        else:
            for number in run.entry_numbers:
                self._entries.pop(number, None)
            del self._runs[run.number]

    def _book(self, run: JournalRun) -> None:
        zone = self.zone
        for draft in run.drafts:
            number = f"JE-{self._factory.next_number('JournalEntry'):08d}"
            items = [
                {
                    "accountingCodeName": i.code.name,
                    "accountingCodeType": i.code.type,
                    "glAccountName": i.code.gl_account_name or None,
                    "glAccountNumber": i.code.gl_account_number or None,
                    "type": i.type,
                    "amount": i.amount,
                    "homeCurrencyAmount": i.home_amount,
                }
                for i in draft.items
            ]
            self._entries[number] = JournalEntry(
                number,
                run.number,
                run.journal_entry_date,
                run.period_name or "",
                run.start,
                run.end,
                draft.currency,
                self._config.home_currency,
                draft.transaction_type,
                list(draft.segments),
                items,
                list(draft.lines),
                created_at=from_epoch(self.now(), zone),
            )
            run.entry_numbers.append(number)
            for line in draft.lines:
                self._taken[line] = number
                ttype, row_id = line
                if ttype in ("Invoice Item", "Credit Memo Item (Charge)", "Debit Memo Item (Charge)"):
                    table = {
                        "Invoice Item": "InvoiceItem",
                        "Credit Memo Item (Charge)": "CreditMemoItem",
                        "Debit Memo Item (Charge)": "DebitMemoItem",
                    }[ttype]
                    row = self._tables[table].rows.get(row_id)
                    if row is not None:
                        row["JournalEntryId"] = number
