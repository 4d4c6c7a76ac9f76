"""A Zuora summary journal entry -> a balanced GL journal."""

from __future__ import annotations

from shared.erp.base import ZERO, Journal, JournalLine, UnbalancedJournal, period_of
from shared.mapping.file import InconsistentRecord, Mapping
from shared.mapping.records import Row, _amount, _currency, _date, _optional_text, _text
from shared.zuora.records import get_field


def journal_from_summary_entry(entry: Row, mapping: Mapping) -> Journal:
    """A Zuora summary journal entry as a balanced GL journal (zuora-api.md section 8.2).

    Each item's ``accountingCodeName`` maps to an account; ``Debit``/``Credit`` give the side (a
    negative amount moves to the other side). The description is ``"<JE number> <transaction
    type> <period name>"``; the posting period is the entry date's month. An unbalanced entry
    raises :class:`InconsistentRecord`.
    """
    number = _text(entry, "number", record="journal entry")
    record = f"journal entry {number}"
    if _optional_text(entry, "status") == "Cancelled":
        raise InconsistentRecord(f"{record} is Cancelled in Zuora")
    entry_date = _date(entry, "journalEntryDate", record=record)
    items = get_field(entry, "journalEntryItems")
    if not isinstance(items, list) or not items:
        raise InconsistentRecord(f"{record}: no journal entry items")
    lines = []
    for item in items:
        code = _optional_text(item, "accountingCodeName") or ""
        target = mapping.account(code, record=record)
        amount = _amount(item, "amount", record=record)
        side = _optional_text(item, "type")
        if side not in ("Debit", "Credit"):
            raise InconsistentRecord(f"{record}: item type must be Debit or Credit, not {side!r}")
        debit = (side == "Debit") == (amount >= 0)
        lines.append(
            JournalLine(
                account=target.account,
                subaccount=target.subaccount,
                debit=abs(amount) if debit else ZERO,
                credit=ZERO if debit else abs(amount),
                description=code,
            )
        )
    words = [number, _optional_text(entry, "transactionType"), _optional_text(entry, "accountingPeriodName")]
    try:
        return Journal(
            natural_key=number,
            date=entry_date,
            post_period=period_of(entry_date),
            currency=_currency(entry, mapping, record),
            ledger=mapping.erp.ledger,
            branch=mapping.erp.branch,
            description=" ".join(w for w in words if w),
            lines=tuple(lines),
        )
    except UnbalancedJournal as exc:
        raise InconsistentRecord(f"{record}: {exc}") from exc
