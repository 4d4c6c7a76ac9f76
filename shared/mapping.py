"""The mapping file, and pure functions from Zuora records to ERP documents.

The mapping file (``LEDGERBRIDGE_MAPPING_FILE``, TOML, reviewed by Finance) says where Zuora's
accounting codes, payment method types and currencies go in the ERP::

    [erp]
    branch = "HQ"
    ledger = "ACTUAL"
    customer_class = "DEFAULT"
    tax_accounting_code = "Sales Tax Payable"   # the code whose account takes invoice tax
    memo_item_account = "recognized_revenue"    # or "deferred_revenue": a memo item's line account
    [accounts]            # Zuora accounting code name -> ERP GL account
    "Sales Revenue" = { account = "40000", subaccount = "000000" }
    [payment_methods]     # Zuora payment method type -> ERP payment method and cash account
    CreditCard = { method = "CC", cash_account = "10200" }
    [currencies]          # Zuora currency -> ERP currency; anything absent is refused
    USD = "USD"
    [journal]
    transaction_types = ["Invoice Item", "Taxation Item"]   # optional

:func:`load_mapping` validates it (at start-up and by ``ledgerbridge mapping check``) and names
the file, table and key of every problem. Nothing is guessed: a record whose account, payment
method or currency is not in the file raises :class:`Unmapped` naming the missing key, and the
flow parks it. Records are read with case-insensitive keys and exact decimals (Object Query
spells ``ERPAccountId__c`` as ``eRPAccountId__c`` and sends amounts as numbers or strings,
zuora-api.md sections 9.3 and 8.2).
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Callable, Sequence
from collections.abc import Mapping as AbcMapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.erp.base import (
    ZERO,
    Application,
    ArDocument,
    ArLine,
    Customer,
    DocumentKind,
    ErpTarget,
    Journal,
    JournalLine,
    Payment,
    UnbalancedJournal,
    period_of,
)
from shared.zuora.records import get_field, parse_date, to_decimal

Row = AbcMapping[str, Any]
UnmappedKind = Literal["account", "payment_method", "currency"]
_TABLES: dict[str, str] = {
    "account": "accounts",
    "payment_method": "payment_methods",
    "currency": "currencies",
}


# -- errors ---------------------------------------------------------------------------------------


class MappingFileError(ValueError):
    """The mapping file is missing or invalid; the message names the file, table and key."""


class MappingError(Exception):
    """A Zuora record cannot be turned into an ERP document; ``reason`` is the parking reason."""

    @property
    def reason(self) -> str:
        return str(self)


class Unmapped(MappingError):
    """The mapping file has no entry for ``key`` in the table of ``kind``."""

    def __init__(self, kind: UnmappedKind, key: str, *, record: str | None = None) -> None:
        self.kind = kind
        self.key = key
        self.table = _TABLES[kind]
        where = f"{record}: " if record else ""
        shown = repr(key) if key else "'' (blank)"
        super().__init__(
            f"{where}unmapped {kind.replace('_', ' ')} {shown}: add it to [{self.table}] in the mapping file"
        )


class InconsistentRecord(MappingError):
    """The record itself is unusable: a field is missing, lines do not add up to the total, a
    journal entry does not balance."""


# -- the file -------------------------------------------------------------------------------------


def _strip(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AccountMapping(_Model):
    """An ERP GL account and optional subaccount."""

    account: str
    subaccount: str | None = None

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        return _strip(value)

    @field_validator("subaccount")
    @classmethod
    def _subaccount(cls, value: str | None) -> str | None:
        return None if value is None else _strip(value)


class PaymentMethodMapping(_Model):
    """An ERP payment method and the cash account it pays into."""

    method: str
    cash_account: str

    @field_validator("method", "cash_account")
    @classmethod
    def _text(cls, value: str) -> str:
        return _strip(value)


MemoItemAccount = Literal["recognized_revenue", "deferred_revenue"]
# The accounting-code id field of a credit/debit memo item that names its GL account (memo items
# carry code ids, not an accountingCode: zuora-sdk ExpandedCreditMemoItem/ExpandedDebitMemoItem).
MEMO_ITEM_CODE_FIELDS: dict[str, str] = {
    "recognized_revenue": "recognizedRevenueAccountingCodeId",
    "deferred_revenue": "deferredRevenueAccountingCodeId",
}


class ErpSection(_Model):
    branch: str
    ledger: str = "ACTUAL"
    customer_class: str | None = None
    tax_accounting_code: str = "Sales Tax Payable"
    # Which code of a memo item is its line's account. An invoice item's accountingCode is its
    # charge's revenue code (Zuora: "for invoicing, the accounting code maps to an income or revenue
    # GL account"), which on a memo item is the recognized-revenue code (docs/vendor-notes.md).
    memo_item_account: MemoItemAccount = "recognized_revenue"

    @field_validator("branch", "ledger", "tax_accounting_code")
    @classmethod
    def _text(cls, value: str) -> str:
        return _strip(value)


class JournalSection(_Model):
    transaction_types: tuple[str, ...] | None = None


class Mapping(_Model):
    """The validated mapping file. Lookups raise :class:`Unmapped` for anything not listed."""

    erp: ErpSection
    accounts: dict[str, AccountMapping] = Field(default_factory=dict)
    payment_methods: dict[str, PaymentMethodMapping] = Field(default_factory=dict)
    currencies: dict[str, str] = Field(default_factory=dict)
    journal: JournalSection = Field(default_factory=JournalSection)

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, value: dict[str, str]) -> dict[str, str]:
        for code, erp_code in value.items():
            if len(code) != 3 or not code.isalpha() or not code.isupper():
                raise ValueError(f"{code!r} is not an ISO 4217 currency code such as USD")
            if not erp_code.strip() or len(erp_code.strip()) > 5:
                raise ValueError(f"{code}: the ERP currency must be 1-5 characters, not {erp_code!r}")
        return {code: erp_code.strip() for code, erp_code in value.items()}

    def account(self, code_name: str, *, record: str | None = None) -> AccountMapping:
        found = self.accounts.get(code_name)
        if found is None:
            raise Unmapped("account", code_name, record=record)
        return found

    def payment_method(self, method_type: str, *, record: str | None = None) -> PaymentMethodMapping:
        found = self.payment_methods.get(method_type)
        if found is None:
            raise Unmapped("payment_method", method_type, record=record)
        return found

    def currency(self, code: str, *, record: str | None = None) -> str:
        found = self.currencies.get(code)
        if found is None:
            raise Unmapped("currency", code, record=record)
        return found

    @property
    def transaction_types(self) -> tuple[str, ...] | None:
        return self.journal.transaction_types

    def erp_accounts(self) -> set[str]:
        """Every ERP account the file names (GL accounts and cash accounts)."""
        return {a.account for a in self.accounts.values()} | {
            p.cash_account for p in self.payment_methods.values()
        }

    def erp_currencies(self) -> set[str]:
        return set(self.currencies.values())


def _location(path: Path, loc: tuple[int | str, ...]) -> str:
    if not loc:
        return f"{path}"
    table, *rest = (str(part) for part in loc)
    if not rest:
        return f"{path}: [{table}]"
    key = rest[0]
    shown = f'"{key}"' if not key.replace("_", "").isalnum() else key
    tail = "".join(f".{part}" for part in rest[1:])
    return f"{path}: [{table}] {shown}{tail}"


def load_mapping(path: Path | str) -> Mapping:
    """Read and validate the mapping file. :class:`MappingFileError` lists every problem, each
    naming the file, the table and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise MappingFileError(f"{path}: mapping file not found (LEDGERBRIDGE_MAPPING_FILE)") from None
    except OSError as exc:
        raise MappingFileError(f"{path}: cannot read the mapping file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MappingFileError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_location(path, tuple(err['loc']))}: {message}")
        raise MappingFileError("invalid mapping file:\n  " + "\n  ".join(problems)) from None


