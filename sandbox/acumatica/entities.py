"""The contract: which entities, fields, keys, detail collections and drop-down labels exist.

A subset of the Default 20-25 (contract version 4) endpoints, with the names Acumatica uses
(acumatica-api.md section 6). Several entities can view one table: an AR credit memo is both an
``Invoice`` (type "Credit Memo") and a ``Payment`` row, as on the real server (pitfall 15), so a
field names a storage attribute (``attr``) that may differ from its contract name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any


class Kind(Enum):
    """A field's value type; ``wrapper`` is the contract's wrapper type name (section 3.1)."""

    STRING = ("string", "StringValue")
    DECIMAL = ("decimal", "DecimalValue")
    INT = ("int", "IntValue")
    SHORT = ("short", "ShortValue")  # an Int16 (DecimalPrecision, NbrOfPeriods)
    BOOL = ("bool", "BooleanValue")
    DATE = ("date", "DateTimeValue")  # date-only: read back as midnight with the server offset
    DATETIME = ("datetime", "DateTimeValue")
    GUID = ("guid", "GuidValue")

    def __init__(self, tag: str, wrapper: str) -> None:
        self.tag = tag
        self.wrapper = wrapper


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind = Kind.STRING
    attr: str = ""
    readonly: bool = False
    labels: Mapping[str, str] | None = None  # stored code -> display label (CV4 drop-downs)
    max_length: int | None = None
    since: str | None = None  # the first endpoint version whose contract has the field

    @property
    def key(self) -> str:
        """The storage attribute."""
        return self.attr or self.name


@dataclass(frozen=True)
class ObjectSpec:
    """The fields of a record, detail line or linked entity."""

    name: str
    fields: tuple[FieldSpec, ...]
    collections: tuple[CollectionSpec, ...] = ()
    links: tuple[LinkSpec, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, FieldSpec | CollectionSpec | LinkSpec]:
        named: dict[str, FieldSpec | CollectionSpec | LinkSpec] = {}
        for group in (self.fields, self.collections, self.links):
            for item in group:
                named.setdefault(item.name, item)
        return named

    def field(self, name: str) -> FieldSpec | None:
        found = self._by_name.get(name)
        return found if isinstance(found, FieldSpec) else None

    def collection(self, name: str) -> CollectionSpec | None:
        found = self._by_name.get(name)
        return found if isinstance(found, CollectionSpec) else None

    def link(self, name: str) -> LinkSpec | None:
        found = self._by_name.get(name)
        return found if isinstance(found, LinkSpec) else None


@dataclass(frozen=True)
class CollectionSpec:
    """A detail collection (``Details``, ``DocumentsToApply``): an array of records."""

    name: str
    attr: str
    item: ObjectSpec
    readonly: bool = False
    # Which stored lines this collection shows (DocumentsToApply shows unreleased applications).
    shows: Callable[[Any], bool] | None = None


@dataclass(frozen=True)
class LinkSpec:
    """A linked entity (``MainContact``): a nested object."""

    name: str
    attr: str
    item: ObjectSpec


@dataclass(frozen=True)
class EntitySpec:
    name: str
    table: str
    keys: tuple[str, ...]  # field names in URL (form) order
    obj: ObjectSpec
    cache_name: str  # the DAC display name in "Inserting  '<cache>' record raised ..."
    graph: str  # for the files:put link
    view: str
    actions: tuple[str, ...] = ()
    auto_key: str | None = None  # the auto-numbered key field
    key_defaults: Mapping[str, str] = field(default_factory=dict)  # key field -> stored code
    doc_types: frozenset[str] | None = None  # which stored doc types this entity views


# --- drop-down labels (section 6, S7) ------------------------------------------------------

INVOICE_TYPES: Mapping[str, str] = {
    "INV": "Invoice",
    "DRM": "Debit Memo",
    "CRM": "Credit Memo",
    "FCH": "Overdue Charge",
    "SMC": "Credit WO",
    "PPI": "Prepmt. Invoice",
}
PAYMENT_TYPES: Mapping[str, str] = {
    "PMT": "Payment",
    "CRM": "Credit Memo",
    "PPM": "Prepayment",
    "REF": "Refund",
    "VRF": "Voided Refund",
    "RPM": "Voided Payment",
    "SMB": "Balance WO",
}
ADJUSTED_TYPES: Mapping[str, str] = {**INVOICE_TYPES, **PAYMENT_TYPES}
CUSTOMER_STATUSES: Mapping[str, str] = {
    "A": "Active",
    "H": "On Hold",
    "C": "Credit Hold",
    "T": "One-Time",
    "I": "Inactive",
}
ACCOUNT_TYPES: Mapping[str, str] = {"A": "Asset", "L": "Liability", "I": "Income", "E": "Expense"}

# Document types a client may create on each form; the rest are produced by the system.
CREATABLE_INVOICE_TYPES = frozenset({"INV", "DRM", "CRM"})
CREATABLE_PAYMENT_TYPES = frozenset({"PMT", "PPM", "REF"})


def _f(name: str, kind: Kind = Kind.STRING, **kw: Any) -> FieldSpec:
    return FieldSpec(name, kind, **kw)


S, D, N, B, DT, TS, G = Kind.STRING, Kind.DECIMAL, Kind.INT, Kind.BOOL, Kind.DATE, Kind.DATETIME, Kind.GUID
SH = Kind.SHORT

ADDRESS = ObjectSpec(
    "Address",
    (
        _f("AddressLine1"),
        _f("AddressLine2"),
        _f("City"),
        _f("Country"),
        _f("PostalCode"),
        _f("State"),
    ),
)
CONTACT = ObjectSpec(
    "Contact",
    (
        _f("Attention"),
        _f("CompanyName"),
        _f("DisplayName"),
        _f("Email"),
        _f("Fax"),
        _f("FirstName"),
        _f("LastName"),
        _f("Phone1"),
        _f("Phone2"),
        _f("WebSite"),
    ),
    links=(LinkSpec("Address", "address", ADDRESS),),
)
DOC_CONTACT = ObjectSpec(
    "DocContact",
    (_f("Attention"), _f("BusinessName"), _f("Email"), _f("Phone1")),
)

CUSTOMER = EntitySpec(
    name="Customer",
    table="customers",
    keys=("CustomerID",),
    cache_name="Customer",
    graph="PX.Objects.AR.CustomerMaint",
    view="BAccount",
    obj=ObjectSpec(
        "Customer",
        (
            _f("AccountRef", max_length=50),
            _f("BAccountID", N, readonly=True),
            _f("CreatedDateTime", TS, readonly=True),
            _f("CreditLimit", D),
            _f("CurrencyID", max_length=5),
            _f("CurrencyRateType"),
            _f("CustomerClass", max_length=10),
            _f("CustomerID", max_length=30),
            _f("CustomerName", max_length=255),
            # Default/22.200.001's Customer has no Email (its definition); 23.200.001's has.
            _f("Email", since="23.200.001"),
            _f("LastModifiedDateTime", TS, readonly=True),
            _f("LocationName"),
            _f("NoteID", G, readonly=True),
            _f("ParentRecord"),
            _f("PriceClassID"),
            _f("StatementCycleID"),
            _f("Status", labels=CUSTOMER_STATUSES),
            _f("TaxRegistrationID"),
            _f("TaxZone"),
            _f("Terms"),
        ),
        links=(
            LinkSpec("MainContact", "main_contact", CONTACT),
            LinkSpec("BillingContact", "billing_contact", CONTACT),
            LinkSpec("PrimaryContact", "primary_contact", CONTACT),
        ),
    ),
)

INVOICE_DETAIL = ObjectSpec(
    "InvoiceDetail",
    (
        _f("Account"),
        _f("Amount", D),
        _f("Branch"),
        _f("CalculateDiscountsOnImport", B),
        _f("CostCode"),
        _f("DiscountAmount", D),
        _f("ExtendedPrice", D),
        _f("InventoryID"),
        _f("LastModifiedDateTime", TS, readonly=True),
        _f("LineNbr", N, readonly=True),
        _f("ProjectTask"),
        _f("Qty", D),
        _f("Subaccount"),
        _f("TaxCategory"),
        _f("TransactionDescription", max_length=256),
        _f("UnitPrice", D),
        _f("UOM"),
    ),
)
INVOICE_APPLICATION = ObjectSpec(
    "InvoiceApplicationsDefault",
    (
        _f("AmountPaid", D, readonly=True),
        _f("Balance", D, readonly=True),
        _f("DocType", readonly=True, labels=ADJUSTED_TYPES),
        _f("PaymentDate", DT, readonly=True),
        _f("ReferenceNbr", readonly=True),
        _f("Status", readonly=True),
    ),
)


# A credit memo's applications to open invoices and debit memos (AR301000 "Applications" tab of
# a credit memo; Default 22-25 ``InvoiceApplicationsCreditMemo``, section 6.2). Stored with the
# applications the Payment entity shows for the same credit memo (one ARAdjust table).
INVOICE_CREDIT_MEMO_APPLICATION = ObjectSpec(
    "InvoiceApplicationsCreditMemo",
    (
        _f("AmountPaid", D),
        _f("Balance", D, readonly=True),
        _f("Customer", readonly=True),
        _f("CustomerOrder", readonly=True),
        _f("Description", readonly=True),
        _f("DocType", labels=ADJUSTED_TYPES),
        _f("PostPeriod", readonly=True),
        _f("ReferenceNbr"),
        _f("Status", readonly=True),
    ),
)


def _released(line: Any) -> bool:
    return bool(line.values.get("released"))


def _unreleased(line: Any) -> bool:
    return not line.values.get("released")


INVOICE = EntitySpec(
    name="Invoice",
    table="ar_documents",
    keys=("Type", "ReferenceNbr"),
    cache_name="AR Invoice",
    graph="PX.Objects.AR.ARInvoiceEntry",
    view="Document",
    actions=("ReleaseInvoice",),
    auto_key="ReferenceNbr",
    key_defaults={"Type": "INV"},
    doc_types=frozenset(INVOICE_TYPES),
    obj=ObjectSpec(
        "Invoice",
        (
            _f("Amount", D, attr="amount", readonly=True),
            _f("Balance", D, attr="balance", readonly=True),
            _f("BillingPrinted", B, attr="billing_printed"),
            _f("CreatedDateTime", TS, attr="created", readonly=True),
            _f("Customer", attr="customer"),
            _f("CustomerOrder", attr="invoice_nbr", max_length=40),
            _f("Date", DT, attr="doc_date"),
            _f("Description", attr="description", max_length=512),
            _f("DueDate", DT, attr="due_date"),
            _f("Hold", B, attr="hold"),
            _f("IsTaxValid", B, attr="tax_valid"),
            _f("LastModifiedDateTime", TS, attr="modified", readonly=True),
            _f("LinkARAccount", attr="ar_account"),
            _f("LinkBranch", attr="branch"),
            _f("LocationID", attr="location"),
            _f("PostPeriod", attr="fin_period"),
            _f("Project", attr="project"),
            _f("ReferenceNbr", attr="ref_nbr", max_length=15),
            _f("Status", attr="status", readonly=True),
            _f("TaxTotal", D, attr="tax_total", readonly=True),
            _f("Terms", attr="terms"),
            _f("Type", attr="doc_type", labels=INVOICE_TYPES),
        ),
        collections=(
            CollectionSpec("Details", "lines", INVOICE_DETAIL),
            CollectionSpec("ApplicationsCreditMemo", "applications", INVOICE_CREDIT_MEMO_APPLICATION),
            CollectionSpec("ApplicationsDefault", "applied_by", INVOICE_APPLICATION, readonly=True),
        ),
        links=(LinkSpec("BillToContact", "bill_to_contact", DOC_CONTACT),),
    ),
)

PAYMENT_DETAIL = ObjectSpec(
    "PaymentDetail",
    (
        _f("AmountPaid", D),
        _f("BalanceWriteOff", D),
        _f("CashDiscountTaken", D),
        _f("CustomerOrder", readonly=True),
        _f("Description", readonly=True),
        _f("DocLineNbr", N),
        _f("DocType", labels=ADJUSTED_TYPES),
        _f("ReferenceNbr"),
        _f("WriteOffReasonCode"),
    ),
)
PAYMENT_HISTORY = ObjectSpec(
    "PaymentApplicationHistoryDetail",
    (
        _f("AmountPaid", D, readonly=True),
        _f("Date", DT, attr="application_date", readonly=True),
        _f("DisplayDocType", attr="DocType", readonly=True, labels=ADJUSTED_TYPES),
        _f("DisplayRefNbr", attr="ReferenceNbr", readonly=True),
    ),
)

PAYMENT = EntitySpec(
    name="Payment",
    table="ar_documents",
    keys=("Type", "ReferenceNbr"),
    cache_name="AR Payment",
    graph="PX.Objects.AR.ARPaymentEntry",
    view="Document",
    actions=("ReleasePayment",),
    auto_key="ReferenceNbr",
    key_defaults={"Type": "PMT"},
    doc_types=frozenset(PAYMENT_TYPES),
    obj=ObjectSpec(
        "Payment",
        (
            _f("ApplicationDate", DT, attr="doc_date"),
            _f("AppliedToDocuments", D, attr="applied_total", readonly=True),
            # Comes back empty on GET on the real server (section 6.4): never stored.
            _f("AvailableBalance", D, attr="available_balance", readonly=True),
            _f("Branch", attr="branch"),
            _f("BranchID", attr="branch"),
            _f("CashAccount", attr="cash_account"),
            _f("CurrencyID", attr="currency"),
            _f("CustomerID", attr="customer"),
            _f("CustomerLocationID", attr="location"),
            _f("Description", attr="description", max_length=512),
            _f("ExternalRef", attr="external_ref", max_length=40),
            _f("Hold", B, attr="hold"),
            _f("LastModifiedDateTime", TS, attr="modified", readonly=True),
            _f("NoteID", G, attr="note_id", readonly=True),
            _f("PaymentAmount", D, attr="amount"),
            _f("PaymentMethod", attr="payment_method", max_length=10),
            _f("PaymentRef", attr="ext_ref_nbr", max_length=40),
            _f("ReferenceNbr", attr="ref_nbr", max_length=15),
            _f("Status", attr="status", readonly=True),
            _f("Type", attr="doc_type", labels=PAYMENT_TYPES),
        ),
        collections=(
            CollectionSpec("DocumentsToApply", "applications", PAYMENT_DETAIL, shows=_unreleased),
            CollectionSpec(
                "ApplicationHistory", "applications", PAYMENT_HISTORY, readonly=True, shows=_released
            ),
        ),
    ),
)

JOURNAL_DETAIL = ObjectSpec(
    "JournalTransactionDetail",
    (
        _f("Account"),
        _f("BranchID"),
        _f("CostCode"),
        _f("CreditAmount", D),
        _f("DebitAmount", D),
        # The read-only *account* description; the line memo is TransactionDescription (6.5).
        _f("Description", readonly=True),
        _f("IsNonPM", B),
        _f("LineNbr", N, readonly=True),
        _f("NonBillable", B),
        _f("Project"),
        _f("ProjectTask"),
        _f("Qty", D),
        _f("ReferenceNbr", max_length=15),
        _f("Subaccount"),
        _f("TransactionDescription", max_length=512),
        _f("UOM"),
        _f("VendorOrCustomer"),
    ),
)

JOURNAL_TRANSACTION = EntitySpec(
    name="JournalTransaction",
    table="batches",
    keys=("Module", "BatchNbr"),
    cache_name="Batch",
    graph="PX.Objects.GL.JournalEntry",
    view="BatchModule",
    actions=("ReleaseJournalTransaction",),
    auto_key="BatchNbr",
    key_defaults={"Module": "GL"},
    obj=ObjectSpec(
        "JournalTransaction",
        (
            _f("BatchNbr", attr="ref_nbr", max_length=15),
            _f("BranchID", attr="branch"),
            _f("CreatedDateTime", TS, attr="created", readonly=True),
            _f("CurrencyID", attr="currency"),
            _f("Description", attr="description", max_length=512),
            _f("Hold", B, attr="hold"),
            _f("LastModifiedDateTime", TS, attr="modified", readonly=True),
            _f("LedgerID", attr="ledger"),
            _f("Module", attr="module", max_length=2),
            _f("PostPeriod", attr="fin_period"),
            _f("Status", attr="status", readonly=True),
            _f("TransactionDate", DT, attr="doc_date"),
        ),
        collections=(CollectionSpec("Details", "lines", JOURNAL_DETAIL),),
    ),
)

ACCOUNT = EntitySpec(
    name="Account",
    table="accounts",
    keys=("AccountCD",),
    cache_name="Account",
    graph="PX.Objects.GL.AccountMaint",
    view="AccountRecords",
    obj=ObjectSpec(
        "Account",
        (
            _f("AccountCD", max_length=10),
            _f("AccountClass"),
            _f("AccountGroup"),
            _f("AccountID", N, readonly=True),
            _f("Active", B),
            _f("CashAccount", B),
            _f("ChartOfAccountsOrder", N),
            _f("CreatedDateTime", TS, readonly=True),
            _f("CurrencyID"),
            _f("Description"),
            _f("LastModifiedDateTime", TS, readonly=True),
            _f("PostOption"),
            _f("Secured", B),
            _f("Type", labels=ACCOUNT_TYPES),
            _f("UseDefaultSubaccount", B),
        ),
    ),
)

SUBACCOUNT = EntitySpec(
    name="Subaccount",
    table="subaccounts",
    keys=("SubaccountCD",),
    cache_name="Subaccount",
    graph="PX.Objects.GL.SubAccountMaint",
    view="SubRecords",
    obj=ObjectSpec(
        "Subaccount",
        (
            _f("Active", B),
            _f("Description"),
            _f("Secured", B),
            _f("SubaccountCD", max_length=30),
            _f("SubaccountID", N, readonly=True),
        ),
    ),
)

CURRENCY = EntitySpec(
    name="Currency",
    table="currencies",
    keys=("CurrencyID",),
    cache_name="Currency",
    graph="PX.Objects.CM.CurrencyMaint",
    view="CuryListRecords",
    obj=ObjectSpec(
        "Currency",
        (
            _f("Active", B),
            _f("CurrencyID", max_length=5),
            _f("CurrencySymbol"),
            _f("DecimalPrecision", SH),
            _f("Description"),
            _f("LastModifiedDateTime", TS, readonly=True),
            _f("UseForAccounting", B),
        ),
    ),
)

LEDGER = EntitySpec(
    name="Ledger",
    table="ledgers",
    keys=("LedgerID",),
    cache_name="Ledger",
    graph="PX.Objects.GL.GeneralLedgerMaint",
    view="LedgerRecords",
    obj=ObjectSpec(
        "Ledger",
        (
            _f("Currency"),
            _f("Description"),
            _f("LastModifiedDateTime", TS, readonly=True),
            _f("LedgerID", max_length=10),
            _f("Type"),
        ),
    ),
)

FINANCIAL_PERIOD_DETAIL = ObjectSpec(
    "FinancialPeriodDetail",
    (
        _f("AdjustmentPeriod", B, readonly=True),
        _f("ClosedInAP", B, readonly=True),
        _f("ClosedInAR", B, readonly=True),
        _f("ClosedInCA", B, readonly=True),
        _f("ClosedInFA", B, readonly=True),
        _f("ClosedInIN", B, readonly=True),
        _f("Description"),
        _f("EndDate", DT, readonly=True),
        _f("FinancialPeriodID", readonly=True),
        _f("LengthInDays", N, readonly=True),
        _f("PeriodNbr", readonly=True),
        _f("StartDate", DT, readonly=True),
        # Period activation and closing are processing screens, not the Default endpoint (6.6).
        _f("Status", readonly=True),
    ),
)

FINANCIAL_PERIOD = EntitySpec(
    name="FinancialPeriod",
    table="financial_years",
    keys=("FinancialYear",),
    cache_name="Financial Year",
    graph="PX.Objects.GL.FinPeriods.MasterFinPeriodMaint",
    view="FiscalYear",
    obj=ObjectSpec(
        "FinancialPeriod",
        (
            _f("FinancialYear", max_length=4),
            _f("NbrOfPeriods", SH, readonly=True),
            _f("StartDate", DT, readonly=True),
            _f("UserDefinedPeriods", B, readonly=True),
        ),
        collections=(CollectionSpec("Details", "periods", FINANCIAL_PERIOD_DETAIL),),
    ),
)

ENTITIES: Mapping[str, EntitySpec] = {
    spec.name: spec
    for spec in (
        CUSTOMER,
        INVOICE,
        PAYMENT,
        JOURNAL_TRANSACTION,
        ACCOUNT,
        SUBACCOUNT,
        CURRENCY,
        LEDGER,
        FINANCIAL_PERIOD,
    )
}


def version_key(version: str) -> tuple[int, ...]:
    """``24.200.001`` as a comparable tuple."""
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def in_version(spec: FieldSpec, version: str) -> bool:
    """Whether endpoint ``version``'s contract has the field (every version when unknown)."""
    return spec.since is None or not version or version_key(version) >= version_key(spec.since)


def label_to_code(labels: Mapping[str, str], value: str) -> str | None:
    """The stored code for a drop-down value sent as its label (or, as Acumatica's Postman does, its code)."""
    for code, label in labels.items():
        if value == label:
            return code
    return value if value in labels else None
