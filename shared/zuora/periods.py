"""Accounting periods: ``/v1/accounting-periods`` (zuora-api.md section 6).

The trial-balance and close actions are asynchronous: ``{"success": true}`` only means the work
started. Poll :meth:`AccountingPeriods.get` until ``runTrialBalanceStatus`` is ``Completed`` with
an end time, and stop on ``Error`` (section 6.2). They are PUTs without an Idempotency-Key
(section 3); if a retried PUT follows an unseen success Zuora answers with a category-30
``Rejected`` (already closed / trial balance running): callers re-read the period before acting
on that error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from shared.zuora.paging import REFERENCE_LIMITS
from shared.zuora.records import optional_date, optional_datetime
from shared.zuora.transport import ZuoraTransport
from shared.zuora.wire import segment
from shared.zuora.zoql import Zoql, accounting_period_by_name

PeriodStatus = Literal["Open", "PendingClose", "Closed"]
TrialBalanceStatus = Literal["Pending", "Processing", "Completed", "Error"]
MAX_PAGE_SIZE = REFERENCE_LIMITS["list"]


@dataclass(frozen=True)
class AccountingPeriod:
    """An accounting period as ``GET /v1/accounting-periods/{id}`` describes it. Finance
    timestamps carry no zone (tenant time) and are kept naive."""

    id: str
    name: str
    start_date: date | None
    end_date: date | None
    status: str
    run_trial_balance_status: str | None
    run_trial_balance_start: datetime | None
    run_trial_balance_end: datetime | None
    run_trial_balance_error_message: str | None
    fiscal_year: int | None
    fiscal_quarter: int | None
    notes: str | None
    raw: Mapping[str, Any]

    @property
    def trial_balance_completed(self) -> bool:
        """Zuora's rule: proceed only on ``Completed`` with an end time (section 6.2)."""
        return self.run_trial_balance_status == "Completed" and self.run_trial_balance_end is not None

    @property
    def trial_balance_failed(self) -> bool:
        return self.run_trial_balance_status == "Error"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccountingPeriod:
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            start_date=optional_date(data.get("startDate")),
            end_date=optional_date(data.get("endDate")),
            status=str(data.get("status")),
            run_trial_balance_status=data.get("runTrialBalanceStatus"),
            run_trial_balance_start=optional_datetime(data.get("runTrialBalanceStart")),
            run_trial_balance_end=optional_datetime(data.get("runTrialBalanceEnd")),
            run_trial_balance_error_message=data.get("runTrialBalanceErrorMessage"),
            fiscal_year=_opt_int(data.get("fiscalYear")),
            # zuora-sdk spells it fiscal_quarter, the reference pages fiscalQuarter (docs/vendor-notes.md)
            fiscal_quarter=_opt_int(data.get("fiscalQuarter", data.get("fiscal_quarter"))),
            notes=data.get("notes"),
            raw=data,
        )


def _opt_int(value: object) -> int | None:
    return None if value in (None, "") else int(str(value))


class AccountingPeriods:
    def __init__(self, transport: ZuoraTransport, zoql: Zoql) -> None:
        self._t = transport
        self._zoql = zoql

    def get(self, period_id: str) -> AccountingPeriod:
        """The period with this 32-char id (the path takes the id, not the name). NotFound if none."""
        body = self._t.call("GET", f"/v1/accounting-periods/{segment(period_id)}", operation="periods.get")
        return AccountingPeriod.from_json(body)

    def list(self, *, page_size: int = MAX_PAGE_SIZE) -> Iterator[AccountingPeriod]:
        """Every period, following ``nextPage``; the page size is capped at what the tenant
        accepts (300 or 40, :class:`~shared.zuora.paging.PageLimits`)."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        for _, _, body in self._t.numbered_pages(
            "/v1/accounting-periods", operation="periods.list", page_size=page_size, what="accounting periods"
        ):
            for item in body.get("accountingPeriods") or []:
                yield AccountingPeriod.from_json(item)

    def find_by_name(self, name: str) -> AccountingPeriod | None:
        """The period named ``name`` (names are unique; apostrophes such as ``Dec'16`` are
        escaped), with its trial-balance fields, or None."""
        for record in self._zoql.query(accounting_period_by_name(name), batch_size=100):
            if record.get("Name") == name and record.get("Id"):
                return self.get(str(record["Id"]))
        return None

    def run_trial_balance(self, period_id: str) -> None:
        """Start a trial balance (period must be Open, no trial balance running)."""
        self._put(period_id, "run-trial-balance")

    def pending_close(self, period_id: str) -> None:
        """Move to ``PendingClose``; starts a trial balance (all earlier periods must be closed)."""
        self._put(period_id, "pending-close")

    def close(self, period_id: str) -> None:
        """Close the period; a trial balance runs afterwards and may still fail (poll :meth:`get`)."""
        self._put(period_id, "close")

    def reopen(self, period_id: str) -> None:
        """Reopen a Closed/PendingClose period (only the one right before an open period)."""
        self._put(period_id, "reopen")

    def _put(self, period_id: str, action: str) -> None:
        self._t.call(
            "PUT", f"/v1/accounting-periods/{segment(period_id)}/{action}", operation=f"periods.{action}"
        )
