"""The ERP port: what the flows call, not knowing which ERP is behind it.

The documents here are ERP-neutral, frozen, keyword-only values: amounts are :class:`~decimal.Decimal` (a
float is refused), dates are :class:`datetime.date`, sequences are tuples. Each document carries
the Zuora *natural key* (invoice, memo, payment, refund or journal-entry number) that an adapter
stores in the ERP so the document can be found again after an in-doubt create.

Every :class:`ErpTarget` method returns the ERP's reference or raises one of the typed errors of
:mod:`shared.errors` (``RateLimited``, ``Transient`` and its in-doubt subclass
:class:`~shared.erp.errors.OutcomeUnknown`, ``AuthFailed``, ``NotFound``, ``Rejected`` with field
reasons); the flows branch on the type only.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol, get_args, runtime_checkable

DocumentKind = Literal["invoice", "debit_memo", "credit_memo"]
PaymentKind = Literal["payment", "refund"]
RefKind = Literal["customer", "invoice", "debit_memo", "credit_memo", "payment", "refund", "journal"]

DOCUMENT_KINDS: tuple[str, ...] = get_args(DocumentKind)
PAYMENT_KINDS: tuple[str, ...] = get_args(PaymentKind)
REF_KINDS: tuple[str, ...] = get_args(RefKind)

ZERO = Decimal(0)
_PERIOD_RE = re.compile(r"^(\d{4})-(\d{2})$")


class UnbalancedJournal(ValueError):
    """A journal whose debits and credits differ; never sent anywhere."""

    def __init__(self, natural_key: str, debit: Decimal, credit: Decimal, currency: str) -> None:
        super().__init__(
            f"journal {natural_key} is out of balance: "
            f"debits {debit} {currency} != credits {credit} {currency}"
        )
        self.natural_key = natural_key
        self.debit = debit
        self.credit = credit


def _amount(value: object, what: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite amount, not {value}")
    return value


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string")
    return value


def _date(value: object, what: str) -> dt.date:
    if not isinstance(value, dt.date):
        raise TypeError(f"{what} must be a datetime.date, not {type(value).__name__}")
    return value


def period_of(value: dt.date | str) -> str:
    """A posting period as ``YYYY-MM``, from a date or a ``YYYY-MM`` string."""
    if isinstance(value, dt.date):
        return f"{value.year:04d}-{value.month:02d}"
    match = _PERIOD_RE.match(value)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"period must be a date or 'YYYY-MM', not {value!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class Customer:
    """A billing account as an ERP customer; ``customer_id`` is the ERP key (the account's
    ``ERPAccountId__c``, else the Zuora account number)."""

    customer_id: str
    name: str
    currency: str
    zuora_account_id: str
    zuora_account_number: str
    email: str | None = None
    customer_class: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    country: str | None = None

    def __post_init__(self) -> None:
        _text(self.customer_id, "customer_id")
        _text(self.name, "name")
        _text(self.currency, "currency")


@dataclass(frozen=True, kw_only=True)
class ArLine:
    """One receivable line. ``amount`` is authoritative (tax-exclusive, positive for the
    document's own direction); ``quantity``/``unit_price`` are informational and an adapter sends
    them only when ``quantity * unit_price == amount``."""

    description: str
    amount: Decimal
    account: str
    subaccount: str | None = None
    branch: str | None = None
    quantity: Decimal = Decimal(1)
    unit_price: Decimal | None = None

    def __post_init__(self) -> None:
        _amount(self.amount, "ArLine.amount")
        _amount(self.quantity, "ArLine.quantity")
        if self.unit_price is not None:
            _amount(self.unit_price, "ArLine.unit_price")
        _text(self.account, "ArLine.account")


@dataclass(frozen=True, kw_only=True)
class Application:
    """``amount`` of a payment, refund or credit memo applied to the document whose Zuora number
    is ``natural_key`` (of kind ``kind``: an invoice or debit memo for payments and credit memos;
    a payment or credit memo for refunds)."""

    natural_key: str
    amount: Decimal
    kind: RefKind = "invoice"

    def __post_init__(self) -> None:
        _text(self.natural_key, "Application.natural_key")
        _amount(self.amount, "Application.amount")
        if self.amount <= 0:
            raise ValueError(f"application to {self.natural_key} must be positive, not {self.amount}")
        if self.kind not in ("invoice", "debit_memo", "credit_memo", "payment"):
            raise ValueError(f"cannot apply to a {self.kind}")


def _check_targets(applications: Iterable[Application], kinds: tuple[str, ...], what: str) -> None:
    for app in applications:
        if app.kind not in kinds:
            raise ValueError(f"{what} cannot apply to a {app.kind} ({app.natural_key}); only to {kinds}")


@dataclass(frozen=True, kw_only=True)
class ArDocument:
    """An AR invoice, debit memo or credit memo. ``post_period`` (a date or ``YYYY-MM``) is None
    to let the ERP derive the period from ``date``."""

    kind: DocumentKind
    natural_key: str
    customer_id: str
    date: dt.date
    currency: str
    description: str
    lines: tuple[ArLine, ...]
    due_date: dt.date | None = None
    post_period: dt.date | str | None = None
    applies_to: tuple[Application, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in DOCUMENT_KINDS:
            raise ValueError(f"kind must be one of {DOCUMENT_KINDS}, not {self.kind!r}")
        _text(self.natural_key, "natural_key")
        _text(self.customer_id, "customer_id")
        _text(self.currency, "currency")
        _date(self.date, "date")
        if self.due_date is not None:
            _date(self.due_date, "due_date")
        if self.post_period is not None:
            period_of(self.post_period)
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "applies_to", tuple(self.applies_to))
        if not self.lines:
            raise ValueError(f"{self.kind} {self.natural_key} has no lines")
        if self.applies_to and self.kind != "credit_memo":
            raise ValueError("only a credit memo applies to other documents")
        _check_targets(self.applies_to, ("invoice", "debit_memo"), f"credit memo {self.natural_key}")

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def period(self) -> str:
        """``YYYY-MM``: the explicit posting period, else the document date's month."""
        return period_of(self.post_period if self.post_period is not None else self.date)


@dataclass(frozen=True, kw_only=True)
class Payment:
    """A customer payment or refund of ``amount`` (positive) into/out of ``cash_account``."""

    kind: PaymentKind
    natural_key: str
    customer_id: str
    date: dt.date
    amount: Decimal
    currency: str
    payment_method: str
    cash_account: str
    description: str
    applications: tuple[Application, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in PAYMENT_KINDS:
            raise ValueError(f"kind must be one of {PAYMENT_KINDS}, not {self.kind!r}")
        _text(self.natural_key, "natural_key")
        _text(self.customer_id, "customer_id")
        _date(self.date, "date")
        _amount(self.amount, "amount")
        if self.amount <= 0:
            raise ValueError(f"{self.kind} {self.natural_key} amount must be positive, not {self.amount}")
        object.__setattr__(self, "applications", tuple(self.applications))
        targets = ("invoice", "debit_memo") if self.kind == "payment" else ("payment", "credit_memo")
        _check_targets(self.applications, targets, f"{self.kind} {self.natural_key}")
        applied = sum((a.amount for a in self.applications), ZERO)
        if applied > self.amount:
            raise ValueError(f"{self.kind} {self.natural_key} applies {applied}, more than its {self.amount}")

    @property
    def period(self) -> str:
        return period_of(self.date)


@dataclass(frozen=True, kw_only=True)
class JournalLine:
    """A debit *or* a credit (non-negative, not both) to ``account``/``subaccount``."""

    account: str
    subaccount: str | None = None
    debit: Decimal = ZERO
    credit: Decimal = ZERO
    description: str = ""

    def __post_init__(self) -> None:
        _text(self.account, "JournalLine.account")
        _amount(self.debit, "JournalLine.debit")
        _amount(self.credit, "JournalLine.credit")
        if self.debit < 0 or self.credit < 0:
            raise ValueError(f"journal line on {self.account}: amounts must not be negative")
        if self.debit and self.credit:
            raise ValueError(f"journal line on {self.account} carries both a debit and a credit")


@dataclass(frozen=True, kw_only=True)
class Journal:
    """A balanced GL journal entry. Construction raises :class:`UnbalancedJournal` unless the
    debits equal the credits exactly (Decimal comparison, no tolerance)."""

    natural_key: str
    date: dt.date
    post_period: dt.date | str
    currency: str
    ledger: str
    branch: str
    description: str
    lines: tuple[JournalLine, ...]

    def __post_init__(self) -> None:
        _text(self.natural_key, "natural_key")
        _date(self.date, "date")
        period_of(self.post_period)
        _text(self.currency, "currency")
        object.__setattr__(self, "lines", tuple(self.lines))
        if not self.lines:
            raise ValueError(f"journal {self.natural_key} has no lines")
        if self.total_debit != self.total_credit:
            raise UnbalancedJournal(self.natural_key, self.total_debit, self.total_credit, self.currency)

    @property
    def total_debit(self) -> Decimal:
        return sum((line.debit for line in self.lines), ZERO)

    @property
    def total_credit(self) -> Decimal:
        return sum((line.credit for line in self.lines), ZERO)

    @property
    def period(self) -> str:
        return period_of(self.post_period)


Document = Customer | ArDocument | Payment | Journal
"""Any document the port sends."""

AppliedRef = Callable[[Application], str | None]
"""The ERP reference (:attr:`ErpRef.key`) of the document an application applies to, as the
caller knows it, or None (:meth:`ErpTarget.render`)."""


@dataclass(frozen=True)
class RenderedRequest:
    """The request an adapter makes for one document, as its sending path builds it
    (:meth:`ErpTarget.render`).

    ``target`` names the adapter (``acumatica``, ``file``). ``method`` and ``path`` say where the
    request goes: Acumatica's HTTP method and the entity path under the endpoint URL (``PUT``,
    ``Invoice``); the file export's ``export`` and the ``<folder>/<stem>`` of the ``.csv`` and
    ``.jsonl`` files it rewrites. ``body`` is what is sent: the wire JSON as a value (Acumatica:
    the wrapped record the client serialises), or the rows written. ``operation`` says the same
    in one line for a person. ``unresolved`` holds the applications whose ERP reference the
    caller did not supply: the body shows ``?`` in their place, where sending puts the reference
    the adapter looks up in the ERP."""

    target: str
    method: str
    path: str
    body: Any
    operation: str
    unresolved: tuple[Application, ...] = ()


@dataclass(frozen=True)
class ErpRef:
    """The ERP's reference to a document. ``key`` alone is enough to find and release it again
    (Acumatica: ``"Invoice/AR000123"``, ``"Credit Memo/AR000124"``, ``"Payment/000456"``,
    ``"GL/000045"``, a CustomerID; file export: ``"2025-06/journal/JE-00000012"``). ``erp_id``
    and ``status`` are informational."""

    kind: RefKind
    key: str
    released: bool
    erp_id: str | None = field(default=None, compare=False)
    status: str | None = field(default=None, compare=False)
    # What the ERP adapter did differently from the document it was given, and why (a document
    # posted into the next open period because its own is closed); recorded in the audit trail.
    note: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Totals:
    debit: Decimal = ZERO
    credit: Decimal = ZERO

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.debit + other.debit, self.credit + other.credit)


AccountTotals = Mapping[tuple[str, str], Totals]
"""Debit and credit totals per (account, currency)."""


def add_line_totals(totals: dict[tuple[str, str], Totals], account: str, currency: str, line: Totals) -> None:
    key = (account, currency)
    totals[key] = totals.get(key, Totals()) + line


@runtime_checkable
class ErpTarget(Protocol):
    """The ERP as the flows see it. Creates are not idempotent by themselves: the flows guard them
    with the ledger's ``posting`` state and, when in doubt, :meth:`find_document`."""

    def upsert_customer(self, customer: Customer) -> ErpRef:
        """Create or update the customer keyed by ``customer.customer_id`` (idempotent)."""
        ...

    def create_document(self, doc: ArDocument) -> ErpRef:
        """Create an unreleased (not on hold) AR document carrying ``doc.natural_key``."""
        ...

    def create_payment(self, payment: Payment) -> ErpRef:
        """Create an unreleased payment or refund carrying ``payment.natural_key``."""
        ...

    def post_journal(self, journal: Journal) -> ErpRef:
        """Create an unreleased GL batch whose description starts with ``journal.natural_key``."""
        ...

    def release(self, ref: ErpRef) -> ErpRef:
        """Release (post) the document; a separate step, recorded by the flow. Idempotent for a
        document already released."""
        ...

    def apply_later(self, ref: ErpRef, application: Application, customer_id: str) -> tuple[ErpRef, bool]:
        """Apply the released payment, refund or credit memo ``ref`` (of customer ``customer_id``)
        to ``application``'s document, released too, after both were created. Safe to repeat: an
        application the ERP has already (a lost answer's) is not made again. Returns the target's
        reference and whether it was applied now (False: found applied)."""
        ...

    def find_document(self, kind: RefKind, natural_key: str, customer_id: str | None = None) -> ErpRef | None:
        """The document of ``kind`` carrying ``natural_key``, or None. More than one match raises
        :class:`~shared.erp.errors.DuplicateDocuments` (a person must look)."""
        ...

    def journal_totals(
        self, *, natural_keys: Sequence[str] | None = None, period: dt.date | str | None = None
    ) -> AccountTotals:
        """Debit/credit totals per (account, currency) read back from the ERP, over the journals
        with the given natural keys or over every ledgerbridge journal of a period."""
        ...

    def check_reference_data(
        self, accounts: Iterable[str], currencies: Iterable[str], period: dt.date | str | None = None
    ) -> list[str]:
        """Problems that would make postings fail (missing or inactive accounts or currencies, a
        period that is not open); an empty list means ready."""
        ...

    def render(self, document: Document, *, applied: AppliedRef | None = None) -> RenderedRequest:
        """The request the matching write (:meth:`upsert_customer`, :meth:`create_document`,
        :meth:`create_payment`, :meth:`post_journal`) would make for ``document``, built by the
        same code, without sending anything or calling the ERP. ``applied`` gives the ERP
        references of the documents a payment, refund or credit memo applies to, for an adapter
        whose request names them (sending looks them up in the ERP instead)."""
        ...

    def close(self) -> None:
        """Release the adapter's resources (log out of ERP sessions). Safe to call twice."""
        ...
