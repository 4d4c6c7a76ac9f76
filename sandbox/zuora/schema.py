"""Zuora objects as the sandbox stores them: fields with kinds, relations, Object Query endpoints.

Records are dicts keyed by the Zuora API (PascalCase) field name (``InvoiceNumber``, ``SKU``,
``ERPAccountId__c``). Each API renders those names its own way: ZOQL verbatim, Object Query in
camelCase with only the first letter lowered (``sKU``, ``uOM``, ``eRPAccountId__c``; section 9.3),
filters and ``fields[]`` case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any

from .formats import decimal, number_json, parse_date, parse_datetime


class Kind(StrEnum):
    ID = "id"
    STRING = "string"
    PICKLIST = "picklist"
    INT = "int"
    DECIMAL = "decimal"
    BOOL = "bool"
    DATE = "date"
    DATETIME = "datetime"


_KINDS = {
    "": Kind.STRING,
    "id": Kind.ID,
    "pick": Kind.PICKLIST,
    "int": Kind.INT,
    "dec": Kind.DECIMAL,
    "bool": Kind.BOOL,
    "date": Kind.DATE,
    "dt": Kind.DATETIME,
}

AUDIT = "CreatedById:id CreatedDate:dt UpdatedById:id UpdatedDate:dt"


def _fields(spec: str) -> dict[str, Kind]:
    out: dict[str, Kind] = {}
    for token in (spec + " " + AUDIT).split():
        name, _, kind = token.partition(":")
        out[name] = _KINDS[kind]
    return out


def oq_key(name: str) -> str:
    """Object Query JSON key of an API field name: first letter lowered (``SKU`` -> ``sKU``)."""
    return name[:1].lower() + name[1:]


@dataclass(frozen=True)
class Relation:
    """An expandable relation: ``one`` follows ``local`` to the target's Id, ``many`` finds
    targets whose ``remote`` field equals this record's Id."""

    target: str  # object name
    kind: str  # "one" | "many"
    key: str  # camelCase output key
    local: str = "Id"
    remote: str = "Id"


@dataclass(frozen=True)
class ObjectType:
    """One Zuora object: its table, fields, number field and relations."""

    name: str
    table: str
    fields: dict[str, Kind]
    number_field: str | None = None
    zoql: bool = True
    relations: dict[str, Relation] = field(default_factory=dict)
    # ZOQL fields that need a newer WSDL than the default 79 (section 5.3).
    min_wsdl: dict[str, int] = field(default_factory=dict)

    lowered: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "lowered", {name.lower(): name for name in self.fields})

    def field_named(self, name: str) -> str | None:
        """The API field name matching ``name`` case-insensitively, or None."""
        return self.lowered.get(name.lower())


def _one(target: str, key: str, local: str) -> Relation:
    return Relation(target, "one", key, local=local)


def _many(target: str, key: str, remote: str) -> Relation:
    return Relation(target, "many", key, remote=remote)


ACCOUNT = ObjectType(
    "Account",
    "accounts",
    _fields(
        "Id:id AccountNumber Name Currency:pick "
        "Status:pick Balance:dec CreditBalance:dec UnappliedBalance:dec "
        "TotalInvoiceBalance:dec TotalDebitMemoBalance:dec UnappliedCreditMemoAmount:dec AutoPay:bool "
        "BillCycleDay:int Batch:pick PaymentTerm PaymentGateway DefaultPaymentMethodId:id BillToId:id "
        "SoldToId:id ShipToId:id ParentId:id CrmId PurchaseOrderNumber LastInvoiceDate:date Mrr:dec "
        "CommunicationProfileId:id InvoiceTemplateId:id OrganizationId:id TaxExemptStatus:pick VATId Notes "
        "ERPAccountId__c"
    ),
    number_field="AccountNumber",
    relations={
        "billto": _one("Contact", "billTo", "BillToId"),
        "soldto": _one("Contact", "soldTo", "SoldToId"),
        "shipto": _one("Contact", "shipTo", "ShipToId"),
        "defaultpaymentmethod": _one("PaymentMethod", "defaultPaymentMethod", "DefaultPaymentMethodId"),
        "invoices": _many("Invoice", "invoices", "AccountId"),
        "payments": _many("Payment", "payments", "AccountId"),
        "refunds": _many("Refund", "refunds", "AccountId"),
        "creditmemos": _many("CreditMemo", "creditMemos", "AccountId"),
        "debitmemos": _many("DebitMemo", "debitMemos", "AccountId"),
        "paymentmethods": _many("PaymentMethod", "paymentMethods", "AccountId"),
    },
)

