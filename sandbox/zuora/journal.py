"""What a journal run books: summary journal entries from the period's posted transactions.

One entry per (transaction type, currency, segment values); its items are summed per accounting
code and side, and every entry balances (debits = credits, in transaction and home currency):

- Invoice Item: debit Accounts Receivable, credit the item's accounting code.
- Taxation Item: debit Accounts Receivable, credit Sales Tax Payable.
- Credit Memo Item (Charge) / (Tax): debit the item's code / Sales Tax Payable, credit AR.
- Debit Memo Item (Charge) / (Tax): debit AR, credit the item's code / Sales Tax Payable.
- Electronic/External Payment [Application [Item]]: debit the payment's cash code, credit AR for
  the applied part and Customer Cash on Account for the unapplied part.
- Electronic/External Refund [Application [Item]]: debit Customer Cash on Account, credit the
  refund's cash code.

A transaction line is booked once: lines already in an active entry (``taken``) are skipped, as
Zuora skips transactions already journalized. Credit Memo Application Item and Revenue Event Item
book nothing in the sandbox (applications move balances between AR sub-ledgers only).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from .catalog import (
    ACCOUNTING_CODES,
    ACCOUNTING_CODES_BY_ID,
    CASH_ON_ACCOUNT,
    RECEIVABLE,
    REGIONS,
    SALES_TAX,
    AccountingCode,
)
from .config import SandboxConfig
from .formats import money
from .tables import Table

LineKey = tuple[str, str]  # (transaction type, record id)


@dataclass
class DraftItem:
    code: AccountingCode
    type: str  # "Debit" | "Credit"
    amount: Decimal
    home_amount: Decimal


@dataclass
class DraftEntry:
    transaction_type: str
    currency: str
    segments: tuple[tuple[str, str], ...]
    items: list[DraftItem] = field(default_factory=list)
    lines: list[LineKey] = field(default_factory=list)


def revenue_code(item: dict[str, Any]) -> str:
    """The name of a memo item's recognized-revenue accounting code (memo items carry code ids);
    blank when it has none."""
    found = ACCOUNTING_CODES_BY_ID.get(item.get("RecognizedRevenueAccountingCodeId") or "")
    return found.name if found else ""


def code(name: str | None) -> AccountingCode:
    """The accounting code named ``name``; unknown names become an 'Other' revenue code."""
    if name and name in ACCOUNTING_CODES:
        return ACCOUNTING_CODES[name]
    label = name or "Sales Revenue"
    return ACCOUNTING_CODES.get(label) or AccountingCode(label, "OtherRevenue", "", label)


class _Book:
    def __init__(self, tables: dict[str, Table], config: SandboxConfig, taken: Container[LineKey]) -> None:
        self.tables = tables
        self.config = config
        self.taken = taken
        self.groups: dict[tuple[str, str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}
        self._regions: dict[str, str] = {}

    def segments(self, account_id: str | None) -> tuple[tuple[str, str], ...]:
        return tuple((name, self._segment(name, account_id)) for name in self.config.segment_names)

    def _segment(self, name: str, account_id: str | None) -> str:
        """``Region`` (from the bill-to country) or ``Account`` (the account number): the GL
        segmentation rule's fields; any other name, or no account, is ``Unassigned``."""
        if account_id is None or name not in ("Region", "Account"):
            return "Unassigned"
        if name == "Account":
            account = self.tables["Account"].rows.get(account_id)
            return str(account["AccountNumber"]) if account else "Unassigned"
        if account_id not in self._regions:
            account = self.tables["Account"].rows.get(account_id)
            contact = self.tables["Contact"].rows.get(account["BillToId"]) if account else None
            country = contact["Country"] if contact else None
            self._regions[account_id] = REGIONS.get(country or "", "Other")
        return self._regions[account_id]

    def post(
        self,
        ttype: str,
        currency: str,
        account_id: str | None,
        line_id: str,
        postings: list[tuple[str, str, Decimal]],
    ) -> None:
        key: LineKey = (ttype, line_id)
        if key in self.taken or not any(amount for _, _, amount in postings):
            return
        group = self.groups.setdefault(
            (ttype, currency, self.segments(account_id)), {"sums": {}, "lines": []}
        )
        for name, side, amount in postings:
            if amount:
                group["sums"][(name, side)] = group["sums"].get((name, side), Decimal("0.00")) + amount
        group["lines"].append(key)

    def entries(self) -> list[DraftEntry]:
        out = []
        for (ttype, currency, segments), group in self.groups.items():
            rate = Decimal(self.config.fx_rate(currency) or "1") if self.config.fx_enabled else Decimal(1)
            entry = DraftEntry(ttype, currency, segments, lines=list(group["lines"]))
            ordered = sorted(group["sums"].items(), key=lambda kv: (kv[0][1] != "Debit", kv[0][0]))
            for (name, side), amount in ordered:
                if amount == 0:
                    continue
                entry.items.append(DraftItem(code(name), side, amount, money(amount * rate)))
            _balance_home(entry.items)
            if entry.items:
                out.append(entry)
        return out