def check_mapping(mapping: Mapping, erp: ErpTarget, period: dt.date | str | None = None) -> list[str]:
    """Problems with the mapping in the ERP (``ledgerbridge mapping check``): every account and
    currency it names must exist and be active; ``period`` must be open."""
    return erp.check_reference_data(sorted(mapping.erp_accounts()), sorted(mapping.erp_currencies()), period)


# -- reading Zuora records ------------------------------------------------------------------------


def _text(row: Row, name: str, *, record: str) -> str:
    value = get_field(row, name)
    if value is None or not str(value).strip():
        raise InconsistentRecord(f"{record}: field {name} is missing")
    return str(value).strip()


def _optional_text(row: Row | None, name: str) -> str | None:
    if not row:
        return None
    value = get_field(row, name)
    if value is None:
        return None
    return str(value).strip() or None


def _amount(row: Row, name: str, *, record: str) -> Decimal:
    value = get_field(row, name)
    if value is None:
        raise InconsistentRecord(f"{record}: amount {name} is missing")
    try:
        return to_decimal(value)
    except ValueError as exc:
        raise InconsistentRecord(f"{record}: {name}: {exc}") from None


def _optional_amount(row: Row, name: str, *, record: str) -> Decimal | None:
    return None if get_field(row, name) is None else _amount(row, name, record=record)