CONTACT = ObjectType(
    "Contact",
    "contacts",
    _fields(
        "Id:id AccountId:id FirstName LastName NickName WorkEmail WorkPhone Address1 Address2 City State "
        "PostalCode Country"
    ),
)

PAYMENT_METHOD = ObjectType(
    "PaymentMethod",
    "payment-methods",
    _fields(
        "Id:id AccountId:id Type:pick PaymentMethodStatus:pick CreditCardType:pick "
        "CreditCardMaskNumber AchBankName AchAccountNumberMask"
    ),
)

INVOICE = ObjectType(
    "Invoice",
    "invoices",
    _fields(
        "Id:id InvoiceNumber AccountId:id InvoiceDate:date DueDate:date TargetDate:date Amount:dec "
        "AmountWithoutTax:dec TaxAmount:dec TaxExemptAmount:dec "
        "Balance:dec PaymentAmount:dec RefundAmount:dec "
        "CreditMemoAmount:dec AdjustmentAmount:dec CreditBalanceAdjustmentAmount:dec "
        "Currency:pick Status:pick "
        "PostedBy:id PostedDate:dt Reversed:bool Source "
        "SourceId SourceType:pick TransferredToAccounting:pick "
        "PaymentTerm AutoPay:bool Comments BillToContactId:id SoldToContactId:id ShipToContactId:id "
        "EInvoiceStatus:pick IncludesOneTime:bool IncludesRecurring:bool IncludesUsage:bool"
    ),
    number_field="InvoiceNumber",
    relations={
        "account": _one("Account", "account", "AccountId"),
        "billtocontact": _one("Contact", "billToContact", "BillToContactId"),
        "invoiceitems": _many("InvoiceItem", "invoiceItems", "InvoiceId"),
    },
)

INVOICE_ITEM = ObjectType(
    "InvoiceItem",
    "invoice-items",
    _fields(
        "Id:id InvoiceId:id AccountId:id ChargeAmount:dec TaxAmount:dec TaxExemptAmount:dec Balance:dec "
        "UnitPrice:dec Quantity:dec UOM SKU ChargeName ChargeNumber ChargeDate:dt ServiceStartDate:date "
        "ServiceEndDate:date Description AccountingCode ProcessingType:pick SourceItemType:pick "
        "SubscriptionId:id SubscriptionNumber RatePlanChargeId:id ProductRatePlanChargeId:id "
        "BookingReference FulfillmentId:id TaxCode TaxMode:pick JournalEntryId "
        "ExcludeItemBillingFromRevenueAccounting:bool"
    ),
    relations={"invoice": _one("Invoice", "invoice", "InvoiceId")},
)

PAYMENT = ObjectType(
    "Payment",
    "payments",
    _fields(
        "Id:id PaymentNumber AccountId:id Type:pick Status:pick Amount:dec AppliedAmount:dec "
        "UnappliedAmount:dec RefundAmount:dec Currency:pick EffectiveDate:date SubmittedOn:dt SettledOn:dt "
        "Gateway GatewayState:pick GatewayResponse GatewayResponseCode GatewayOrderId ReferenceId "
        "PaymentMethodId:id PaymentMethodSnapshotId:id Source:pick SourceName Comment AccountingCode "
        "TransferredToAccounting:pick"
    ),
    number_field="PaymentNumber",
    relations={
        "account": _one("Account", "account", "AccountId"),
        "paymentmethod": _one("PaymentMethod", "paymentMethod", "PaymentMethodId"),
        "paymentapplications": _many("PaymentApplication", "paymentApplications", "PaymentId"),
    },
)

PAYMENT_APPLICATION = ObjectType(
    "PaymentApplication",
    "payment-applications",
    _fields("Id:id PaymentId:id InvoiceId:id DebitMemoId:id ApplyAmount:dec EffectiveDate:date"),
    zoql=False,
    relations={"invoice": _one("Invoice", "invoice", "InvoiceId")},
)

