"""A summary journal entry as the close stores what it posted, and as it adds up per (ERP account,
currency) for reconciling."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from shared.close.state import TotalsRow
from shared.erp.base import Journal, Totals
from shared.mapping import Mapping as GlMapping
from shared.mapping import Unmapped
from shared.zuora.journal import JournalEntry

TotalsKey = tuple[str, str]
"""(ERP account, ERP currency)."""


def journal_payload(journal: Journal) -> dict[str, Any]:
    """The journal as stored in ``SyncRecord.posted_payload`` (exact Decimals): what was sent."""
    return {
        "natural_key": journal.natural_key,
        "date": journal.date.isoformat(),
        "post_period": journal.period,
        "currency": journal.currency,
        "ledger": journal.ledger,
        "branch": journal.branch,
        "description": journal.description,
        "lines": [
            {
                "account": line.account,
                "subaccount": line.subaccount,
                "debit": line.debit,
                "credit": line.credit,
                "description": line.description,
            }
            for line in journal.lines
        ],
    }


def entry_totals(payload: Mapping[str, Any], mapping: GlMapping) -> dict[TotalsKey, Totals]:
    """Debit/credit per (ERP account, ERP currency) of one Zuora entry, mapped like the journal
    that is posted (a negative amount counts on the other side). An unmapped code or currency is
    kept under ``"unmapped <name>"`` so it shows up as a difference instead of vanishing."""
    entry = JournalEntry.from_json(payload)
    try:
        currency = mapping.currency(entry.currency or "")
    except Unmapped:
        currency = f"unmapped {entry.currency}"
    totals: dict[TotalsKey, Totals] = {}
    for item in entry.items:
        code = item.accounting_code_name or ""
        try:
            account = mapping.account(code).account
        except Unmapped:
            account = f"unmapped {code}"
        debit_side = (item.type == "Debit") == (item.amount >= 0)
        amount = abs(item.amount)
        line = Totals(amount, Decimal(0)) if debit_side else Totals(Decimal(0), amount)
        totals[(account, currency)] = totals.get((account, currency), Totals()) + line
    return totals


def add_totals(into: dict[TotalsKey, Totals], more: Mapping[TotalsKey, Totals]) -> None:
    """Add ``more`` into ``into``, key by key."""
    for key, value in more.items():
        into[key] = into.get(key, Totals()) + value


def totals_rows(totals: Mapping[TotalsKey, Totals]) -> list[TotalsRow]:
    """``totals`` as stored in a step's state, sorted by account and currency."""
    return [
        TotalsRow(account=account, currency=currency, debit=t.debit, credit=t.credit)
        for (account, currency), t in sorted(totals.items())
    ]


def totals_from_rows(rows: Iterable[TotalsRow]) -> dict[TotalsKey, Totals]:
    """The inverse of :func:`totals_rows`."""
    return {(row.account, row.currency): Totals(row.debit, row.credit) for row in rows}