def _date(row: Row, name: str, *, record: str) -> dt.date:
    value = get_field(row, name)
    if not isinstance(value, str) or not value.strip():
        raise InconsistentRecord(f"{record}: date {name} is missing")
    try:
        return parse_date(value)
    except ValueError:
        raise InconsistentRecord(f"{record}: {name} is not a date: {value!r}") from None


def _optional_date(row: Row, name: str, *, record: str) -> dt.date | None:
    return None if get_field(row, name) in (None, "") else _date(row, name, record=record)


def customer_id_of(account: Row) -> str:
    """The ERP customer key of a Zuora account: ``ERPAccountId__c`` when set, else the account
    number (both looked up case-insensitively)."""
    erp_id = _optional_text(account, "ERPAccountId__c")
    return erp_id or _text(account, "accountNumber", record=f"account {get_field(account, 'id')}")


def _document_customer(row: Row, customer_id: str | None, record: str) -> str:
    if customer_id:
        return customer_id
    account = get_field(row, "account")
    if not isinstance(account, AbcMapping):
        raise InconsistentRecord(f"{record}: no customer: expand the account or pass customer_id")
    return customer_id_of(account)


def _currency(row: Row, mapping: Mapping, record: str) -> str:
    code = _optional_text(row, "currency")
    account = get_field(row, "account")
    if code is None and isinstance(account, AbcMapping):
        code = _optional_text(account, "currency")
    if code is None:
        raise InconsistentRecord(f"{record}: currency is missing")
    return mapping.currency(code, record=record)


# -- Zuora -> neutral documents -------------------------------------------------------------------


def customer_from_account(row: Row, mapping: Mapping) -> Customer:
    """An Object Query account (``billTo`` expanded for contact details) as an ERP customer."""
    number = _text(row, "accountNumber", record=f"account {get_field(row, 'id')}")
    record = f"account {number}"
    contact = get_field(row, "billTo") or get_field(row, "billToContact")
    contact = contact if isinstance(contact, AbcMapping) else None
    return Customer(
        customer_id=customer_id_of(row),
        name=_text(row, "name", record=record),
        currency=_currency(row, mapping, record),
        zuora_account_id=_text(row, "id", record=record),
        zuora_account_number=number,
        email=_optional_text(contact, "workEmail") or _optional_text(contact, "personalEmail"),
        customer_class=mapping.erp.customer_class,
        address_line1=_optional_text(contact, "address1"),
        address_line2=_optional_text(contact, "address2"),
        city=_optional_text(contact, "city"),
        state=_optional_text(contact, "state"),
        postal_code=_optional_text(contact, "postalCode"),
        country=_optional_text(contact, "country"),
    )


def _line_description(item: Row) -> str:
    name = _optional_text(item, "chargeName") or _optional_text(item, "description") or "Zuora charge"
    start, end = _optional_text(item, "serviceStartDate"), _optional_text(item, "serviceEndDate")
    return f"{name} ({start[:10]} to {end[:10]})" if start and end else name


CodeNames = Callable[[str], str | None]
"""The name of a Zuora accounting code by its id (None: Zuora has no such code)."""


class UnknownAccountingCode(MappingError):
    """A memo item names an accounting-code id that Zuora does not list."""


def _invoice_item_code(item: Row, record: str) -> str:
    return _optional_text(item, "accountingCode") or ""