REFUND = ObjectType(
    "Refund",
    "refunds",
    _fields(
        "Id:id RefundNumber AccountId:id Type:pick Status:pick Amount:dec Currency:pick RefundDate:date "
        "RefundTransactionTime:dt SubmittedOn:dt SettledOn:dt MethodType:pick SourceType:pick ReasonCode "
        "ReferenceID Gateway GatewayState:pick PaymentMethodId:id PaymentMethodSnapshotId:id Comment "
        "AccountingCode TransferredToAccounting:pick"
    ),
    number_field="RefundNumber",
    relations={
        "account": _one("Account", "account", "AccountId"),
        "paymentmethod": _one("PaymentMethod", "paymentMethod", "PaymentMethodId"),
        "refundapplications": _many("RefundApplication", "refundApplications", "RefundId"),
    },
)

REFUND_APPLICATION = ObjectType(
    "RefundApplication",
    "refund-applications",
    _fields("Id:id RefundId:id PaymentId:id CreditMemoId:id ApplyAmount:dec EffectiveDate:date"),
    zoql=False,
    relations={"payment": _one("Payment", "payment", "PaymentId")},
)

_MEMO = (
    "Id:id MemoNumber AccountId:id InvoiceId:id MemoDate:date Status:pick TotalAmount:dec "
    "TotalAmountWithoutTax:dec TaxAmount:dec TotalTaxExemptAmount:dec DiscountAmount:dec Balance:dec "
    "Currency:pick ReasonCode Source SourceType:pick PostedOn:dt PostedById:id "
    "TargetDate:date TransferredToAccounting:pick EInvoiceStatus:pick Comments "
)

CREDIT_MEMO = ObjectType(
    "CreditMemo",
    "credit-memos",
    _fields(
        _MEMO
        + "DebitMemoId:id AppliedAmount:dec RefundAmount:dec RevenueImpacting:pick SourceId Reversed:bool"
    ),
    number_field="MemoNumber",
    zoql=False,  # Invoice Settlement objects are not in ZOQL (section 5.1)
    relations={
        "account": _one("Account", "account", "AccountId"),
        "billtocontact": _one("Contact", "billToContact", "BillToContactId"),
        "creditmemoitems": _many("CreditMemoItem", "creditMemoItems", "CreditMemoId"),
        "creditmemoapplications": _many("CreditMemoApplication", "creditMemoApplications", "CreditMemoId"),
    },
)

# Memo items have no AccountingCode: they carry accounting-code ids (zuora-sdk ExpandedCreditMemoItem,
# ExpandedDebitMemoItem), resolved to names through GET /v1/accounting-codes.
_MEMO_ITEM = (
    "Id:id Amount:dec AmountWithoutTax:dec TaxAmount:dec TaxExemptAmount:dec UnitPrice:dec "
    "Quantity:dec UnitOfMeasure Sku ChargeName ChargeNumber ChargeDate:dt ServiceStartDate:date "
    "ServiceEndDate:date Description RecognizedRevenueAccountingCodeId:id DeferredRevenueAccountingCodeId:id "
    "AccountReceivableAccountingCodeId:id ProcessingType:pick SourceItemType:pick "
    "InvoiceItemId:id SubscriptionId:id SubscriptionNumber RatePlanChargeId:id "
    "ProductRatePlanChargeId:id JournalEntryId ExcludeItemBillingFromRevenueAccounting:bool "
)

CREDIT_MEMO_ITEM = ObjectType(
    "CreditMemoItem",
    "credit-memo-items",
    _fields(
        _MEMO_ITEM + "CreditMemoId:id DebitMemoItemId:id FulfillmentId:id OrderLineItemId:id "
        "AppliedToOthersAmount:dec UnappliedAmount:dec OnAccountAccountingCodeId:id NonRevenueWriteOffAccountingCodeId:id"
    ),
    zoql=False,
)

CREDIT_MEMO_APPLICATION = ObjectType(
    "CreditMemoApplication",
    "credit-memo-applications",
    _fields("Id:id CreditMemoId:id InvoiceId:id DebitMemoId:id Amount:dec EffectiveDate:date"),
    zoql=False,
)

DEBIT_MEMO = ObjectType(
    "DebitMemo",
    "debit-memos",
    _fields(_MEMO + "CreditMemoId:id ReferredDebitMemoId:id DueDate:date AutoPay:bool PaymentTerm"),
    number_field="MemoNumber",
    zoql=False,
    relations={
        "account": _one("Account", "account", "AccountId"),
        "billtocontact": _one("Contact", "billToContact", "BillToContactId"),
        "debitmemoitems": _many("DebitMemoItem", "debitMemoItems", "DebitMemoId"),
    },
)

