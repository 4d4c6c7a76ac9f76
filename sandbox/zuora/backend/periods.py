"""Accounting periods and their trial balances (section 6).

Running a trial balance, pending-close and close start an asynchronous job (``sandbox.zuora.jobs``)
whose outcome is fixed when it starts: ``Error`` while a failure is armed through the control plane
(``fail_trial_balance``), else ``Completed``. ``_finish_trial_balances`` records the outcome once
the clock or the status polls say the job is done.
"""

from __future__ import annotations

from typing import Any

from sandbox.zuora.errors import RESOURCE_PERIOD, invalid, not_found, rule
from sandbox.zuora.formats import finance_datetime, from_epoch
from sandbox.zuora.jobs import DONE, PENDING, Job
from sandbox.zuora.paging import page_slice
from sandbox.zuora.schema import OBJECTS

from .state import TenantState

PERIOD_DEFAULT_PAGE_SIZE = 20
DEFAULT_TB_ERROR = (
    "Error creating the trial balance: exchange rate from USD to GBP on {day} is not available. "
    "Please import the rate and run trial balance again."
)


class Periods(TenantState):
    """``/v1/accounting-periods`` and the control plane's trial-balance failure knob."""

    def list_periods(self, page: int, page_size: int) -> tuple[list[dict[str, Any]], bool]:
        """One page of the periods by start date, as the list renders them, and whether more follow."""
        limit = self.config.list_max_page_size
        if page < 1 or not 1 <= page_size <= limit:
            raise invalid(f"page must be >= 1 and pageSize 1..{limit}", resource=RESOURCE_PERIOD)
        with self._lock:
            self._advance()
            ordered = sorted(self._tables["AccountingPeriod"], key=lambda p: p["StartDate"])
            chosen, more = page_slice(ordered, page, page_size)
            return [self._render_period(p, listed=True) for p in chosen], more

    def get_period(self, period_id: str, *, poll: bool = True) -> dict[str, Any]:
        """The period with its trial-balance fields; a read counts as a poll of a running TB."""
        with self._lock:
            period = self._period(period_id)
            job = self._periods[period_id].job
            if poll and job is not None:
                job.poll()
            self._advance()
            return {**self._render_period(period), "success": True}

    def run_trial_balance(self, period_id: str) -> None:
        """Start a trial balance of an open period (none may be running)."""
        with self._lock:
            self._advance()
            period = self._period(period_id)
            if period["Status"] != "Open":
                raise rule(
                    f"Trial balance can only be run for an open accounting period; "
                    f"{period['Name']} is {period['Status']}.",
                    resource=RESOURCE_PERIOD,
                )
            self._require_no_trial_balance(period)
            self._start_trial_balance(period)

    def pending_close(self, period_id: str) -> None:
        """Set the period PendingClose and start its trial balance (earlier periods must be closed)."""
        with self._lock:
            self._advance()
            period = self._period(period_id)
            if period["Status"] in ("Closed", "PendingClose"):
                raise rule(
                    f"Accounting period {period['Name']} is already {period['Status']}.",
                    resource=RESOURCE_PERIOD,
                )
            self._require_no_trial_balance(period)
            self._require_earlier_closed(period)
            self._set_period_status(period, "PendingClose")
            self._start_trial_balance(period)

    def close_period(self, period_id: str) -> None:
        """Close the period and start its trial balance (earlier periods must be closed)."""
        with self._lock:
            self._advance()
            period = self._period(period_id)
            if period["Status"] == "Closed":
                raise rule(f"Accounting period {period['Name']} is already closed.", resource=RESOURCE_PERIOD)
            self._require_no_trial_balance(period)
            self._require_earlier_closed(period)
            self._set_period_status(period, "Closed")
            self._start_trial_balance(period)

    def reopen_period(self, period_id: str) -> None:
        """Reopen a closed or pending-close period that comes right before an open one."""
        with self._lock:
            self._advance()
            period = self._period(period_id)
            if period["Status"] not in ("Closed", "PendingClose"):
                raise rule(f"Accounting period {period['Name']} is not closed.", resource=RESOURCE_PERIOD)
            self._require_no_trial_balance(period)
            following = [p for p in self._tables["AccountingPeriod"] if p["StartDate"] > period["StartDate"]]
            successor = min(following, key=lambda p: p["StartDate"], default=None)
            # Only the period right before an open one may reopen; after the last defined period
            # comes Zuora's open-ended period, which is always open (section 6.2).
            if successor is not None and successor["Status"] != "Open":
                raise rule(
                    f"Only the accounting period immediately before an open period can be reopened; "
                    f"{successor['Name']} is {successor['Status']}.",
                    resource=RESOURCE_PERIOD,
                )
            self._set_period_status(period, "Open")

    def fail_trial_balance(
        self, period_id: str, message: str | None = None, times: int | None = None
    ) -> None:
        """Make the period's next trial balance(s) end in Error (``times`` None = until cleared)."""
        with self._lock:
            period = self._period(period_id)
            state = self._periods[period_id]
            state.fail_message = message or DEFAULT_TB_ERROR.format(
                day=period["EndDate"].strftime("%m/%d/%Y")
            )
            state.fail_times = times

    def clear_trial_balance_failure(self, period_id: str) -> None:
        """Disarm ``fail_trial_balance``: the next trial balance completes."""
        with self._lock:
            self._period(period_id)
            state = self._periods[period_id]
            state.fail_message, state.fail_times = None, None

    def _period(self, period_id: str) -> dict[str, Any]:
        period = self._tables["AccountingPeriod"].rows.get(period_id)
        if period is None:
            raise not_found(f"Accounting period {period_id} does not exist.", resource=RESOURCE_PERIOD)
        return period

    def _require_no_trial_balance(self, period: dict[str, Any]) -> None:
        state = self._periods[period["Id"]]
        if state.job is not None:
            raise rule(f"A trial balance is already running for {period['Name']}.", resource=RESOURCE_PERIOD)

    def _require_earlier_closed(self, period: dict[str, Any]) -> None:
        earlier = [
            p
            for p in self._tables["AccountingPeriod"]
            if p["StartDate"] < period["StartDate"] and p["Status"] != "Closed"
        ]
        if earlier:
            names = ", ".join(p["Name"] for p in sorted(earlier, key=lambda p: p["StartDate"]))
            raise rule(
                f"All earlier accounting periods must be closed first ({names}).", resource=RESOURCE_PERIOD
            )

    def _set_period_status(self, period: dict[str, Any], status: str) -> None:
        self._touch(OBJECTS["AccountingPeriod"], period, {"Status": status})

    def _start_trial_balance(self, period: dict[str, Any]) -> None:
        state = self._periods[period["Id"]]
        outcome, message = "Completed", None
        if state.fail_message is not None:
            outcome, message = "Error", state.fail_message
            if state.fail_times is not None:
                state.fail_times -= 1
                if state.fail_times <= 0:
                    state.fail_message, state.fail_times = None, None
        state.job = Job(self.now(), self._config.trial_balance, outcome, message)
        state.tb_status, state.tb_start, state.tb_end, state.tb_error = PENDING, None, None, None

    def _finish_trial_balances(self, now: float) -> None:
        """Record the outcome of every trial balance whose job is done at ``now``."""
        for period_id, state in self._periods.items():
            job = state.job
            if job is not None and job.phase(now) == DONE:
                state.job = None
                state.tb_status = job.outcome
                state.tb_start = from_epoch(
                    job.processing_at if job.processing_at is not None else now, self.zone
                )
                if job.outcome == "Completed":
                    state.tb_end = from_epoch(job.done_at if job.done_at is not None else now, self.zone)
                    state.file_ids = self._file_ids(period_id)
                    state.tb_error = None
                else:
                    state.tb_end = None
                    period = self._tables["AccountingPeriod"].rows[period_id]
                    state.tb_error = job.message or DEFAULT_TB_ERROR.format(
                        day=period["EndDate"].strftime("%m/%d/%Y")
                    )
                self._emit(
                    "completed", "AccountingPeriod", period_id, None, 3210, trialBalanceStatus=job.outcome
                )

    def _render_period(self, period: dict[str, Any], *, listed: bool = False) -> dict[str, Any]:
        """A period as ``GET /v1/accounting-periods/{id}`` gives it (``GetAccountingPeriodResponse``),
        or with ``listed`` as the list gives it (``GetAccountingPeriodWithoutSuccessResponse``):
        zuora-sdk types the two differently (fiscalYear a number / a string, fiscalQuarter /
        fiscal_quarter); the client reads both (docs/vendor-notes.md)."""
        state = self._periods[period["Id"]]
        zone = self.zone
        status, start, end, error = state.tb_status, state.tb_start, state.tb_end, state.tb_error
        if state.job is not None:
            phase = state.job.phase(self.now())
            status = phase
            start = from_epoch(state.job.processing_at, zone) if state.job.processing_at is not None else None
            end, error = None, None
        file_keys = (
            "unprocessedChargesFileId",
            "accountsReceivableInvoiceAgingDetailExportFileId",
            "accountsReceivableAccountAgingDetailExportFileId",
            "accountsReceivableDebitMemoAgingDetailExportFileId",
            "revenueDetailExcelFileId",
            "revenueDetailCsvFileId",
            "arRollForwardDetailExportFileId",
            "fxRealizedGainAndLossDetailExportFileId",
            "fxUnrealizedGainAndLossDetailExportFileId",
        )
        return {
            "id": period["Id"],
            "name": period["Name"],
            "startDate": period["StartDate"].isoformat(),
            "endDate": period["EndDate"].isoformat(),
            "status": period["Status"],
            "runTrialBalanceStatus": status,
            "runTrialBalanceStart": finance_datetime(start, zone),
            "runTrialBalanceEnd": finance_datetime(end, zone),
            "runTrialBalanceErrorMessage": error,
            "fiscalYear": str(period["FiscalYear"]) if listed else period["FiscalYear"],
            "fiscal_quarter" if listed else "fiscalQuarter": period["FiscalQuarter"],
            "notes": period["Notes"] or "",
            "fileIds": {key: state.file_ids.get(key) for key in file_keys},
            "createdOn": finance_datetime(period["CreatedDate"], zone),
            "createdBy": period["CreatedById"],
            "updatedOn": finance_datetime(period["UpdatedDate"], zone),
            "updatedBy": period["UpdatedById"],
        }

    def _file_ids(self, period_id: str) -> dict[str, str | None]:
        keys = (
            "accountsReceivableInvoiceAgingDetailExportFileId",
            "accountsReceivableAccountAgingDetailExportFileId",
            "revenueDetailExcelFileId",
            "revenueDetailCsvFileId",
            "arRollForwardDetailExportFileId",
        )
        return {key: f"8a80{period_id[4:24]}{index:08x}" for index, key in enumerate(keys)}

    def _period_by_name(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self._tables["AccountingPeriod"] if p["Name"] == name), None)
