"""Deterministic tenant data: the same seed and sizes always give the same records.

``seed_tables(seed, sizes, zone)`` fills fresh tables with accounts (most carrying
``ERPAccountId__c``), posted invoices with items (a few with more than 99 items), electronic and
external payments applied to invoices, refunds of payments and credit memos, credit and debit memos
with items, and monthly accounting periods (earlier ones closed with a completed trial balance,
the transaction month and later ones open). Transactions fall inside the month ``sizes.month``.
On every transaction table ``min(tie_count, rows // 2)`` records share exactly one ``UpdatedDate``
(the last day of the month, 23:00 tenant time) so Object Query page boundaries fall inside a tie.

``Factory`` builds single records with realistic defaults; the control plane uses it to add records.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from .catalog import (
    ACCOUNTING_CODES,
    CASH_ON_ACCOUNT,
    COMPANY_SUFFIXES,
    COMPANY_WORDS,
    COUNTRIES,
    CURRENCY_PRICE_FACTOR,
    DEFERRED_REVENUE,
    LATE_FEE,
    PAYMENT_METHOD_TYPES,
    PRODUCTS,
    RECEIVABLE,
    TAX_RATES,
    Product,
)
from .formats import add_months, money, month_bounds
from .tables import Table, new_tables

SANDBOX_USER = "2c92c0f86a8dd422016a9e7a70116b0d"
ELECTRONIC_TYPES = frozenset(t for t, electronic in PAYMENT_METHOD_TYPES if electronic)
PERIOD_NAME_STYLES = ("long", "short", "apostrophe")
FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances", "John")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Allen")
CITIES = {
    "United States": ("San Jose", "CA", "95113"),
    "Canada": ("Toronto", "ON", "M5H 2N2"),
    "Germany": ("Berlin", None, "10115"),
    "France": ("Paris", None, "75001"),
    "Netherlands": ("Amsterdam", None, "1012"),
    "Ireland": ("Dublin", None, "D02"),
    "United Kingdom": ("London", None, "EC1A 1BB"),
}
CREDIT_REASONS = ("Correcting invoice error", "Service Credit", "Goodwill Credit", "Price Adjustment")
DEBIT_REASONS = ("Correcting invoice error", "Late Payment Fee", "Additional Services")


@dataclass(frozen=True)
class Sizes:
    """How much data to seed, and its shape (month, period names, ties)."""

    accounts: int = 40
    invoices: int = 200
    payments: int = 150
    refunds: int = 15
    credit_memos: int = 20
    debit_memos: int = 10
    items_min: int = 1
    items_max: int = 4
    large_invoices: int = 1  # invoices with `large_invoice_items` items (> 99: Object Query truncation)
    large_invoice_items: int = 120
    periods: int = 3  # monthly accounting periods in total
    open_periods: int = 1  # the transaction month and the ones after it are open
    tie_count: int = 150  # records per table sharing one UpdatedDate (capped at half the table)
    erp_id_share: float = 0.8  # accounts carrying ERPAccountId__c
    month: str = "2024-12"  # the month transactions fall in (YYYY-MM)
    period_names: str = "long"  # "December 2024" | "Dec 2024" | "Dec'24"

    def with_changes(self, changes: Mapping[str, Any]) -> Sizes:
        """A copy with ``changes``; raises ``ValueError`` for an unknown key or a bad value."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown size keys {sorted(unknown)}; known: {sorted(known)}")
        updated = replace(self, **dict(changes))
        updated.validate()
        return updated

    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(getattr(Sizes, f.name, None), int) and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(f"{f.name} must be a non-negative integer")
        if self.accounts < 1 and (self.invoices or self.payments):
            raise ValueError("transactions need at least one account")
        if self.items_min < 1 or self.items_max < self.items_min:
            raise ValueError("need 1 <= items_min <= items_max")
        if not 0 <= float(self.erp_id_share) <= 1:
            raise ValueError("erp_id_share must be within 0..1")
        if self.periods < 1 or not 1 <= self.open_periods <= self.periods:
            raise ValueError("need periods >= 1 and 1 <= open_periods <= periods")
        if self.period_names not in PERIOD_NAME_STYLES:
            raise ValueError(f"period_names must be one of {PERIOD_NAME_STYLES}")
        month_bounds(self.month)  # raises ValueError when not YYYY-MM


def period_name(start: date, style: str) -> str:
    if style == "short":
        return start.strftime("%b %Y")
    if style == "apostrophe":
        return start.strftime("%b'%y")  # Zuora's own samples: Dec'16
    return start.strftime("%B %Y")