def _memo_item_code(mapping: Mapping, code_names: CodeNames | None) -> Callable[[Row, str], str]:
    """Reads a memo item's GL accounting code name: the id field ``[erp] memo_item_account``
    chooses, resolved through ``code_names``."""
    field_name = MEMO_ITEM_CODE_FIELDS[mapping.erp.memo_item_account]

    def code_of(item: Row, record: str) -> str:
        code_id = _optional_text(item, field_name)
        if code_id is None:
            raise InconsistentRecord(
                f"{record}: {field_name} is empty (the item has no such accounting code)"
            )
        if code_names is None:
            raise InconsistentRecord(f"{record}: cannot resolve accounting code id {code_id}")
        name = code_names(code_id)
        if name is None:
            raise UnknownAccountingCode(
                f"{record}: accounting code id {code_id} ({field_name}) is not among Zuora's accounting "
                "codes (GET /v1/accounting-codes)"
            )
        return name

    return code_of


def _ar_lines(
    items: Sequence[Row],
    mapping: Mapping,
    *,
    record: str,
    amount_field: str,
    net_field: str | None,
    code_of: Callable[[Row, str], str],
) -> list[ArLine]:
    """One line per item (tax-exclusive amount, account from the item's accounting code as
    ``code_of`` reads it) plus one tax line for the items' tax, on the account of
    ``[erp] tax_accounting_code``."""
    lines: list[ArLine] = []
    tax_total = ZERO
    for item in items:
        item_id = get_field(item, "id")
        tax = _optional_amount(item, "taxAmount", record=record) or ZERO
        net = _optional_amount(item, net_field, record=record) if net_field else None
        if net is None:
            amount = _amount(item, amount_field, record=record)
            # A tax-inclusive charge's amount includes its tax (zuora-api.md section 11.2).
            net = amount - tax if _optional_text(item, "taxMode") == "TaxInclusive" else amount
        code = code_of(item, f"{record} item {item_id}")
        target = mapping.account(code, record=f"{record} item {item_id}")
        quantity = _optional_amount(item, "quantity", record=record)
        lines.append(
            ArLine(
                description=_line_description(item),
                amount=net,
                account=target.account,
                subaccount=target.subaccount,
                branch=mapping.erp.branch,
                quantity=quantity if quantity is not None else Decimal(1),
                unit_price=_optional_amount(item, "unitPrice", record=record),
            )
        )
        tax_total += tax
    if tax_total:
        target = mapping.account(mapping.erp.tax_accounting_code, record=f"{record} tax")
        lines.append(
            ArLine(
                description="Tax",
                amount=tax_total,
                account=target.account,
                subaccount=target.subaccount,
                branch=mapping.erp.branch,
            )
        )
    return lines


# Per document kind: number, date, items, item amount, item net amount, document total, label
# (zuora-api.md sections 11.1-11.6: invoice items have chargeAmount, memo items amount and
# amountWithoutTax; memos total in totalAmount).
_DOCUMENT_FIELDS: dict[str, tuple[str, str, str, str, str | None, str, str]] = {
    "invoice": ("invoiceNumber", "invoiceDate", "invoiceItems", "chargeAmount", None, "amount", "invoice"),
    "debit_memo": (
        "memoNumber", "memoDate", "debitMemoItems", "amount", "amountWithoutTax", "totalAmount",
        "debit memo",
    ),
    "credit_memo": (
        "memoNumber", "memoDate", "creditMemoItems", "amount", "amountWithoutTax", "totalAmount",
        "credit memo",
    ),
}  # fmt: skip


def _ar_document(
    kind: DocumentKind,
    row: Row,
    items: Sequence[Row] | None,
    mapping: Mapping,
    *,
    customer_id: str | None,
    applies_to: Sequence[Application] = (),
    code_names: CodeNames | None = None,
) -> ArDocument:
    fields = _DOCUMENT_FIELDS[kind]
    number_field, date_field, items_field, amount_field, net_field, total_field, label = fields
    number = _text(row, number_field, record=f"{label} {get_field(row, 'id')}")
    record = f"{label} {number}"
    if items is None:
        expanded = get_field(row, items_field)
        items = expanded if isinstance(expanded, list) else []
    if not items:
        raise InconsistentRecord(f"{record}: no items")
    code_of = _invoice_item_code if kind == "invoice" else _memo_item_code(mapping, code_names)
    lines = _ar_lines(
        items, mapping, record=record, amount_field=amount_field, net_field=net_field, code_of=code_of
    )
    doc = ArDocument(
        kind=kind,
        natural_key=number,
        customer_id=_document_customer(row, customer_id, record),
        date=_date(row, date_field, record=record),
        due_date=None if kind == "credit_memo" else _optional_date(row, "dueDate", record=record),
        currency=_currency(row, mapping, record),
        description=f"Zuora {record}",
        lines=tuple(lines),
        applies_to=tuple(applies_to),
    )
    # Expanded item lists are cut at the page size (section 9.3): a short list must not post.
    total = _optional_amount(row, total_field, record=record)
    if total is not None and doc.total != total:
        raise InconsistentRecord(f"{record}: items add up to {doc.total}, the document total is {total}")
    return doc