DEBIT_MEMO_ITEM = ObjectType(
    "DebitMemoItem",
    "debit-memo-items",
    _fields(_MEMO_ITEM + "DebitMemoId:id CreditMemoItemId:id Balance:dec"),
    zoql=False,
)

ACCOUNTING_PERIOD = ObjectType(
    "AccountingPeriod",
    "accounting-periods",
    _fields("Id:id Name StartDate:date EndDate:date Status:pick FiscalYear:int FiscalQuarter:int Notes"),
    min_wsdl={"FiscalQuarter": 81},
)

OBJECTS: dict[str, ObjectType] = {
    obj.name: obj
    for obj in (
        ACCOUNT,
        CONTACT,
        PAYMENT_METHOD,
        INVOICE,
        INVOICE_ITEM,
        PAYMENT,
        PAYMENT_APPLICATION,
        REFUND,
        REFUND_APPLICATION,
        CREDIT_MEMO,
        CREDIT_MEMO_ITEM,
        CREDIT_MEMO_APPLICATION,
        DEBIT_MEMO,
        DEBIT_MEMO_ITEM,
        ACCOUNTING_PERIOD,
    )
}
TABLES: dict[str, ObjectType] = {obj.table: obj for obj in OBJECTS.values()}

# Foreign keys the backend indexes (for "many" expansions and EQ filters on them).
INDEXED: dict[str, tuple[str, ...]] = {
    "Account": (),
    "Contact": ("AccountId",),
    "PaymentMethod": ("AccountId",),
    "Invoice": ("AccountId",),
    "InvoiceItem": ("InvoiceId",),
    "Payment": ("AccountId",),
    "PaymentApplication": ("PaymentId", "InvoiceId"),
    "Refund": ("AccountId",),
    "RefundApplication": ("RefundId", "PaymentId"),
    "CreditMemo": ("AccountId",),
    "CreditMemoItem": ("CreditMemoId",),
    "CreditMemoApplication": ("CreditMemoId", "InvoiceId"),
    "DebitMemo": ("AccountId",),
    "DebitMemoItem": ("DebitMemoId",),
    "AccountingPeriod": (),
}


@dataclass(frozen=True)
class Endpoint:
    """One ``/object-query/{path}`` collection (section 9.4)."""

    path: str
    obj: ObjectType
    alias: str  # the base object's name in ``<alias>.fields[]``
    filterable: frozenset[str]  # lowercase field names usable in filter[] and sort[]
    filter_only: frozenset[str]  # usable in filter[] but not sort[]
    expand: frozenset[str]  # allowed expand[] values (dotted paths)
    requires_filter: bool = False


def _set(text: str) -> frozenset[str]:
    return frozenset(text.replace(",", " ").split())


