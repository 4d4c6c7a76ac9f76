"""Journal runs (``/v1/journal-runs``, zuora-api.md section 7) and summary journal entries
(``/v1/journal-entries``, section 8).

A journal run is asynchronous: :meth:`JournalRuns.create` returns its number at once; poll
:meth:`JournalRuns.get` until ``Completed`` and stop on ``Error``/``CancelInprogress``/
``Cancelled``/``DeleteInprogress`` (section 7.2). There is no bulk "mark transferred": each entry
is marked with :meth:`JournalEntries.update_basic_information` (section 8.4).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from shared.zuora.paging import REFERENCE_LIMITS
from shared.zuora.records import optional_date, optional_datetime, to_decimal
from shared.zuora.transfers import TRANSFERRED_VALUES
from shared.zuora.transport import IdempotencyKey, ZuoraTransport, required
from shared.zuora.wire import segment

JournalRunStatus = Literal[
    "Pending", "Processing", "Completed", "Error", "CancelInprogress", "Cancelled", "DeleteInprogress"
]
JOURNAL_RUN_STOP_STATUSES = frozenset({"Error", "CancelInprogress", "Cancelled", "DeleteInprogress"})
MAX_ENTRY_PAGE_SIZE = REFERENCE_LIMITS["list"]  # stepped down to the OpenAPI's 40 when refused


def _iso(value: date | str) -> str:
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat() if isinstance(value, date) else value


@dataclass(frozen=True)
class JournalRun:
    number: str
    status: str
    executed_on: datetime | None
    journal_entry_date: date | None
    target_start_date: date | None
    target_end_date: date | None
    total_journal_entry_count: int | None
    transaction_types: tuple[str, ...]
    aggregate_currency: bool | None
    raw: Mapping[str, Any]

    @property
    def completed(self) -> bool:
        return self.status == "Completed"

    @property
    def failed(self) -> bool:
        """A status from which the run will never complete (section 7.2)."""
        return self.status in JOURNAL_RUN_STOP_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JournalRun:
        count = data.get("totalJournalEntryCount")
        return cls(
            number=str(data["number"]),
            status=str(data.get("status")),
            executed_on=optional_datetime(data.get("executedOn")),
            journal_entry_date=optional_date(data.get("journalEntryDate")),
            target_start_date=optional_date(data.get("targetStartDate")),
            target_end_date=optional_date(data.get("targetEndDate")),
            total_journal_entry_count=None if count is None else int(count),
            transaction_types=tuple(str(t.get("type")) for t in data.get("transactionTypes") or []),
            aggregate_currency=data.get("aggregateCurrency"),
            raw=data,
        )


@dataclass(frozen=True)
class JournalEntryItem:
    accounting_code_name: str | None
    accounting_code_type: str | None
    gl_account_name: str | None
    gl_account_number: str | None
    type: str  # "Debit" | "Credit"
    amount: Decimal
    home_currency_amount: Decimal | None
    raw: Mapping[str, Any]


@dataclass(frozen=True)
class JournalEntry:
    number: str
    status: str
    journal_entry_date: date | None
    accounting_period_name: str | None
    currency: str | None
    home_currency: str | None
    transaction_type: str | None
    transferred_to_accounting: str | None
    time_period_start: date | None
    time_period_end: date | None
    notes: str | None
    segments: tuple[tuple[str, str], ...]
    items: tuple[JournalEntryItem, ...]
    raw: Mapping[str, Any]

    def totals(self) -> tuple[Decimal, Decimal]:
        """(sum of debits, sum of credits) in the transaction currency."""
        debit = sum((i.amount for i in self.items if i.type == "Debit"), Decimal(0))
        credit = sum((i.amount for i in self.items if i.type == "Credit"), Decimal(0))
        return debit, credit

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JournalEntry:
        items = tuple(
            JournalEntryItem(
                accounting_code_name=item.get("accountingCodeName"),
                accounting_code_type=item.get("accountingCodeType"),
                gl_account_name=item.get("glAccountName"),
                gl_account_number=item.get("glAccountNumber"),
                type=str(item.get("type")),
                amount=to_decimal(item.get("amount")),
                home_currency_amount=(
                    None if item.get("homeCurrencyAmount") is None else to_decimal(item["homeCurrencyAmount"])
                ),
                raw=item,
            )
            for item in data.get("journalEntryItems") or []
        )
        return cls(
            number=str(data["number"]),
            status=str(data.get("status")),
            journal_entry_date=optional_date(data.get("journalEntryDate")),
            accounting_period_name=data.get("accountingPeriodName"),
            currency=data.get("currency"),
            home_currency=data.get("homeCurrency"),
            transaction_type=data.get("transactionType"),
            transferred_to_accounting=data.get("transferredToAccounting"),
            time_period_start=optional_date(data.get("timePeriodStart")),
            time_period_end=optional_date(data.get("timePeriodEnd")),
            notes=data.get("notes"),
            segments=tuple(
                (str(s.get("segmentName")), str(s.get("segmentValue"))) for s in data.get("segments") or []
            ),
            items=items,
            raw=data,
        )


@dataclass(frozen=True)
class JournalEntryPage:
    """One page of a run's entries, with its page number and raw response."""

    entries: list[JournalEntry]
    page: int
    next_page: int | None
    response: Mapping[str, Any]


