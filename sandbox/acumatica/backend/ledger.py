"""General ledger writers: journal transactions (GL batches, section 6.5) and the reference data the
ledger rests on (accounts, subaccounts, currencies, ledgers, financial years and their periods).

A batch off Hold must balance; a financial year is created with its twelve monthly periods
(``financial_year``), which the API cannot add to.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sandbox.acumatica.records import Parsed, Row

from .state import ZERO, Touched, Write, money
from .validation import Validation

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


class Ledger(Validation):
    """The writers of JournalTransaction, Account, Subaccount, Currency, Ledger and FinancialPeriod."""

    def _write_journal(self, w: Write) -> None:
        spec, row, parsed, problems, ctx, created = w.spec, w.row, w.parsed, w.problems, w.ctx, w.created
        values = row.values
        if values.get("released"):
            self._apply(spec.obj, row, Parsed(note=parsed.note, custom=parsed.custom), problems, Touched())
            return
        touched = Touched()
        if created and values.get("module") is None:
            values["module"] = "GL"
        self._apply(
            spec.obj,
            row,
            parsed,
            problems,
            touched,
            frozen=frozenset() if created else frozenset({"Module", "BatchNbr"}),
        )
        sent = touched.sent(row.id)
        if created and values.get("module") != "GL":
            problems.add(
                ("Module",), f"Batches of the {values.get('module')} module cannot be created on this form."
            )
        if values.get("doc_date") is None:
            values["doc_date"] = ctx.business_date
        self._post_period(
            row, problems, module="GL", sent=sent, period_field="PostPeriod", date_field="TransactionDate"
        )
        if values.get("ledger") is None:
            values["ledger"] = "ACTUAL"
        self._exists(
            problems,
            ("LedgerID",),
            self._lookup("Ledger", str(values["ledger"])) is not None,
            "Ledger",
            values["ledger"],
        )
        if values.get("branch") is None:
            values["branch"] = ctx.branch or "HQ"
        self._exists(problems, ("BranchID",), self._branch_ok(values["branch"]), "Branch", values["branch"])
        if values.get("currency") is None:
            values["currency"] = "USD"
        self._exists(
            problems, ("CurrencyID",), self._currency_ok(values["currency"]), "Currency", values["currency"]
        )
        if created and "Hold" not in sent:
            values["hold"] = self.config.hold_on_entry
        if values.get("hold") is None:
            values["hold"] = False
        places = self._precision(values["currency"])
        debit = credit = ZERO
        lines = row.lines("lines")
        for line in lines:
            lv = line.values
            path = ("Details", line.id)
            if lv.get("LineNbr") is None:
                lv["LineNbr"] = self._next_line_nbr(lines)
            if lv.get("BranchID") is None:
                lv["BranchID"] = values["branch"]
            self._exists(
                problems, (*path, "BranchID"), self._branch_ok(lv["BranchID"]), "Branch", lv["BranchID"]
            )
            if self._required(problems, (*path, "Account"), lv.get("Account"), "Account") and self._exists(
                problems, (*path, "Account"), self._account_ok(lv["Account"]), "Account", lv["Account"]
            ):
                account = self._lookup("Account", str(lv["Account"]))
                lv["Description"] = account.values.get("Description") if account else None
            if lv.get("Subaccount") is None:
                lv["Subaccount"] = "000000"
            self._exists(
                problems,
                (*path, "Subaccount"),
                self._subaccount_ok(lv["Subaccount"]),
                "Subaccount",
                lv["Subaccount"],
            )
            for name in ("DebitAmount", "CreditAmount"):
                amount = money(lv.get(name) or ZERO, places)
                if amount < 0:
                    problems.add((*path, name), "The value must be greater than or equal to 0.")
                lv[name] = amount
            if lv.get("Qty") is None:
                lv["Qty"] = ZERO
            debit += lv["DebitAmount"]
            credit += lv["CreditAmount"]
        if not values["hold"] and debit != credit:
            # Out of balance: the batch cannot leave Hold (section 6.5).
            problems.top.append("Batch is out of balance, please review.")
        values["status"] = "On Hold" if values["hold"] else "Balanced"

    def _write_reference(self, w: Write) -> None:
        spec, row, parsed, problems, created = w.spec, w.row, w.parsed, w.problems, w.created
        key = spec.keys[0]
        self._apply(
            spec.obj, row, parsed, problems, Touched(), frozen=frozenset() if created else frozenset({key})
        )
        values = row.values
        if not self._required(problems, (key,), values.get(key), key):
            return
        if not created:
            return
        if spec.name == "Account":
            self.sequences["AccountID"] += 1
            values["AccountID"] = 1000 + self.sequences["AccountID"]
            for name, default in (
                ("Active", True),
                ("CashAccount", False),
                ("Type", "A"),
                ("PostOption", "Summary"),
            ):
                if values.get(name) is None:
                    values[name] = default
        elif spec.name == "Subaccount":
            self.sequences["SubaccountID"] += 1
            values["SubaccountID"] = 100 + self.sequences["SubaccountID"]
            if values.get("Active") is None:
                values["Active"] = True
        elif spec.name == "Currency":
            defaults: tuple[tuple[str, Any], ...] = (
                ("Active", True),
                ("DecimalPrecision", 2),
                ("UseForAccounting", False),
            )
            for name, default in defaults:
                if values.get(name) is None:
                    values[name] = default
        elif spec.name == "Ledger" and values.get("Type") is None:
            values["Type"] = "Actual"
        if values.get("CurrencyID") is not None and spec.name == "Account":
            self._exists(
                problems,
                ("CurrencyID",),
                self._currency_ok(values["CurrencyID"]),
                "Currency",
                values["CurrencyID"],
            )

    def _write_financial_year(self, w: Write) -> None:
        spec, row, parsed, problems, created = w.spec, w.row, w.parsed, w.problems, w.created
        before = {line.id for line in row.collections.get("periods", [])}
        self._apply(
            spec.obj,
            row,
            parsed,
            problems,
            Touched(),
            frozen=frozenset() if created else frozenset({"FinancialYear"}),
        )
        # Periods are generated with the year, not added through the API; new lines are dropped.
        row.collections["periods"] = [
            line for line in row.collections.get("periods", []) if line.id in before
        ]
        year = row.values.get("FinancialYear")
        if not self._required(problems, ("FinancialYear",), year, "Financial Year"):
            return
        if not (isinstance(year, str) and len(year) == 4 and year.isdigit()):
            problems.add(("FinancialYear",), f"'{year}' is not a valid financial year.")
            return
        if created:
            header, periods = financial_year(int(year), "Inactive")
            for key, value in header.items():
                if row.values.get(key) is None:
                    row.values[key] = value
            row.collections["periods"] = periods


def financial_year(year: int, status: str) -> tuple[dict[str, Any], list[Row]]:
    """The header values and twelve monthly period lines of a calendar financial year."""
    closed = status in ("Closed", "Locked")
    periods = []
    for month in range(1, 13):
        start = date(year, month, 1)
        end = (date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)) - timedelta(days=1)
        periods.append(
            Row(
                values={
                    "FinancialPeriodID": f"{month:02d}{year}",
                    "PeriodNbr": f"{month:02d}",
                    "StartDate": start,
                    "EndDate": end,
                    "Description": MONTHS[month - 1],
                    "LengthInDays": (end - start).days + 1,
                    "AdjustmentPeriod": False,
                    "Status": status,
                    "ClosedInAR": closed,
                    "ClosedInAP": closed,
                    "ClosedInCA": closed,
                    "ClosedInFA": closed,
                    "ClosedInIN": closed,
                }
            )
        )
    header = {
        "FinancialYear": str(year),
        "StartDate": date(year, 1, 1),
        "NbrOfPeriods": 12,
        "UserDefinedPeriods": False,
    }
    return header, periods