class Factory:
    """Builds records with defaults; numbers come from the shared ``sequences``."""

    def __init__(self, rng: random.Random, sequences: dict[str, int], zone: timezone) -> None:
        self.rng = rng
        self.sequences = sequences
        self.zone = zone

    def new_id(self) -> str:
        return f"8ad0{self.rng.getrandbits(112):028x}"

    def next_number(self, kind: str) -> int:
        self.sequences[kind] = self.sequences.get(kind, 0) + 1
        return self.sequences[kind]

    def stamp(self, created: datetime, updated: datetime | None = None) -> dict[str, Any]:
        return {
            "CreatedById": SANDBOX_USER,
            "CreatedDate": created,
            "UpdatedById": SANDBOX_USER,
            "UpdatedDate": updated or created,
        }

    def contact(self, account_id: str, country: str, created: datetime) -> dict[str, Any]:
        city, state, postal = CITIES.get(country, ("Springfield", None, "00000"))
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        return {
            "Id": self.new_id(),
            "AccountId": account_id,
            "FirstName": first,
            "LastName": last,
            "WorkEmail": f"{first}.{last}@example.com".lower(),
            "WorkPhone": "+1 555 0100",
            "Address1": f"{self.rng.randint(1, 999)} Market Street",
            "City": city,
            "State": state,
            "PostalCode": postal,
            "Country": country,
            **self.stamp(created),
        }

    def payment_method(self, account_id: str, method_type: str, created: datetime) -> dict[str, Any]:
        row: dict[str, Any] = {
            "Id": self.new_id(),
            "AccountId": account_id,
            "Type": method_type,
            "PaymentMethodStatus": "Active",
            **self.stamp(created),
        }
        if method_type == "CreditCard":
            row["CreditCardType"] = self.rng.choice(("Visa", "MasterCard", "AmericanExpress"))
            row["CreditCardMaskNumber"] = f"************{self.rng.randint(1000, 9999)}"
        elif method_type == "ACH":
            row["AchBankName"] = "First Sandbox Bank"
            row["AchAccountNumberMask"] = f"*****{self.rng.randint(1000, 9999)}"
        return row

    def account(self, currency: str, created: datetime, *, erp_id: bool) -> dict[str, Any]:
        number = self.next_number("Account")
        name = f"{self.rng.choice(COMPANY_WORDS)} {self.rng.choice(COMPANY_SUFFIXES)} {number}"
        row = {
            "Id": self.new_id(),
            "AccountNumber": f"A{number:08d}",
            "Name": name,
            "Currency": currency,
            "Status": "Active",
            "Balance": Decimal("0.00"),
            "CreditBalance": Decimal("0.00"),
            "UnappliedBalance": Decimal("0.00"),
            "TotalInvoiceBalance": Decimal("0.00"),
            "TotalDebitMemoBalance": Decimal("0.00"),
            "UnappliedCreditMemoAmount": Decimal("0.00"),
            "AutoPay": False,
            "BillCycleDay": 1,
            "Batch": "Batch1",
            "PaymentTerm": "Net 30",
            "Mrr": Decimal("0.00"),
            "TaxExemptStatus": "No",
            **self.stamp(created),
        }
        if erp_id:
            row["ERPAccountId__c"] = f"C{10000 + number:06d}"
        return row

    def item_from_product(self, product: Product, currency: str, quantity: Decimal) -> dict[str, Any]:
        price = money(product.unit_price * CURRENCY_PRICE_FACTOR.get(currency, Decimal(1)))
        if price == 0:
            price = Decimal("0.01")
        charge = money(price * quantity)
        tax = money(charge * TAX_RATES.get(currency, Decimal(0)))
        return {
            "UnitPrice": price,
            "Quantity": quantity,
            "ChargeName": product.name,
            "Description": product.name,
            "AccountingCode": product.accounting_code,
            "ProcessingType": product.processing_type,
            "SourceItemType": "SubscriptionComponent",
            "ProductRatePlanChargeId": f"8ad0{abs(hash_text(product.sku)):028x}"[:32],
            "_amount": charge,
            "_tax": tax,
            "_product": product,
        }

    def random_product_item(self, currency: str) -> dict[str, Any]:
        product = self.rng.choice(PRODUCTS)
        quantity = Decimal(self.rng.randint(*product.quantity))
        return self.item_from_product(product, currency, quantity)


def hash_text(text: str) -> int:
    """A stable (process-independent) 112-bit hash, unlike ``hash()``."""
    value = 0
    for ch in text.encode():
        value = (value * 131 + ch) % (1 << 112)
    return value


