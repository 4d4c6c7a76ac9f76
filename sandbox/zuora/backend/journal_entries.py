"""Summary journal entries (section 8): read, create manually, mark transferred, cancel, delete.

``update_journal_entry_basic`` is how a client marks an entry ``transferredToAccounting``; going
back from ``Yes`` needs the Override Transferred to Accounting permission (a config knob). A manual
entry must balance in transaction and home currency and carry every segment of the rule (8.5).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox.zuora.catalog import ACCOUNTING_CODES
from sandbox.zuora.config import SandboxConfig
from sandbox.zuora.errors import RESOURCE_JOURNAL_ENTRY, Forbidden, invalid, missing, not_found, rule
from sandbox.zuora.formats import finance_datetime, money, number_json
from sandbox.zuora.seed import SANDBOX_USER

from .state import TRANSFERRED_REST, JournalEntry, TenantState, object_body, required_date


class JournalEntries(TenantState):
    """``/v1/journal-entries`` and ``/v1/journal-entries/{number}/...``."""

    def get_journal_entry(self, number: str) -> dict[str, Any]:
        """The entry as ``GET /v1/journal-entries/{number}`` gives it."""
        with self._lock:
            self._advance()
            return {**self._render_entry(self._entry(number)), "success": True}

    def update_journal_entry_basic(self, number: str, body: Any) -> None:
        """Change notes, transferredToAccounting and the items' accounting codes; a cancelled
        entry keeps its transfer status, and leaving ``Yes`` needs the override permission (403)."""
        res = RESOURCE_JOURNAL_ENTRY
        body = object_body(body, resource=res)
        with self._lock:
            self._advance()
            entry = self._entry(number)
            notes = body.get("notes")
            if notes is not None and (not isinstance(notes, str) or len(notes) > 2000):
                raise invalid("notes must be a string of at most 2000 characters", resource=res)
            value = body.get("transferredToAccounting")
            if value is not None:
                if value not in TRANSFERRED_REST:
                    raise invalid(
                        f"transferredToAccounting must be one of {', '.join(TRANSFERRED_REST)}", resource=res
                    )
                if entry.status == "Cancelled":
                    raise rule(
                        f"Journal entry {number} is cancelled; its transfer status cannot change.",
                        resource=res,
                    )
                if (
                    entry.transferred == "Yes"
                    and value != "Yes"
                    and not self._config.override_transferred_permission
                ):
                    raise Forbidden("You do not have the Override Transferred to Accounting permission.")
            repoint = self._repoint_items(entry, body.get("journalEntryItems"))
            if notes is not None:
                entry.notes = notes
            if value is not None:
                entry.yes_writes += value == "Yes"
                if value == "Yes" and entry.transferred != "Yes":
                    entry.transferred_by, entry.transfer_at = SANDBOX_USER, self._now_dt()
                elif value != "Yes":
                    entry.transferred_by, entry.transfer_at = None, None
                entry.transferred = value
            for item, (name, code_type) in repoint:
                item["accountingCodeName"], item["accountingCodeType"] = name, code_type

    def _repoint_items(self, entry: JournalEntry, items: Any) -> list[tuple[dict[str, Any], tuple[str, str]]]:
        """Match the i-th given Debit/Credit item to the entry's i-th item of that side."""
        res = RESOURCE_JOURNAL_ENTRY
        if items is None:
            return []
        if not isinstance(items, list):
            raise invalid("journalEntryItems must be an array", resource=res)
        seen = {"Debit": 0, "Credit": 0}
        out = []
        for item in items:
            if not isinstance(item, dict) or "accountingCodeName" not in item or item.get("type") not in seen:
                raise missing(
                    "each journalEntryItems entry needs accountingCodeName and type (Debit|Credit)",
                    resource=res,
                )
            side = item["type"]
            same_side = [i for i in entry.items if i["type"] == side]
            if seen[side] >= len(same_side):
                raise invalid(f"more {side} items than the entry has", resource=res)
            target = same_side[seen[side]]
            seen[side] += 1
            name = str(item["accountingCodeName"])
            known = ACCOUNTING_CODES.get(name)
            code_type = item.get("accountingCodeType") or (
                known.type if known else target["accountingCodeType"]
            )
            out.append((target, (name, str(code_type))))
        return out

    def create_journal_entry(self, body: Any) -> dict[str, Any]:
        """A manual summary journal entry, validated as section 8.5 describes."""
        res = RESOURCE_JOURNAL_ENTRY
        body = object_body(body, resource=res)
        entry_date = required_date(body, "journalEntryDate", res)
        for name in ("accountingPeriodName", "currency", "journalEntryItems"):
            if not body.get(name):
                raise missing(f"{name} is required", resource=res)
        items = body["journalEntryItems"]
        if not isinstance(items, list):
            raise invalid("journalEntryItems must be an array", resource=res)
        with self._lock:
            self._advance()
            config = self._config
            currency = body["currency"]
            if currency not in config.currencies:
                raise invalid(f"Currency {currency} is not an active currency", resource=res)
            period = self._period_by_name(str(body["accountingPeriodName"]))
            if period is None:
                raise invalid(
                    f"Accounting period {body['accountingPeriodName']} does not exist", resource=res
                )
            if period["Status"] != "Open":
                raise rule(
                    f"Accounting period {period['Name']} is {period['Status']}; journal entries need an "
                    "open period.",
                    resource=res,
                )
            transferred = body.get("transferredToAccounting", "No")
            if transferred not in TRANSFERRED_REST:
                raise invalid(
                    f"transferredToAccounting must be one of {', '.join(TRANSFERRED_REST)}", resource=res
                )
            notes = body.get("notes")
            if notes is not None and (not isinstance(notes, str) or len(notes) > 2000):
                raise invalid("notes must be a string of at most 2000 characters", resource=res)
            segments = self._manual_segments(body.get("segments"))
            booked = [self._manual_item(item, config) for item in items]
            for amount_key in ("amount", "homeCurrencyAmount"):
                debit = sum(
                    (i[amount_key] for i in booked if i["type"] == "Debit" and i[amount_key] is not None),
                    Decimal(0),
                )
                credit = sum(
                    (i[amount_key] for i in booked if i["type"] == "Credit" and i[amount_key] is not None),
                    Decimal(0),
                )
                if debit != credit:
                    raise rule(
                        f"The sum of debit {amount_key} ({debit}) must equal the sum of credit "
                        f"{amount_key} ({credit}).",
                        resource=res,
                    )
            number = f"JE-{self._factory.next_number('JournalEntry'):08d}"
            entry = JournalEntry(
                number,
                None,
                entry_date,
                period["Name"],
                period["StartDate"],
                period["EndDate"],
                currency,
                config.home_currency,
                None,
                segments,
                booked,
                [],
                transferred=transferred,
                notes=notes,
                created_at=self._now_dt(),
            )
            if transferred == "Yes":
                entry.transferred_by, entry.transfer_at = SANDBOX_USER, self._now_dt()
            self._entries[number] = entry
            return {"journalEntryNumber": number, "success": True}

    def _manual_segments(self, raw: Any) -> list[tuple[str, str]]:
        res = RESOURCE_JOURNAL_ENTRY
        expected = list(self._config.segment_names)
        given = raw or []
        if not isinstance(given, list) or not all(isinstance(s, dict) for s in given):
            raise invalid("segments must be an array of {segmentName, segmentValue}", resource=res)
        names = [s.get("segmentName") for s in given]
        if names != expected:
            # All segments of the default segmentation rule, in rule order (section 8.5).
            raise invalid(f"segments must be exactly {expected} in this order, got {names}", resource=res)
        return [(str(s["segmentName"]), str(s.get("segmentValue", ""))) for s in given]

    def _manual_item(self, item: Any, config: SandboxConfig) -> dict[str, Any]:
        res = RESOURCE_JOURNAL_ENTRY
        if not isinstance(item, dict):
            raise invalid("each journal entry item must be an object", resource=res)
        for name in ("accountingCodeName", "type", "amount"):
            if item.get(name) in (None, ""):
                raise missing(f"journalEntryItems[].{name} is required", resource=res)
        if item["type"] not in ("Debit", "Credit"):
            raise invalid("journalEntryItems[].type must be Debit or Credit", resource=res)
        known = ACCOUNTING_CODES.get(str(item["accountingCodeName"]))
        if known is None:
            raise invalid(f"Accounting code {item['accountingCodeName']} does not exist", resource=res)
        if item.get("accountingCodeType") not in (None, known.type):
            raise invalid(f"Accounting code {known.name} has type {known.type}", resource=res)
        try:
            amount = money(item["amount"])
        except ValueError as exc:
            raise invalid(f"amount: {exc}", resource=res) from exc
        if amount <= 0:
            raise invalid("amount must be positive", resource=res)
        home: Decimal | None = None
        if config.fx_enabled:
            if item.get("homeCurrencyAmount") is None:
                raise missing(
                    "homeCurrencyAmount is required when foreign currency conversion is enabled", resource=res
                )
            try:
                home = money(item["homeCurrencyAmount"])
            except ValueError as exc:
                raise invalid(f"homeCurrencyAmount: {exc}", resource=res) from exc
        elif item.get("homeCurrencyAmount") is not None:
            raise invalid(
                "homeCurrencyAmount must not be sent without foreign currency conversion", resource=res
            )
        return {
            "accountingCodeName": known.name,
            "accountingCodeType": known.type,
            "glAccountName": known.gl_account_name,
            "glAccountNumber": known.gl_account_number,
            "type": item["type"],
            "amount": amount,
            "homeCurrencyAmount": home,
        }

    def cancel_journal_entry(self, number: str) -> None:
        """Cancel the entry and free its lines; refused once it is transferred (Yes or Processing)."""
        with self._lock:
            self._advance()
            entry = self._entry(number)
            if entry.status == "Cancelled":
                raise rule(f"Journal entry {number} is already cancelled.", resource=RESOURCE_JOURNAL_ENTRY)
            if entry.transferred in ("Yes", "Processing"):
                raise rule(
                    f"Journal entry {number} has been transferred to accounting ({entry.transferred}) "
                    "and cannot be cancelled.",
                    resource=RESOURCE_JOURNAL_ENTRY,
                )
            self._cancel_entry(entry)

    def delete_journal_entry(self, number: str) -> None:
        """Delete a cancelled entry (and drop it from its run)."""
        with self._lock:
            self._advance()
            entry = self._entry(number)
            if entry.status != "Cancelled":
                raise rule(
                    f"Only a cancelled journal entry can be deleted; {number} is {entry.status}.",
                    resource=RESOURCE_JOURNAL_ENTRY,
                )
            del self._entries[number]
            if entry.run_number and entry.run_number in self._runs:
                run = self._runs[entry.run_number]
                run.entry_numbers = [n for n in run.entry_numbers if n != number]

    def _cancel_entry(self, entry: JournalEntry) -> None:
        entry.status = "Cancelled"
        for line in entry.lines:
            if self._taken.get(line) == entry.number:
                del self._taken[line]

    def _entry(self, number: str) -> JournalEntry:
        entry = self._entries.get(number)
        if entry is None:
            raise not_found(f"Journal entry {number} does not exist.", resource=RESOURCE_JOURNAL_ENTRY)
        return entry

    def _render_entry(self, entry: JournalEntry) -> dict[str, Any]:
        return {
            "number": entry.number,
            "status": entry.status,
            "journalEntryDate": entry.journal_entry_date.isoformat(),
            "accountingPeriodName": entry.period_name,
            "currency": entry.currency,
            "homeCurrency": entry.home_currency,
            "aggregateCurrency": False,
            "transactionType": entry.transaction_type,
            "timePeriodStart": entry.period_start.isoformat(),
            "timePeriodEnd": entry.period_end.isoformat(),
            "transferredToAccounting": entry.transferred,
            "transferredBy": entry.transferred_by,
            "transferDateTime": finance_datetime(entry.transfer_at, self.zone),
            "notes": entry.notes,
            "segments": [{"segmentName": n, "segmentValue": v} for n, v in entry.segments],
            "journalEntryItems": [
                {
                    **item,
                    "amount": number_json(item["amount"]),
                    "homeCurrencyAmount": None
                    if item["homeCurrencyAmount"] is None
                    else number_json(item["homeCurrencyAmount"]),
                }
                for item in entry.items
            ],
        }