ENDPOINTS: dict[str, Endpoint] = {
    e.path: e
    for e in (
        Endpoint(
            "accounts",
            ACCOUNT,
            "account",
            _set(
                "id updateddate accountnumber balance batch billcycleday billtoid communicationprofileid "
                "crmid currency defaultpaymentmethodid invoicetemplateid lastinvoicedate name parentid "
                "shiptoid soldtoid status"
            ),
            _set("erpaccountid__c"),  # indexed custom field: filter only
            _set(
                "billto soldto shipto defaultpaymentmethod subscriptions payments refunds creditmemos "
                "debitmemos invoices usages paymentmethods subscriptions.rateplans "
                "subscriptions.rateplans.rateplancharges"
            ),
        ),
        Endpoint(
            "invoices",
            INVOICE,
            "invoice",
            _set(
                "id updateddate accountid amount balance duedate invoicedate invoicenumber reversed sourceid "
                "sourcetype status einvoicestatus"
            ),
            frozenset(),
            _set(
                "account account.billto account.soldto account.shipto billtocontact billtocontactsnapshot "
                "soldtocontactsnapshot shiptocontactsnapshot invoiceitems invoiceitems.subscription "
                "invoiceitems.subscription.account"
            ),
        ),
        Endpoint(
            "invoice-items",
            INVOICE_ITEM,
            "invoiceitem",
            _set(
                "id updateddate rateplanchargeid invoiceid accountingcode chargedate chargenumber "
                "excludeitembillingfromrevenueaccounting servicestartdate sourceitemtype subscriptionid "
                "subscriptionnumber productrateplanchargeid bookingreference"
            ),
            _set("fulfillmentid"),
            _set("invoice subscription subscriptionowner taxationitems rateplancharge orderlineitem"),
            requires_filter=True,
        ),
        Endpoint(
            "payments",
            PAYMENT,
            "payment",
            _set(
                "id updateddate accountid amount effectivedate gatewayorderid gatewaystate paymentmethodid "
                "paymentmethodsnapshotid paymentnumber referenceid source sourcename status unappliedamount "
                "createddate"
            ),
            frozenset(),
            _set(
                "account account.billto account.soldto paymentmethod paymentapplications "
                "paymentscheduleitempayments paymentscheduleitempayments.paymentscheduleitem"
            ),
        ),
        Endpoint(
            "refunds",
            REFUND,
            "refund",
            _set(
                "id updateddate accountid paymentmethodsnapshotid amount paymentmethodid reasoncode "
                "refunddate refundnumber sourcetype status type"
            ),
            frozenset(),
            _set(
                "account account.billto account.soldto paymentmethod refundapplications "
                "refundapplications.payment refundapplications.refundapplicationitems"
            ),
        ),
        Endpoint(
            "credit-memos",
            CREDIT_MEMO,
            "creditmemo",
            _set(
                "id updateddate balance einvoicestatus memodate memonumber sourcetype status totalamount "
                "invoiceid accountid"
            ),
            frozenset(),
            _set(
                "account billtocontact billtocontactsnapshot soldtocontactsnapshot shiptocontactsnapshot "
                "creditmemoitems creditmemoitems.subscription creditmemoitems.subscription.account "
                "creditmemoapplications"
            ),
        ),
        Endpoint(
            "credit-memo-items",
            CREDIT_MEMO_ITEM,
            "creditmemoitem",
            _set(
                "id updateddate excludeitembillingfromrevenueaccounting sourceitemtype chargenumber "
                "subscriptionid subscriptionnumber invoiceitemid rateplanchargeid creditmemoid"
            ),
            _set("fulfillmentid orderlineitemid"),
            _set("subscription rateplancharge subscriptionowner credittaxationitems"),
        ),
        Endpoint(
            "debit-memos",
            DEBIT_MEMO,
            "debitmemo",
            _set(
                "id updateddate balance creditmemoid einvoicestatus memodate memonumber sourcetype status "
                "totalamount invoiceid accountid"
            ),
            frozenset(),
            _set(
                "account billtocontact billtocontactsnapshot soldtocontactsnapshot shiptocontactsnapshot "
                "debitmemoitems debitmemoitems.subscription debitmemoitems.subscription.account"
            ),
        ),
        Endpoint(
            "debit-memo-items",
            DEBIT_MEMO_ITEM,
            "debitmemoitem",
            _set(
                "id updateddate creditmemoitemid excludeitembillingfromrevenueaccounting sourceitemtype "
                "chargenumber subscriptionid subscriptionnumber invoiceitemid productrateplanchargeid "
                "rateplanchargeid debitmemoid"
            ),
            frozenset(),
            _set("subscription rateplancharge subscriptionowner debittaxationitems"),
        ),
    )
}


def coerce(kind: Kind, value: Any, zone: timezone) -> Any:
    """A JSON value as the stored Python value of a field of ``kind``; raises ``ValueError``."""
    if value is None:
        return None
    if kind in (Kind.STRING, Kind.PICKLIST, Kind.ID):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        return value
    if kind is Kind.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{value!r} is not an integer")
        return value
    if kind is Kind.DECIMAL:
        return decimal(value)
    if kind is Kind.BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"{value!r} is not a boolean")
        return value
    if kind is Kind.DATE:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        return parse_date(value)
    if isinstance(value, datetime):
        return value.replace(microsecond=0)
    return parse_datetime(value, zone).replace(microsecond=0)


def plain(value: Any, zone: timezone) -> Any:
    """A stored value as plain JSON for the control plane (ISO dates, numbers)."""
    if isinstance(value, datetime):
        return value.astimezone(zone).isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return number_json(value)
    if isinstance(value, dict):
        return {k: plain(v, zone) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, zone) for v in value]
    return value