@dataclass
class _Ctx:
    rng: random.Random
    factory: Factory
    tables: dict[str, Table]
    zone: timezone
    month_start: date
    month_end: date
    tie_at: datetime

    def moment(self, day: date, *, earliest_hour: int = 8, latest_hour: int = 18) -> datetime:
        hour = self.rng.randint(earliest_hour, latest_hour)
        return datetime.combine(day, time(hour, self.rng.randint(0, 59), self.rng.randint(0, 59)), self.zone)

    def day_in_month(self, not_before: date | None = None) -> date:
        first = max(self.month_start, not_before or self.month_start)
        span = (self.month_end - first).days
        return first + timedelta(days=self.rng.randint(0, max(span, 0)))

    def later(self, created: datetime) -> datetime:
        """An update moment after ``created`` but before the month's tie moment."""
        limit = self.tie_at - timedelta(seconds=1)
        updated = created + timedelta(minutes=self.rng.randint(0, 4 * 24 * 60))
        return max(created, min(updated, limit))


def seed_tables(seed: int, sizes: Sizes, zone: timezone, sequences: dict[str, int]) -> dict[str, Table]:
    """Fresh tables seeded from ``seed`` and ``sizes``; ``sequences`` receives the used numbers."""
    sizes.validate()
    rng = random.Random(seed)
    factory = Factory(rng, sequences, zone)
    tables = new_tables()
    month_start, month_end = month_bounds(sizes.month)
    tie_at = datetime.combine(month_end, time(23, 0, 0), zone)
    ctx = _Ctx(rng, factory, tables, zone, month_start, month_end, tie_at)
    _periods(ctx, sizes)
    accounts = _accounts(ctx, sizes)
    invoices = _invoices(ctx, sizes, accounts)
    payments = _payments(ctx, sizes, accounts, invoices)
    memos = _credit_memos(ctx, sizes, accounts, invoices)
    _refunds(ctx, sizes, payments, memos)
    _debit_memos(ctx, sizes, accounts, invoices)
    _rollups(tables)
    _ties(ctx, sizes)
    return tables


def _periods(ctx: _Ctx, sizes: Sizes) -> None:
    closed = sizes.periods - sizes.open_periods
    for offset in range(-closed, sizes.open_periods):
        start = add_months(ctx.month_start, offset)
        end = add_months(start, 1) - timedelta(days=1)
        created = datetime.combine(add_months(ctx.month_start, -closed - 1), time(9, 0), ctx.zone)
        updated = datetime.combine(end + timedelta(days=3), time(10, 0), ctx.zone) if offset < 0 else created
        ctx.tables["AccountingPeriod"].insert(
            {
                "Id": ctx.factory.new_id(),
                "Name": period_name(start, sizes.period_names),
                "StartDate": start,
                "EndDate": end,
                "Status": "Closed" if offset < 0 else "Open",
                "FiscalYear": start.year,
                "FiscalQuarter": (start.month - 1) // 3 + 1,
                "Notes": "",
                **ctx.factory.stamp(created, updated),
            }
        )


def _accounts(ctx: _Ctx, sizes: Sizes) -> list[dict[str, Any]]:
    accounts = []
    for _ in range(sizes.accounts):
        currency = ctx.rng.choices(("USD", "EUR", "GBP"), weights=(60, 25, 15))[0]
        created = ctx.moment(ctx.month_start - timedelta(days=ctx.rng.randint(30, 400)))
        erp_id = ctx.rng.random() < sizes.erp_id_share
        account = ctx.factory.account(currency, created, erp_id=erp_id)
        account["UpdatedDate"] = ctx.later(ctx.moment(ctx.day_in_month()))
        contact = ctx.factory.contact(account["Id"], ctx.rng.choice(COUNTRIES[currency]), created)
        method_type = ctx.rng.choice(PAYMENT_METHOD_TYPES)[0]
        method = ctx.factory.payment_method(account["Id"], method_type, created)
        account.update(
            BillToId=contact["Id"],
            SoldToId=contact["Id"],
            ShipToId=contact["Id"],
            DefaultPaymentMethodId=method["Id"],
            AutoPay=method_type in ELECTRONIC_TYPES,
            PaymentGateway="Sandbox Gateway" if method_type in ELECTRONIC_TYPES else None,
        )
        ctx.tables["Contact"].insert(contact)
        ctx.tables["PaymentMethod"].insert(method)
        accounts.append(ctx.tables["Account"].insert(account))
    return accounts


def memo_item_codes(revenue_code: str, *, credit: bool) -> dict[str, str]:
    """The accounting-code id fields of a memo item whose charge books to ``revenue_code``."""
    codes = {
        "RecognizedRevenueAccountingCodeId": ACCOUNTING_CODES[revenue_code].id,
        "DeferredRevenueAccountingCodeId": ACCOUNTING_CODES[DEFERRED_REVENUE].id,
        "AccountReceivableAccountingCodeId": ACCOUNTING_CODES[RECEIVABLE].id,
    }
    if credit:
        codes["OnAccountAccountingCodeId"] = ACCOUNTING_CODES[CASH_ON_ACCOUNT].id
    return codes


