"""Records through the control plane (``/_sandbox/records``, ``/_sandbox/state``): create a record
with realistic defaults, change one, and read any table back as plain JSON for assertions.

A created record keeps its parents consistent (an invoice item adds to its invoice's totals, a
payment applied to an invoice lowers its balance) and emits the event a posted record emits, so
the callout sender (``sandbox.zuora.callouts``) sees it as it would see Zuora's.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sandbox.zuora.catalog import PRODUCTS, TAX_RATES
from sandbox.zuora.formats import money
from sandbox.zuora.schema import OBJECTS, TABLES, Kind, ObjectType, coerce, plain
from sandbox.zuora.seed import (
    ELECTRONIC_TYPES,
    apply_payment,
    build_item,
    invoice_row,
    memo_row,
    payment_row,
    refund_row,
)

from .state import PeriodState, TenantState

# Event category codes (section 12.4) for a record posted through the control plane.
POSTED_EVENTS: dict[str, int] = {"Invoice": 1110, "Payment": 2120, "CreditMemo": 2720, "DebitMemo": 2820}


class Records(TenantState):
    """Control-plane record creation, changes and state views."""

    def add_record(self, table: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Create a record through the control plane with realistic defaults; returns it (plain JSON).

        Raises ``ValueError`` for an unknown table or field, or a value of the wrong type.
        """
        obj = _table_object(table)
        with self._lock:
            self._advance()
            row = _Adder(self, obj).add(dict(fields))
            for changed in self._tables.values():
                changed.invalidate()  # adders adjust parents' totals in place
            return self._plain(row)

    def update_record(
        self, table: str, row_id: str, fields: Mapping[str, Any], updated_date: str | None = None
    ) -> dict[str, Any]:
        """Change fields and bump UpdatedDate (to ``updated_date`` when given, to simulate a late commit)."""
        obj = _table_object(table)
        with self._lock:
            self._advance()
            row = self._tables[obj.name].get(row_id)
            if row is None:
                raise KeyError(f"{obj.name} {row_id} does not exist")
            changes = _coerce_fields(obj, fields, self.zone)
            changes.pop("Id", None)
            stamp = coerce(Kind.DATETIME, updated_date, self.zone) if updated_date else None
            if "UpdatedDate" in changes:
                stamp = changes.pop("UpdatedDate")
            self._touch(obj, row, changes, stamp)
            return self._plain(row)

    def state(self, table: str) -> list[dict[str, Any]]:
        """Every record of ``table`` as plain JSON (journal runs/entries and periods rendered)."""
        with self._lock:
            self._advance()
            if table == "journal-runs":
                return [self._render_run(r) for r in self._runs.values()]
            if table == "journal-entries":
                return [
                    {**self._render_entry(e), "_sandbox": {"yesWrites": e.yes_writes}}
                    for e in self._entries.values()
                ]
            obj = _table_object(table)
            if obj.name == "AccountingPeriod":
                return [
                    self._render_period(p)
                    for p in sorted(self._tables[obj.name], key=lambda p: p["StartDate"])
                ]
            zone = self.zone
            return [plain(dict(row), zone) for row in self._tables[obj.name]]

    def state_record(self, table: str, key: str) -> dict[str, Any]:
        """One record of ``table`` by id or number (journal runs/entries and periods rendered);
        ``KeyError`` when there is none."""
        with self._lock:
            self._advance()
            if table == "journal-runs":
                return self._render_run(self._run(key))
            if table == "journal-entries":
                return self._render_entry(self._entry(key))
            obj = _table_object(table)
            row = self._tables[obj.name].get(key)
            if row is None:
                raise KeyError(f"{obj.name} {key} does not exist")
            if obj.name == "AccountingPeriod":
                return self._render_period(row)
            return self._plain(row)