class JournalRuns:
    def __init__(self, transport: ZuoraTransport) -> None:
        self._t = transport

    def create(
        self,
        period_name: str,
        journal_entry_date: date | str,
        transaction_types: Sequence[str],
        *,
        idempotency_key: IdempotencyKey | None = None,
    ) -> str:
        """Start a journal run for the period; return its number (``JR-...``).

        Pass ``idempotency_key`` parts that name this run attempt (e.g. ``("journal-run", period,
        *types)``): for 24 hours Zuora answers the same key with the same run (section 3), so a
        retried start never creates a second run. Without it the key derives from the body.
        """
        if not transaction_types:
            raise ValueError("a journal run needs at least one transaction type")
        body = self._t.call(
            "POST",
            "/v1/journal-runs",
            operation="journal-runs.create",
            body={
                "accountingPeriodName": period_name,
                "journalEntryDate": _iso(journal_entry_date),
                "transactionTypes": [{"type": t} for t in transaction_types],
            },
            idempotency_key=idempotency_key,
        )
        return str(required(body, "journalRunNumber", "journal-runs.create"))

    def get(self, number: str) -> JournalRun:
        body = self._t.call("GET", f"/v1/journal-runs/{segment(number)}", operation="journal-runs.get")
        return JournalRun.from_json(body)

    def cancel(self, number: str) -> None:
        """Cancel the run (allowed from Pending, Error or Completed). Asynchronous: poll :meth:`get`
        until ``Cancelled``; a run whose entries are transferred stays ``Completed`` (section 7.3)."""
        self._t.call("PUT", f"/v1/journal-runs/{segment(number)}/cancel", operation="journal-runs.cancel")


class JournalEntries:
    def __init__(self, transport: ZuoraTransport) -> None:
        self._t = transport

    def list_by_run(
        self, run_number: str, *, page_size: int = MAX_ENTRY_PAGE_SIZE
    ) -> Iterator[JournalEntryPage]:
        """The run's entries page by page (``page``/``pageSize``, following ``nextPage``); the page
        size is capped at what the tenant accepts (300 or 40, :class:`~shared.zuora.paging.PageLimits`)."""
        if not 1 <= page_size <= MAX_ENTRY_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_ENTRY_PAGE_SIZE}")
        for page, following, body in self._t.numbered_pages(
            f"/v1/journal-entries/journal-runs/{segment(run_number)}",
            operation="journal-entries.list",
            page_size=page_size,
            what=f"journal entries of {run_number}",
        ):
            entries = [JournalEntry.from_json(e) for e in body.get("journalEntries") or []]
            yield JournalEntryPage(entries=entries, page=page, next_page=following, response=body)

    def get(self, number: str) -> JournalEntry:
        body = self._t.call("GET", f"/v1/journal-entries/{segment(number)}", operation="journal-entries.get")
        return JournalEntry.from_json(body)

    def update_basic_information(
        self,
        number: str,
        *,
        transferred_to_accounting: str | None = None,
        notes: str | None = None,
        journal_entry_items: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """``PUT .../basic-information`` with only the given fields (a PUT: no Idempotency-Key,
        repeating it is harmless). Leaving ``Yes`` needs the Override permission (section 8.4)."""
        if transferred_to_accounting is not None and transferred_to_accounting not in TRANSFERRED_VALUES:
            raise ValueError(f"transferredToAccounting must be one of {sorted(TRANSFERRED_VALUES)}")
        body: dict[str, Any] = {}
        if transferred_to_accounting is not None:
            body["transferredToAccounting"] = transferred_to_accounting
        if notes is not None:
            body["notes"] = notes
        if journal_entry_items is not None:
            body["journalEntryItems"] = [dict(i) for i in journal_entry_items]
        if not body:
            raise ValueError("nothing to update")
        self._t.call(
            "PUT",
            f"/v1/journal-entries/{segment(number)}/basic-information",
            operation="journal-entries.basic-information",
            body=body,
        )

    def create(self, entry: Mapping[str, Any], *, idempotency_key: IdempotencyKey | None = None) -> str:
        """Create a manual summary journal entry (body as in section 8.5; item amounts may be
        :class:`Decimal` or numbers and are sent as exact decimal strings, the type zuora-sdk's
        ``CreateJournalEntryRequestItem`` declares); return its number (``JE-...``).
        The caller validates balance and currency first; Zuora validates again."""
        body = self._t.call(
            "POST",
            "/v1/journal-entries",
            operation="journal-entries.create",
            body=_with_decimal_strings(entry),
            idempotency_key=idempotency_key,
        )
        return str(required(body, "journalEntryNumber", "journal-entries.create"))


_ITEM_AMOUNTS = ("amount", "homeCurrencyAmount")


def _with_decimal_strings(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` with its items' amounts as decimal strings (``12.50``, never ``12.5``)."""
    body = dict(entry)
    items = body.get("journalEntryItems")
    if isinstance(items, list):
        body["journalEntryItems"] = [
            {k: (_decimal_text(v) if k in _ITEM_AMOUNTS else v) for k, v in item.items()}
            if isinstance(item, Mapping)
            else item
            for item in items
        ]
    return body


def _decimal_text(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | float | str):
        return value
    try:
        return format(to_decimal(value), "f")  # plain digits: str() would send 1E+2 or 1E-7
    except ValueError:
        return value  # Zuora names what is wrong with it