def build_item(factory: Factory, base: dict[str, Any], parent: dict[str, Any], kind: str) -> dict[str, Any]:
    """An invoice/credit-memo/debit-memo item row from a product draft (``_amount``/``_tax``)."""
    amount, tax, product = base.pop("_amount"), base.pop("_tax"), base.pop("_product")
    row: dict[str, Any] = {"Id": factory.new_id(), **base}
    charge_number = factory.next_number("Charge")
    row["ChargeNumber"] = f"C-{charge_number:08d}"
    row["TaxAmount"] = tax
    row["TaxExemptAmount"] = Decimal("0.00")
    row["ExcludeItemBillingFromRevenueAccounting"] = False
    row["RatePlanChargeId"] = factory.new_id()
    if kind == "InvoiceItem":
        row.update(
            InvoiceId=parent["Id"],
            AccountId=parent["AccountId"],
            ChargeAmount=amount,
            Balance=amount + tax,
            UOM=product.uom,
            SKU=product.sku,
            TaxCode="SALES_TAX",
            TaxMode="TaxExclusive",
        )
    else:
        row.update(Amount=amount + tax, AmountWithoutTax=amount, UnitOfMeasure=product.uom, Sku=product.sku)
        # Memo items carry accounting-code ids, not an accountingCode (zuora-sdk ExpandedCreditMemoItem,
        # ExpandedDebitMemoItem): the charge's code is the recognized-revenue one.
        row.update(memo_item_codes(row.pop("AccountingCode"), credit=kind == "CreditMemoItem"))
        row["CreditMemoId" if kind == "CreditMemoItem" else "DebitMemoId"] = parent["Id"]
        if kind == "DebitMemoItem":
            row["Balance"] = amount + tax
        else:
            row["UnappliedAmount"] = amount + tax
    return row