def document_from_invoice(
    row: Row, items: Sequence[Row] | None, mapping: Mapping, *, customer_id: str | None = None
) -> ArDocument:
    """A posted invoice and its items (``items`` None: the row's expanded ``invoiceItems``)."""
    return _ar_document("invoice", row, items, mapping, customer_id=customer_id)


def document_from_debit_memo(
    row: Row,
    items: Sequence[Row] | None,
    mapping: Mapping,
    *,
    customer_id: str | None = None,
    code_names: CodeNames | None = None,
) -> ArDocument:
    """A posted debit memo; its items' accounting-code ids are named through ``code_names``."""
    return _ar_document("debit_memo", row, items, mapping, customer_id=customer_id, code_names=code_names)


def document_from_credit_memo(
    row: Row,
    items: Sequence[Row] | None,
    mapping: Mapping,
    *,
    customer_id: str | None = None,
    applies_to: Sequence[Application] = (),
    code_names: CodeNames | None = None,
) -> ArDocument:
    """A credit memo; ``applies_to`` are its applications to invoices/debit memos (by number); its
    items' accounting-code ids are named through ``code_names``."""
    return _ar_document(
        "credit_memo",
        row,
        items,
        mapping,
        customer_id=customer_id,
        applies_to=applies_to,
        code_names=code_names,
    )


def _method_type(row: Row, given: str | None) -> str | None:
    if given:
        return given
    method = get_field(row, "paymentMethod")
    if isinstance(method, AbcMapping) and _optional_text(method, "type"):
        return _optional_text(method, "type")
    return _optional_text(row, "paymentMethodType") or _optional_text(row, "methodType")


def _payment(
    kind: Literal["payment", "refund"],
    row: Row,
    mapping: Mapping,
    applications: Sequence[Application],
    *,
    customer_id: str | None,
    payment_method_type: str | None,
) -> Payment:
    number_field, date_field = (
        ("paymentNumber", "effectiveDate") if kind == "payment" else ("refundNumber", "refundDate")
    )
    number = _text(row, number_field, record=f"{kind} {get_field(row, 'id')}")
    record = f"{kind} {number}"
    method_type = _method_type(row, payment_method_type)
    if method_type is None:
        raise InconsistentRecord(f"{record}: payment method type unknown: expand paymentmethod")
    target = mapping.payment_method(method_type, record=record)
    return Payment(
        kind=kind,
        natural_key=number,
        customer_id=_document_customer(row, customer_id, record),
        date=_date(row, date_field, record=record),
        amount=_amount(row, "amount", record=record),
        currency=_currency(row, mapping, record),
        payment_method=target.method,
        cash_account=target.cash_account,
        description=f"Zuora {record}",
        applications=tuple(applications),
    )


def payment_from_payment(
    row: Row,
    mapping: Mapping,
    applications: Sequence[Application] = (),
    *,
    customer_id: str | None = None,
    payment_method_type: str | None = None,
) -> Payment:
    """A processed payment. The method type comes from ``payment_method_type``, else the expanded
    ``paymentMethod.type``; ``applications`` name the invoices/debit memos it pays."""
    return _payment(
        "payment",
        row,
        mapping,
        applications,
        customer_id=customer_id,
        payment_method_type=payment_method_type,
    )


def payment_from_refund(
    row: Row,
    mapping: Mapping,
    applications: Sequence[Application] = (),
    *,
    customer_id: str | None = None,
    payment_method_type: str | None = None,
) -> Payment:
    """A processed refund (method type from ``methodType``); ``applications`` name the payments or
    credit memos it refunds."""
    return _payment(
        "refund", row, mapping, applications, customer_id=customer_id, payment_method_type=payment_method_type
    )


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