def _balance_home(items: list[DraftItem]) -> None:
    """Rounding each line to cents can leave home amounts a cent apart; move it to the last credit."""
    debit = sum((i.home_amount for i in items if i.type == "Debit"), Decimal("0.00"))
    credit = sum((i.home_amount for i in items if i.type == "Credit"), Decimal("0.00"))
    credits = [i for i in items if i.type == "Credit"]
    if debit != credit and credits:
        credits[-1].home_amount += debit - credit


def _in(day: date | None, start: date, end: date) -> bool:
    return day is not None and start <= day <= end


def draft_entries(
    tables: dict[str, Table],
    start: date,
    end: date,
    *,
    types: Sequence[str],
    taken: Container[LineKey],
    config: SandboxConfig,
) -> list[DraftEntry]:
    """The summary entries a run over ``start..end`` for ``types`` books, skipping ``taken`` lines."""
    book = _Book(tables, config, taken)
    wanted = set(types)
    if wanted & {"Invoice Item", "Taxation Item"}:
        for invoice in tables["Invoice"]:
            if invoice["Status"] != "Posted" or not _in(invoice["InvoiceDate"], start, end):
                continue
            for item in tables["InvoiceItem"].where("InvoiceId", invoice["Id"]):
                if "Invoice Item" in wanted:
                    amount = item["ChargeAmount"] or Decimal(0)
                    book.post(
                        "Invoice Item",
                        invoice["Currency"],
                        invoice["AccountId"],
                        item["Id"],
                        [(RECEIVABLE, "Debit", amount), (item["AccountingCode"], "Credit", amount)],
                    )
                if "Taxation Item" in wanted:
                    tax = item["TaxAmount"] or Decimal(0)
                    book.post(
                        "Taxation Item",
                        invoice["Currency"],
                        invoice["AccountId"],
                        item["Id"],
                        [(RECEIVABLE, "Debit", tax), (SALES_TAX, "Credit", tax)],
                    )
    for memo_kind, item_table, key in (
        ("Credit Memo", "CreditMemoItem", "CreditMemoId"),
        ("Debit Memo", "DebitMemoItem", "DebitMemoId"),
    ):
        charge_type, tax_type = f"{memo_kind} Item (Charge)", f"{memo_kind} Item (Tax)"
        if not wanted & {charge_type, tax_type}:
            continue
        for memo in tables[memo_kind.replace(" ", "")]:
            if memo["Status"] != "Posted" or not _in(memo["MemoDate"], start, end):
                continue
            for item in tables[item_table].where(key, memo["Id"]):
                charge, tax = item["AmountWithoutTax"] or Decimal(0), item["TaxAmount"] or Decimal(0)
                credit = memo_kind == "Credit Memo"
                if charge_type in wanted:
                    book.post(
                        charge_type,
                        memo["Currency"],
                        memo["AccountId"],
                        item["Id"],
                        [
                            (revenue_code(item), "Debit" if credit else "Credit", charge),
                            (RECEIVABLE, "Credit" if credit else "Debit", charge),
                        ],
                    )
                if tax_type in wanted:
                    book.post(
                        tax_type,
                        memo["Currency"],
                        memo["AccountId"],
                        item["Id"],
                        [
                            (SALES_TAX, "Debit" if credit else "Credit", tax),
                            (RECEIVABLE, "Credit" if credit else "Debit", tax),
                        ],
                    )
    for payment in tables["Payment"]:
        if payment["Status"] != "Processed" or not _in(payment["EffectiveDate"], start, end):
            continue
        ttype = _payment_type(str(payment["Type"]), "Payment", wanted)
        if ttype is None:
            continue
        applied, unapplied = payment["AppliedAmount"] or Decimal(0), payment["UnappliedAmount"] or Decimal(0)
        book.post(
            ttype,
            payment["Currency"],
            payment["AccountId"],
            payment["Id"],
            [
                (payment["AccountingCode"] or "Cash", "Debit", applied + unapplied),
                (RECEIVABLE, "Credit", applied),
                (CASH_ON_ACCOUNT, "Credit", unapplied),
            ],
        )
    for refund in tables["Refund"]:
        if refund["Status"] != "Processed" or not _in(refund["RefundDate"], start, end):
            continue
        ttype = _payment_type(str(refund["Type"]), "Refund", wanted)
        if ttype is None:
            continue
        amount = refund["Amount"] or Decimal(0)
        book.post(
            ttype,
            refund["Currency"],
            refund["AccountId"],
            refund["Id"],
            [(CASH_ON_ACCOUNT, "Debit", amount), (refund["AccountingCode"] or "Cash", "Credit", amount)],
        )
    return book.entries()


def _payment_type(kind: str, noun: str, wanted: set[str]) -> str | None:
    """The first enabled flavour of '<Electronic|External> <Payment|Refund>[ Application[ Item]]'."""
    for suffix in (" Application Item", " Application", ""):
        name = f"{kind} {noun}{suffix}"
        if name in wanted:
            return name
    return None