class _Adder:
    """Builds one control-plane record with defaults and keeps parents' totals consistent."""

    def __init__(self, backend: Records, obj: ObjectType) -> None:
        self.b = backend
        self.obj = obj
        self.tables = backend._tables
        self.factory = backend._factory
        self.zone = backend.zone
        self.now = backend._now_dt()

    def add(self, fields: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_add_{self.obj.name}", None)
        return handler(fields) if handler else self._generic(fields)

    def _fields(self, fields: Mapping[str, Any], obj: ObjectType | None = None) -> dict[str, Any]:
        return _coerce_fields(obj or self.obj, fields, self.zone)

    def _account_for(self, given: dict[str, Any]) -> dict[str, Any]:
        account_id = given.get("AccountId")
        if account_id is None:
            first = next(iter(self.tables["Account"]), None)
            if first is None:
                raise ValueError("AccountId is required (no accounts exist)")
            return first
        account = self.tables["Account"].get(account_id)
        if account is None:
            raise ValueError(f"account {account_id} does not exist")
        return account

    def _insert(self, obj: ObjectType, row: dict[str, Any]) -> dict[str, Any]:
        row.setdefault("Id", self.factory.new_id())
        for key, value in self.factory.stamp(self.now).items():
            row.setdefault(key, value)
        return self.tables[obj.name].insert(row)

    def _posted(self, obj: ObjectType, row: dict[str, Any], **details: Any) -> None:
        number = row.get(obj.number_field) if obj.number_field else None
        category = POSTED_EVENTS.get(obj.name)
        if obj.name == "Refund":
            category = 2430 if row.get("SourceType") == "CreditMemo" else 2410
        self.b._emit("posted", obj.name, row["Id"], number, category, **details)

    def _generic(self, fields: dict[str, Any]) -> dict[str, Any]:
        row = self._insert(self.obj, self._fields(fields))
        self.b._emit("posted", self.obj.name, row["Id"], None, None)
        return row

    def _add_Account(self, fields: dict[str, Any]) -> dict[str, Any]:
        given = self._fields(fields)
        currency = given.get("Currency") or "USD"
        account = self.factory.account(currency, self.now, erp_id=False)
        if not given.get("BillToId"):
            contact = self._insert(
                OBJECTS["Contact"], self.factory.contact(account["Id"], "United States", self.now)
            )
            account.update(BillToId=contact["Id"], SoldToId=contact["Id"], ShipToId=contact["Id"])
        if not given.get("DefaultPaymentMethodId"):
            method = self._insert(
                OBJECTS["PaymentMethod"], self.factory.payment_method(account["Id"], "CreditCard", self.now)
            )
            account["DefaultPaymentMethodId"] = method["Id"]
        account.update(given)
        row = self._insert(self.obj, account)
        self.b._emit("posted", "Account", row["Id"], row["AccountNumber"], None)
        return row

    def _item_drafts(
        self, raw_items: Any, currency: str, item_obj: ObjectType
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        if raw_items is None:
            raw_items = [{}]
        if not isinstance(raw_items, list) or not all(isinstance(i, dict) for i in raw_items):
            raise ValueError("items must be an array of objects")
        drafts = []
        for raw in raw_items:
            given = self._fields(raw, item_obj)
            sku = given.get("SKU") or given.get("Sku")
            product = next((p for p in PRODUCTS if p.sku == sku), PRODUCTS[0])
            quantity = given.get("Quantity") or Decimal(1)
            draft = self.factory.item_from_product(product, currency, quantity)
            price = given.get("UnitPrice")
            if price is not None:
                draft["UnitPrice"] = price
                draft["_amount"] = money(price * quantity)
                draft["_tax"] = money(draft["_amount"] * TAX_RATES.get(currency, Decimal(0)))
            charge = given.get("ChargeAmount", given.get("AmountWithoutTax"))
            if charge is not None:
                draft["_amount"] = money(charge)
                draft["_tax"] = money(charge * TAX_RATES.get(currency, Decimal(0)))
            if given.get("TaxAmount") is not None:
                draft["_tax"] = money(given["TaxAmount"])
            drafts.append((draft, given))
        return drafts

    def _add_Invoice(self, fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        raw_items = _pop_any(fields, "items", "invoiceItems", "InvoiceItems")
        given = self._fields(fields)
        account = self._account_for(given)
        drafts = self._item_drafts(raw_items, account["Currency"], OBJECTS["InvoiceItem"])
        invoice_date = given.get("InvoiceDate") or self.now.date()
        posted = given.get("Status", "Posted") == "Posted"
        invoice = invoice_row(
            self.factory, account, invoice_date, self.now, [d for d, _ in drafts], posted=posted
        )
        items = invoice.pop("_items")
        overrides = [g for _, g in drafts]
        invoice.update(given)
        row = self.tables["Invoice"].insert(invoice)
        for item, override in zip(items, overrides, strict=True):
            item.update(
                ChargeDate=datetime.combine(invoice_date, datetime.min.time(), self.zone),
                ServiceStartDate=invoice_date,
                ServiceEndDate=invoice_date,
                **self.factory.stamp(self.now),
            )
            item.update(
                {k: v for k, v in override.items() if k not in ("ChargeAmount", "TaxAmount", "UnitPrice")}
            )
            self.tables["InvoiceItem"].insert(item)
        if row["Status"] == "Posted":
            self._posted(self.obj, row)
        return row

    def _add_InvoiceItem(self, fields: dict[str, Any]) -> dict[str, Any]:
        given = self._fields(fields)
        invoice = self.tables["Invoice"].get(given.get("InvoiceId") or "")
        if invoice is None:
            raise ValueError("InvoiceId of an existing invoice is required")
        ((draft, override),) = self._item_drafts([fields], invoice["Currency"], self.obj)
        item = build_item(self.factory, draft, invoice, "InvoiceItem")
        item.update(
            ChargeDate=datetime.combine(invoice["InvoiceDate"], datetime.min.time(), self.zone),
            ServiceStartDate=invoice["InvoiceDate"],
            ServiceEndDate=invoice["InvoiceDate"],
        )
        item.update(
            {k: v for k, v in override.items() if k not in ("ChargeAmount", "TaxAmount", "UnitPrice")}
        )
        row = self._insert(self.obj, item)
        tax, charge = row["TaxAmount"], row["ChargeAmount"]
        self.b._touch(
            OBJECTS["Invoice"],
            invoice,
            {
                "Amount": invoice["Amount"] + charge + tax,
                "AmountWithoutTax": invoice["AmountWithoutTax"] + charge,
                "TaxAmount": invoice["TaxAmount"] + tax,
                "Balance": invoice["Balance"] + charge + tax,
            },
        )
        return row

    def _add_Payment(self, fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        invoice_key = _pop_any(fields, "invoiceId", "InvoiceId", "invoice")
        given = self._fields(fields)
        invoice = self.tables["Invoice"].get(invoice_key) if invoice_key else None
        if invoice_key and invoice is None:
            raise ValueError(f"invoice {invoice_key} does not exist")
        if invoice is not None:
            given.setdefault("AccountId", invoice["AccountId"])
        account = self._account_for(given)
        method = self.tables["PaymentMethod"].get(
            given.get("PaymentMethodId") or account["DefaultPaymentMethodId"]
        )
        kind = given.get("Type") or (
            "Electronic" if method and method["Type"] in ELECTRONIC_TYPES else "External"
        )
        amount = given.get("Amount") or (invoice["Balance"] if invoice else Decimal("100.00"))
        effective = given.get("EffectiveDate") or self.now.date()
        row = payment_row(
            self.factory,
            account,
            method,
            amount=money(amount),
            effective=effective,
            created=self.now,
            electronic=kind == "Electronic",
        )
        row.update({k: v for k, v in given.items() if k not in ("Amount",)})
        row = self.tables["Payment"].insert(row)
        if invoice is not None:
            apply_payment(
                self.factory,
                self.tables,
                row,
                invoice,
                applied=min(row["Amount"], invoice["Balance"]),
                effective=effective,
                created=self.now,
                updated=self.now,
            )
            self.b._touch(OBJECTS["Invoice"], invoice, {})
        self._posted(self.obj, row, type=row["Type"])
        return row

    def _add_Refund(self, fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        payment_key = _pop_any(fields, "paymentId", "PaymentId")
        memo_key = _pop_any(fields, "creditMemoId", "CreditMemoId")
        given = self._fields(fields)
        source = (
            self.tables["Payment"].get(payment_key)
            if payment_key
            else self.tables["CreditMemo"].get(memo_key)
            if memo_key
            else None
        )
        if (payment_key or memo_key) and source is None:
            raise ValueError(f"refund source {payment_key or memo_key} does not exist")
        if source is not None:
            given.setdefault("AccountId", source["AccountId"])
        account = self._account_for(given)
        method = self.tables["PaymentMethod"].get(
            given.get("PaymentMethodId") or account["DefaultPaymentMethodId"]
        )
        # A payment refunds only its unapplied amount, a credit memo its open balance.
        refundable = (
            (source["Balance"] if memo_key else source["UnappliedAmount"]) if source is not None else None
        )
        amount = money(given.get("Amount") or (refundable if refundable is not None else Decimal("50.00")))
        if refundable is not None and amount > refundable:
            raise ValueError(
                f"refund {amount} exceeds the {'open balance' if memo_key else 'unapplied amount'} "
                f"{refundable} of {payment_key or memo_key}"
            )
        refund_date = given.get("RefundDate") or self.now.date()
        row = refund_row(
            self.factory,
            account,
            method,
            amount=amount,
            refund_date=refund_date,
            created=self.now,
            source_type="CreditMemo" if memo_key else "Payment",
        )
        row.update({k: v for k, v in given.items() if k != "Amount"})
        row = self.tables["Refund"].insert(row)
        if source is not None:
            self._insert(
                OBJECTS["RefundApplication"],
                {
                    "RefundId": row["Id"],
                    "PaymentId": source["Id"] if payment_key else None,
                    "CreditMemoId": source["Id"] if memo_key else None,
                    "ApplyAmount": amount,
                    "EffectiveDate": refund_date,
                },
            )
            changes = {"RefundAmount": source["RefundAmount"] + amount}
            if memo_key:
                changes["Balance"] = source["Balance"] - amount
            else:
                changes["UnappliedAmount"] = source["UnappliedAmount"] - amount
            self.b._touch(OBJECTS["CreditMemo" if memo_key else "Payment"], source, changes)
        self._posted(self.obj, row, type=row["Type"])
        return row

    def _add_memo(self, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
        fields = dict(fields)
        raw_items = _pop_any(
            fields, "items", "creditMemoItems", "debitMemoItems", "CreditMemoItems", "DebitMemoItems"
        )
        given = self._fields(fields)
        invoice = self.tables["Invoice"].get(given["InvoiceId"]) if given.get("InvoiceId") else None
        if invoice is not None:
            given.setdefault("AccountId", invoice["AccountId"])
        account = self._account_for(given)
        item_obj = OBJECTS[f"{kind}Item"]
        drafts = self._item_drafts(raw_items, account["Currency"], item_obj)
        memo_date = given.get("MemoDate") or self.now.date()
        memo = memo_row(
            self.factory,
            kind,
            account,
            memo_date=memo_date,
            created=self.now,
            drafts=[d for d, _ in drafts],
            invoice=invoice,
            reason=given.get("ReasonCode") or "Correcting invoice error",
        )
        items = memo.pop("_items")
        memo.update(given)
        row = self.tables[kind].insert(memo)
        for item, (_, override) in zip(items, drafts, strict=True):
            item.update(
                ChargeDate=datetime.combine(memo_date, datetime.min.time(), self.zone),
                ServiceStartDate=memo_date,
                ServiceEndDate=memo_date,
                **self.factory.stamp(self.now),
            )
            item.update(
                {
                    k: v
                    for k, v in override.items()
                    if k not in ("Amount", "AmountWithoutTax", "TaxAmount", "UnitPrice")
                }
            )
            self.tables[item_obj.name].insert(item)
        if row["Status"] == "Posted":
            self._posted(self.obj, row)
        return row

    def _add_CreditMemo(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._add_memo("CreditMemo", fields)

    def _add_DebitMemo(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._add_memo("DebitMemo", fields)

    def _add_AccountingPeriod(self, fields: dict[str, Any]) -> dict[str, Any]:
        given = self._fields(fields)
        for name in ("Name", "StartDate", "EndDate"):
            if not given.get(name):
                raise ValueError(f"{name} is required")
        if self.b._period_by_name(given["Name"]) is not None:
            raise ValueError(f"an accounting period named {given['Name']!r} exists")
        start: date = given["StartDate"]
        row = self._insert(
            self.obj,
            {
                "Status": "Open",
                "FiscalYear": start.year,
                "FiscalQuarter": (start.month - 1) // 3 + 1,
                "Notes": "",
                **given,
            },
        )
        self.b._periods[row["Id"]] = PeriodState()
        return row


def _pop_any(fields: dict[str, Any], *names: str) -> Any:
    found = None
    for name in names:
        if name in fields:
            value = fields.pop(name)
            found = value if found is None else found
    return found


def _table_object(table: str) -> ObjectType:
    obj = TABLES.get(table) or OBJECTS.get(table)
    if obj is None:
        known = sorted([*TABLES, "journal-runs", "journal-entries"])
        raise KeyError(f"unknown record type {table!r}; known: {known}")
    return obj


def _coerce_fields(obj: ObjectType, fields: Mapping[str, Any], zone: timezone) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        name = obj.field_named(str(key))
        if name is None:
            raise ValueError(f"unknown field {key!r} for {obj.name}")
        try:
            out[name] = coerce(obj.fields[name], value, zone)
        except ValueError as exc:
            raise ValueError(f"{obj.name}.{name}: {exc}") from exc
    return out