def _invoices(ctx: _Ctx, sizes: Sizes, accounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    invoices: list[dict[str, Any]] = []
    if not accounts:
        return invoices
    large = set(ctx.rng.sample(range(sizes.invoices), min(sizes.large_invoices, sizes.invoices)))
    for index in range(sizes.invoices):
        account = ctx.rng.choice(accounts)
        invoice_date = ctx.day_in_month()
        created = ctx.moment(invoice_date)
        count = (
            sizes.large_invoice_items if index in large else ctx.rng.randint(sizes.items_min, sizes.items_max)
        )
        drafts = [ctx.factory.random_product_item(account["Currency"]) for _ in range(count)]
        posted = ctx.rng.random() >= 0.02
        invoice = invoice_row(ctx.factory, account, invoice_date, created, drafts, posted=posted)
        invoice["UpdatedDate"] = ctx.later(created)
        for item in invoice.pop("_items"):
            item.update(
                ChargeDate=datetime.combine(invoice_date, time(0, 0), ctx.zone),
                ServiceStartDate=ctx.month_start,
                ServiceEndDate=ctx.month_end,
                **ctx.factory.stamp(created, invoice["UpdatedDate"]),
            )
            ctx.tables["InvoiceItem"].insert(item)
        invoices.append(ctx.tables["Invoice"].insert(invoice))
    return invoices


def invoice_row(
    factory: Factory,
    account: dict[str, Any],
    invoice_date: date,
    created: datetime,
    drafts: list[dict[str, Any]],
    *,
    posted: bool,
) -> dict[str, Any]:
    number = factory.next_number("Invoice")
    invoice: dict[str, Any] = {
        "Id": factory.new_id(),
        "InvoiceNumber": f"INV{number:08d}",
        "AccountId": account["Id"],
        "Currency": account["Currency"],
    }
    subscription_id = f"8ad0{hash_text(account['Id']):028x}"[:32]
    items = []
    for draft in drafts:
        product = draft["_product"]
        item = build_item(factory, draft, invoice, "InvoiceItem")
        item.update(SubscriptionId=subscription_id, SubscriptionNumber=f"A-S{account['AccountNumber'][1:]}")
        items.append((item, product))
    without_tax = sum((i["ChargeAmount"] for i, _ in items), Decimal("0.00"))
    tax = sum((i["TaxAmount"] for i, _ in items), Decimal("0.00"))
    amount = without_tax + tax
    invoice.update(
        InvoiceDate=invoice_date,
        DueDate=invoice_date + timedelta(days=30),
        TargetDate=invoice_date,
        Amount=amount,
        AmountWithoutTax=without_tax,
        TaxAmount=tax,
        TaxExemptAmount=Decimal("0.00"),
        Balance=amount,
        PaymentAmount=Decimal("0.00"),
        RefundAmount=Decimal("0.00"),
        CreditMemoAmount=Decimal("0.00"),
        AdjustmentAmount=Decimal("0.00"),
        CreditBalanceAdjustmentAmount=Decimal("0.00"),
        Status="Posted" if posted else "Draft",
        PostedBy=SANDBOX_USER if posted else None,
        PostedDate=created if posted else None,
        Reversed=False,
        Source="BillRun",
        SourceType="Subscription",
        PaymentTerm="Net 30",
        AutoPay=account.get("AutoPay"),
        BillToContactId=account.get("BillToId"),
        SoldToContactId=account.get("SoldToId"),
        ShipToContactId=account.get("ShipToId"),
        IncludesOneTime=any(p.processing_type == "OneTime" for _, p in items),
        IncludesRecurring=any(p.processing_type == "Recurring" for _, p in items),
        IncludesUsage=any(p.processing_type == "Usage" for _, p in items),
        **factory.stamp(created),
    )
    invoice["_items"] = [item for item, _ in items]
    return invoice


def _payments(
    ctx: _Ctx, sizes: Sizes, accounts: list[dict[str, Any]], invoices: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    payments: list[dict[str, Any]] = []
    if not accounts:
        return payments
    open_invoices = [inv for inv in invoices if inv["Status"] == "Posted"]
    ctx.rng.shuffle(open_invoices)
    methods = ctx.tables["PaymentMethod"]
    for _ in range(sizes.payments):
        invoice = open_invoices.pop() if open_invoices else None
        account = ctx.tables["Account"].rows[invoice["AccountId"]] if invoice else ctx.rng.choice(accounts)
        method = methods.rows[account["DefaultPaymentMethodId"]]
        electronic = method["Type"] in ELECTRONIC_TYPES
        roll = ctx.rng.random()
        if invoice is None:
            amount = money(Decimal(ctx.rng.randint(5000, 250000)) / 100)
        elif roll < 0.75:
            amount = invoice["Balance"]
        elif roll < 0.95:
            amount = money(invoice["Balance"] * Decimal(ctx.rng.randint(30, 90)) / 100)
        else:
            amount = invoice["Balance"] + money(Decimal(ctx.rng.randint(100, 20000)) / 100)
        if amount <= 0:
            amount = Decimal("1.00")
        effective = ctx.day_in_month(invoice["InvoiceDate"] if invoice else None)
        created = ctx.moment(effective)
        payment = payment_row(
            ctx.factory,
            account,
            method,
            amount=amount,
            effective=effective,
            created=created,
            electronic=electronic,
        )
        payment["UpdatedDate"] = ctx.later(created)
        ctx.tables["Payment"].insert(payment)
        if invoice is not None:
            applied = min(amount, invoice["Balance"])
            apply_payment(
                ctx.factory,
                ctx.tables,
                payment,
                invoice,
                applied=applied,
                effective=effective,
                created=payment["CreatedDate"],
                updated=payment["UpdatedDate"],
            )
        payments.append(payment)
    return payments


def payment_row(
    factory: Factory,
    account: dict[str, Any],
    method: dict[str, Any] | None,
    *,
    amount: Decimal,
    effective: date,
    created: datetime,
    electronic: bool,
) -> dict[str, Any]:
    number = factory.next_number("Payment")
    row: dict[str, Any] = {
        "Id": factory.new_id(),
        "PaymentNumber": f"P-{number:08d}",
        "AccountId": account["Id"],
        "Type": "Electronic" if electronic else "External",
        "Status": "Processed",
        "Amount": amount,
        "AppliedAmount": Decimal("0.00"),
        "UnappliedAmount": amount,
        "RefundAmount": Decimal("0.00"),
        "Currency": account["Currency"],
        "EffectiveDate": effective,
        "PaymentMethodId": method["Id"] if method else None,
        "PaymentMethodSnapshotId": factory.new_id() if method else None,
        "AccountingCode": "Cash" if electronic else "Undeposited Funds",
        **factory.stamp(created),
    }
    if electronic:
        row.update(
            Gateway="Sandbox Gateway",
            GatewayState="Settled",
            GatewayResponse="Approved",
            GatewayResponseCode="approved",
            GatewayOrderId=f"ORD-{number:08d}",
            ReferenceId=f"ch_{factory.rng.getrandbits(64):016x}",
            SubmittedOn=created,
            SettledOn=created,
            Source="PaymentRun",
            SourceName="Sandbox payment run",
        )
    else:
        row.update(
            ReferenceId=f"CHK-{factory.rng.randint(100000, 999999)}",
            Source="Manually",
            Comment="Recorded by accounts receivable",
        )
    return row


def apply_payment(
    factory: Factory,
    tables: dict[str, Table],
    payment: dict[str, Any],
    invoice: dict[str, Any],
    *,
    applied: Decimal,
    effective: date,
    created: datetime,
    updated: datetime,
) -> None:
    if applied <= 0:
        return
    tables["PaymentApplication"].insert(
        {
            "Id": factory.new_id(),
            "PaymentId": payment["Id"],
            "InvoiceId": invoice["Id"],
            "ApplyAmount": applied,
            "EffectiveDate": effective,
            **factory.stamp(created, updated),
        }
    )
    payment["AppliedAmount"] += applied
    payment["UnappliedAmount"] -= applied
    invoice["PaymentAmount"] += applied
    invoice["Balance"] -= applied


def _credit_memos(
    ctx: _Ctx, sizes: Sizes, accounts: list[dict[str, Any]], invoices: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    memos: list[dict[str, Any]] = []
    posted = [inv for inv in invoices if inv["Status"] == "Posted"]
    for _ in range(sizes.credit_memos if accounts else 0):
        invoice = ctx.rng.choice(posted) if posted and ctx.rng.random() < 0.7 else None
        account = ctx.tables["Account"].rows[invoice["AccountId"]] if invoice else ctx.rng.choice(accounts)
        if invoice is not None:
            source_items = ctx.tables["InvoiceItem"].where("InvoiceId", invoice["Id"])
            chosen = ctx.rng.sample(source_items, min(len(source_items), ctx.rng.randint(1, 2)))
            drafts = []
            for item in chosen:
                product = next((p for p in PRODUCTS if p.sku == item["SKU"]), PRODUCTS[0])
                share = Decimal(ctx.rng.choice((25, 50, 100))) / 100
                quantity = max(Decimal(1), (item["Quantity"] * share).quantize(Decimal(1)))
                draft = ctx.factory.item_from_product(product, account["Currency"], quantity)
                draft["InvoiceItemId"] = item["Id"]
                drafts.append(draft)
        else:
            drafts = [ctx.factory.random_product_item(account["Currency"])]
        memo_date = ctx.day_in_month(invoice["InvoiceDate"] if invoice else None)
        created = ctx.moment(memo_date)
        memo = memo_row(
            ctx.factory,
            "CreditMemo",
            account,
            memo_date=memo_date,
            created=created,
            drafts=drafts,
            invoice=invoice,
            reason=ctx.rng.choice(CREDIT_REASONS),
        )
        memo["UpdatedDate"] = ctx.later(created)
        for item in memo.pop("_items"):
            item.update(
                ServiceStartDate=ctx.month_start,
                ServiceEndDate=ctx.month_end,
                ChargeDate=datetime.combine(memo_date, time(0, 0), ctx.zone),
                **ctx.factory.stamp(created, memo["UpdatedDate"]),
            )
            ctx.tables["CreditMemoItem"].insert(item)
        ctx.tables["CreditMemo"].insert(memo)
        if invoice is not None and invoice["Balance"] > 0 and ctx.rng.random() < 0.5:
            applied = min(memo["Balance"], invoice["Balance"])
            ctx.tables["CreditMemoApplication"].insert(
                {
                    "Id": ctx.factory.new_id(),
                    "CreditMemoId": memo["Id"],
                    "InvoiceId": invoice["Id"],
                    "Amount": applied,
                    "EffectiveDate": memo_date,
                    **ctx.factory.stamp(created, memo["UpdatedDate"]),
                }
            )
            memo["AppliedAmount"] += applied
            memo["Balance"] -= applied
            invoice["CreditMemoAmount"] += applied
            invoice["Balance"] -= applied
        memos.append(memo)
    return memos


def memo_row(
    factory: Factory,
    kind: str,
    account: dict[str, Any],
    *,
    memo_date: date,
    created: datetime,
    drafts: list[dict[str, Any]],
    invoice: dict[str, Any] | None,
    reason: str,
) -> dict[str, Any]:
    prefix = "CM" if kind == "CreditMemo" else "DM"
    number = factory.next_number(kind)
    memo: dict[str, Any] = {
        "Id": factory.new_id(),
        "MemoNumber": f"{prefix}{number:08d}",
        "AccountId": account["Id"],
        "Currency": account["Currency"],
    }
    items = []
    for draft in drafts:
        invoice_item_id = draft.pop("InvoiceItemId", None)
        item = build_item(factory, draft, memo, f"{kind}Item")
        item["InvoiceItemId"] = invoice_item_id
        items.append(item)
    without_tax = sum((i["AmountWithoutTax"] for i in items), Decimal("0.00"))
    tax = sum((i["TaxAmount"] for i in items), Decimal("0.00"))
    memo.update(
        InvoiceId=invoice["Id"] if invoice else None,
        MemoDate=memo_date,
        Status="Posted",
        TotalAmount=without_tax + tax,
        TotalAmountWithoutTax=without_tax,
        TaxAmount=tax,
        TotalTaxExemptAmount=Decimal("0.00"),
        DiscountAmount=Decimal("0.00"),
        Balance=without_tax + tax,
        ReasonCode=reason,
        Source="API",
        SourceType="Invoice" if invoice else "Standalone",
        PostedOn=created,
        PostedById=SANDBOX_USER,
        TargetDate=memo_date,
        BillToContactId=account.get("BillToId"),
        **factory.stamp(created),
    )
    if kind == "CreditMemo":  # sourceId and reversed are credit memo fields (zuora-sdk ExpandedCreditMemo)
        memo.update(
            AppliedAmount=Decimal("0.00"),
            RefundAmount=Decimal("0.00"),
            RevenueImpacting="Yes",
            SourceId=invoice["InvoiceNumber"] if invoice else None,
            Reversed=False,
        )
    else:
        memo.update(
            DueDate=memo_date + timedelta(days=30), AutoPay=account.get("AutoPay"), PaymentTerm="Net 30"
        )
    memo["_items"] = items
    return memo


def _refunds(ctx: _Ctx, sizes: Sizes, payments: list[dict[str, Any]], memos: list[dict[str, Any]]) -> None:
    methods = ctx.tables["PaymentMethod"]
    # Candidate lists built once (not per refund): seeding stays linear in the table sizes.
    open_memos = [m for m in memos if m["Balance"] > 0]
    # With Invoice Settlement a payment refunds only its unapplied amount (an applied part must be
    # unapplied first), as a credit memo refunds only its open balance.
    open_payments = [p for p in payments if p["UnappliedAmount"] >= 1]
    for _ in range(sizes.refunds):
        use_memo = bool(open_memos) and (ctx.rng.random() < 0.3 or not open_payments)
        if use_memo:
            source = open_memos.pop(ctx.rng.randrange(len(open_memos)))
            amount = source["Balance"]
            not_before = source["MemoDate"]
        elif open_payments:
            index = ctx.rng.randrange(len(open_payments))
            source = open_payments[index]
            remaining = source["UnappliedAmount"]
            amount = min(
                remaining, max(Decimal("1.00"), money(remaining * Decimal(ctx.rng.randint(10, 100)) / 100))
            )
            if remaining - amount < 1:
                open_payments[index] = open_payments[-1]
                open_payments.pop()
            not_before = source["EffectiveDate"]
        else:
            return
        account = ctx.tables["Account"].rows[source["AccountId"]]
        method = methods.rows[account["DefaultPaymentMethodId"]]
        refund_date = ctx.day_in_month(not_before)
        created = ctx.moment(refund_date)
        refund = refund_row(
            ctx.factory,
            account,
            method,
            amount=amount,
            refund_date=refund_date,
            created=created,
            source_type="CreditMemo" if use_memo else "Payment",
        )
        refund["UpdatedDate"] = ctx.later(created)
        ctx.tables["Refund"].insert(refund)
        ctx.tables["RefundApplication"].insert(
            {
                "Id": ctx.factory.new_id(),
                "RefundId": refund["Id"],
                "PaymentId": None if use_memo else source["Id"],
                "CreditMemoId": source["Id"] if use_memo else None,
                "ApplyAmount": amount,
                "EffectiveDate": refund_date,
                **ctx.factory.stamp(created, refund["UpdatedDate"]),
            }
        )
        source["RefundAmount"] += amount
        if use_memo:
            source["Balance"] -= amount
        else:
            source["UnappliedAmount"] -= amount


def refund_row(
    factory: Factory,
    account: dict[str, Any],
    method: dict[str, Any] | None,
    *,
    amount: Decimal,
    refund_date: date,
    created: datetime,
    source_type: str,
) -> dict[str, Any]:
    number = factory.next_number("Refund")
    method_type = method["Type"] if method else "Other"
    electronic = method_type in ELECTRONIC_TYPES
    row: dict[str, Any] = {
        "Id": factory.new_id(),
        "RefundNumber": f"R-{number:08d}",
        "AccountId": account["Id"],
        "Type": "Electronic" if electronic else "External",
        "Status": "Processed",
        "Amount": amount,
        "Currency": account["Currency"],
        "RefundDate": refund_date,
        "RefundTransactionTime": created,
        "MethodType": method_type,
        "SourceType": source_type,
        "ReasonCode": "Standard Refund",
        "PaymentMethodId": method["Id"] if method else None,
        "PaymentMethodSnapshotId": factory.new_id() if method else None,
        "AccountingCode": "Cash" if electronic else "Undeposited Funds",
        **factory.stamp(created),
    }
    if electronic:
        row.update(
            Gateway="Sandbox Gateway",
            GatewayState="Settled",
            SubmittedOn=created,
            SettledOn=created,
            ReferenceID=f"re_{factory.rng.getrandbits(64):016x}",
        )
    else:
        row.update(ReferenceID=f"REF-{number:06d}", Comment="Refund issued by cheque")
    return row


def _debit_memos(
    ctx: _Ctx, sizes: Sizes, accounts: list[dict[str, Any]], invoices: list[dict[str, Any]]
) -> None:
    posted = [inv for inv in invoices if inv["Status"] == "Posted"]
    for _ in range(sizes.debit_memos if accounts else 0):
        invoice = ctx.rng.choice(posted) if posted and ctx.rng.random() < 0.6 else None
        account = ctx.tables["Account"].rows[invoice["AccountId"]] if invoice else ctx.rng.choice(accounts)
        if invoice is not None and ctx.rng.random() < 0.5:
            drafts = [ctx.factory.item_from_product(LATE_FEE, account["Currency"], Decimal(1))]
        else:
            drafts = [
                ctx.factory.random_product_item(account["Currency"])
                for _ in range(ctx.rng.randint(sizes.items_min, sizes.items_max))
            ]
        memo_date = ctx.day_in_month(invoice["InvoiceDate"] if invoice else None)
        created = ctx.moment(memo_date)
        memo = memo_row(
            ctx.factory,
            "DebitMemo",
            account,
            memo_date=memo_date,
            created=created,
            drafts=drafts,
            invoice=invoice,
            reason=ctx.rng.choice(DEBIT_REASONS),
        )
        memo["UpdatedDate"] = ctx.later(created)
        for item in memo.pop("_items"):
            item.update(
                ServiceStartDate=ctx.month_start,
                ServiceEndDate=ctx.month_end,
                ChargeDate=datetime.combine(memo_date, time(0, 0), ctx.zone),
                **ctx.factory.stamp(created, memo["UpdatedDate"]),
            )
            ctx.tables["DebitMemoItem"].insert(item)
        ctx.tables["DebitMemo"].insert(memo)


def _rollups(tables: dict[str, Table]) -> None:
    for account in tables["Account"]:
        invoices = [i for i in tables["Invoice"].where("AccountId", account["Id"]) if i["Status"] == "Posted"]
        debit_memos = tables["DebitMemo"].where("AccountId", account["Id"])
        payments = tables["Payment"].where("AccountId", account["Id"])
        credit_memos = tables["CreditMemo"].where("AccountId", account["Id"])
        invoice_balance = sum((i["Balance"] for i in invoices), Decimal("0.00"))
        debit_balance = sum((m["Balance"] for m in debit_memos), Decimal("0.00"))
        unapplied = sum(
            (max(p["UnappliedAmount"] - p["RefundAmount"], Decimal("0.00")) for p in payments),
            Decimal("0.00"),
        )
        unapplied_credit = sum((m["Balance"] for m in credit_memos), Decimal("0.00"))
        account.update(
            TotalInvoiceBalance=invoice_balance,
            TotalDebitMemoBalance=debit_balance,
            UnappliedBalance=unapplied,
            UnappliedCreditMemoAmount=unapplied_credit,
            Balance=invoice_balance + debit_balance,
            LastInvoiceDate=max((i["InvoiceDate"] for i in invoices), default=None),
        )


def _ties(ctx: _Ctx, sizes: Sizes) -> None:
    """Give ``min(tie_count, rows // 2)`` records of each transaction table one shared UpdatedDate."""
    children = {
        "Invoice": ("InvoiceItem", "InvoiceId"),
        "CreditMemo": ("CreditMemoItem", "CreditMemoId"),
        "DebitMemo": ("DebitMemoItem", "DebitMemoId"),
    }
    for name in ("Account", "Invoice", "Payment", "Refund", "CreditMemo", "DebitMemo"):
        table = ctx.tables[name]
        count = min(sizes.tie_count, len(table) // 2)
        for row in ctx.rng.sample(list(table), count):
            row["UpdatedDate"] = ctx.tie_at
            if name in children:
                child_table, key = children[name]
                for child in ctx.tables[child_table].where(key, row["Id"]):
                    child["UpdatedDate"] = ctx.tie_at
