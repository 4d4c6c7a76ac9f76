"""Acumatica as an :class:`~shared.erp.base.ErpTarget` (contract version 4, Default 20-25).

The neutral documents map to entities exactly as acumatica-api.md section 6 names them; the
names differ per entity (section 8 item 1), which is why the builders below are explicit:

=============  ==========================================================================
Customer       PUT by key ``CustomerID`` (an idempotent upsert, section 7).
AR documents   ``Invoice`` (AR301000) with ``Type`` Invoice / Debit Memo / Credit Memo,
               ``Customer`` (not CustomerID), no CurrencyID (it follows the customer),
               ``CustomerOrder`` = Zuora number, lines with ``Branch`` and
               ``TransactionDescription``.
Payments       ``Payment`` (AR302000) with ``Type`` Payment / Refund, ``CustomerID``,
               ``PaymentRef`` = Zuora number, ``DocumentsToApply``.
Journals       ``JournalTransaction`` (GL301000), Module GL, ``BranchID`` on header and
               lines, ``Description`` starting with the Zuora JE number, lines with
               ``TransactionDescription`` (a line's ``Description`` is the account's).
=============  ==========================================================================

Documents are created with ``Hold = false`` (pitfall 7) and released by a separate call to
:meth:`AcumaticaErp.release` (pitfall 8). Natural-key lookups use ``$filter`` with a narrow
``$select``; Acumatica keeps no uniqueness on these fields, so a second match is reported as
:class:`~shared.erp.errors.DuplicateDocuments` for a person.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from redis.exceptions import RedisError

from shared.connections import AcumaticaTarget
from shared.erp.acumatica_client import ENDPOINT_VARIABLE, AcumaticaClient
from shared.erp.acumatica_wire import odata_string, post_period, wrap
from shared.erp.base import (
    ZERO,
    AccountTotals,
    Application,
    AppliedRef,
    ArDocument,
    Customer,
    Document,
    ErpRef,
    Journal,
    Payment,
    RefKind,
    RenderedRequest,
    Totals,
    add_line_totals,
    period_of,
)
from shared.erp.errors import DuplicateDocuments, OutcomeUnknown
from shared.errors import ApiError, NotFound, Rejected, Transient
from shared.exchange import AuditHook
from shared.settings import ACUMATICA_ENDPOINTS

API = "acumatica"

INVOICE_TYPES: dict[str, str] = {
    "invoice": "Invoice",
    "debit_memo": "Debit Memo",
    "credit_memo": "Credit Memo",
}
PAYMENT_TYPES: dict[str, str] = {"payment": "Payment", "refund": "Refund"}
# DocType labels of the documents a payment, refund or credit memo is applied to (section 6.4).
APPLICATION_DOC_TYPES: dict[str, str] = {**INVOICE_TYPES, "payment": "Payment"}
# ARDocStatus / BatchStatus labels of a released document (sections 6.2, 6.4, 6.5).
RELEASED_AR = frozenset({"Open", "Closed", "Voided", "Reserved"})
RELEASED_GL = frozenset({"Posted", "Unposted", "Released", "Partially Released", "Completed", "Voided"})

# Field lengths (section 6): longer text is cut rather than refused.
DOC_DESCRIPTION_LEN = 512
AR_LINE_DESCRIPTION_LEN = 256
GL_LINE_DESCRIPTION_LEN = 512
GL_LINE_REFERENCE_LEN = 15
CUSTOMER_NAME_LEN = 255
ACCOUNT_REF_LEN = 50

PAGE_SIZE = 100
CURRENCY_CACHE_SIZE = 5_000  # customers whose currency one process remembers
READ_THREADS = 16  # concurrent reads of one totals read-back
# Journal batches looked up by one read-back request: an OData `or` of this many Description
# prefixes keeps the query string under ~1,500 characters (IIS refuses more than 2,048 by default).
KEYS_PER_READ = 20
KEY_CHARS_PER_READ = 1_000
CURRENCY_CACHE_SECONDS = 3600


# -- payloads (pure; the tests compare them with the API notes) ----------------------------------


def customer_record(customer: Customer) -> dict[str, Any]:
    """The Customer upsert body (section 6.1); the Zuora account id goes in AccountRef."""
    return {
        "CustomerID": customer.customer_id,
        "CustomerName": customer.name[:CUSTOMER_NAME_LEN],
        "CustomerClass": customer.customer_class,
        "CurrencyID": customer.currency,
        "AccountRef": customer.zuora_account_id[:ACCOUNT_REF_LEN],
        "MainContact": {
            "Email": customer.email,
            "Address": {
                "AddressLine1": customer.address_line1,
                "AddressLine2": customer.address_line2,
                "City": customer.city,
                "State": customer.state,
                "PostalCode": customer.postal_code,
                "Country": customer.country,
            },
        },
    }


def _line_quantities(
    quantity: Decimal, unit_price: Decimal | None, amount: Decimal
) -> tuple[Decimal, Decimal]:
    # Acumatica recomputes the line amount from Qty x UnitPrice; a prorated Zuora charge is not
    # quantity x list price, so the quantity is kept only when the product is the amount.
    if unit_price is not None and quantity != 0 and quantity * unit_price == amount:
        return quantity, unit_price
    return Decimal(1), amount


def document_record(doc: ArDocument, applications: Sequence[tuple[str, str, Decimal]] = ()) -> dict[str, Any]:
    """The Invoice body for an AR invoice, debit or credit memo (section 6.2). ``applications``
    are (DocType, ReferenceNbr, amount) of the documents a credit memo applies to."""
    details = []
    for line in doc.lines:
        qty, price = _line_quantities(line.quantity, line.unit_price, line.amount)
        details.append(
            {
                "Branch": line.branch,
                "TransactionDescription": line.description[:AR_LINE_DESCRIPTION_LEN],
                "Qty": qty,
                "UnitPrice": price,
                "ExtendedPrice": line.amount,
                "Amount": line.amount,
                "Account": line.account,
                "Subaccount": line.subaccount,
            }
        )
    record: dict[str, Any] = {
        "Type": INVOICE_TYPES[doc.kind],
        "Customer": doc.customer_id,
        "Date": doc.date,
        "DueDate": doc.due_date,
        "PostPeriod": None if doc.post_period is None else post_period(doc.post_period),
        "CustomerOrder": doc.natural_key,
        "Description": doc.description[:DOC_DESCRIPTION_LEN],
        "Hold": False,
        "Details": details,
    }
    if applications:
        record["ApplicationsCreditMemo"] = [
            {"DocType": doc_type, "ReferenceNbr": nbr, "AmountPaid": amount}
            for doc_type, nbr, amount in applications
        ]
    return record


def payment_record(payment: Payment, applications: Sequence[tuple[str, str, Decimal]] = ()) -> dict[str, Any]:
    """The Payment body for a payment or refund (section 6.4)."""
    record: dict[str, Any] = {
        "Type": PAYMENT_TYPES[payment.kind],
        "CustomerID": payment.customer_id,
        "PaymentMethod": payment.payment_method,
        "CashAccount": payment.cash_account,
        "PaymentAmount": payment.amount,
        "ApplicationDate": payment.date,
        "PaymentRef": payment.natural_key,
        "Description": payment.description[:DOC_DESCRIPTION_LEN],
        "Hold": False,
    }
    if applications:
        record["DocumentsToApply"] = [
            {"DocType": doc_type, "ReferenceNbr": nbr, "AmountPaid": amount}
            for doc_type, nbr, amount in applications
        ]
    return record


def journal_description(journal: Journal) -> str:
    """The batch description: it starts with the JE number, the batch's only findable key."""
    text = journal.description
    if not (text == journal.natural_key or text.startswith(journal.natural_key + " ")):
        text = f"{journal.natural_key} {text}".rstrip()
    return text[:DOC_DESCRIPTION_LEN]


def journal_record(journal: Journal) -> dict[str, Any]:
    """The JournalTransaction body (section 6.5): one debit or one credit per line."""
    reference = journal.natural_key if len(journal.natural_key) <= GL_LINE_REFERENCE_LEN else None
    details = []
    for line in journal.lines:
        amount_field = "DebitAmount" if line.debit else "CreditAmount"
        details.append(
            {
                "BranchID": journal.branch,
                "Account": line.account,
                "Subaccount": line.subaccount,
                amount_field: line.debit or line.credit,
                "TransactionDescription": line.description[:GL_LINE_DESCRIPTION_LEN] or None,
                "ReferenceNbr": reference,
            }
        )
    return {
        "Module": "GL",
        "TransactionDate": journal.date,
        "PostPeriod": post_period(journal.post_period),
        "BranchID": journal.branch,
        "LedgerID": journal.ledger,
        "CurrencyID": journal.currency,
        "Description": journal_description(journal),
        "Hold": False,
        "Details": details,
    }


def entity_record(
    document: Document, applications: Sequence[tuple[str, str, Decimal]] = ()
) -> tuple[str, dict[str, Any]]:
    """(entity, body) of the PUT that writes ``document``; ``applications`` as for
    :func:`document_record` (a customer and a journal apply to nothing)."""
    if isinstance(document, Customer):
        return "Customer", customer_record(document)
    if isinstance(document, ArDocument):
        return "Invoice", document_record(document, applications)
    if isinstance(document, Payment):
        return "Payment", payment_record(document, applications)
    return "JournalTransaction", journal_record(document)


def applications_of(document: Document) -> tuple[Application, ...]:
    """What a credit memo, payment or refund applies to (nothing for the other documents)."""
    if isinstance(document, ArDocument):
        return document.applies_to
    if isinstance(document, Payment):
        return document.applications
    return ()


def find_query(kind: RefKind, natural_key: str, customer_id: str | None = None) -> tuple[str, str, list[str]]:
    """(entity, ``$filter``, ``$select``) that finds the documents carrying ``natural_key``
    (section 7). The customer narrows payments and documents when known."""
    key = odata_string(natural_key)
    if kind in INVOICE_TYPES:
        where = f"CustomerOrder eq {key} and Type eq {odata_string(INVOICE_TYPES[kind])}"
        if customer_id:
            where += f" and Customer eq {odata_string(customer_id)}"
        return "Invoice", where, ["Type", "ReferenceNbr", "Status", "CustomerOrder"]
    if kind in PAYMENT_TYPES:
        where = f"PaymentRef eq {key} and Type eq {odata_string(PAYMENT_TYPES[kind])}"
        if customer_id:
            where += f" and CustomerID eq {odata_string(customer_id)}"
        return "Payment", where, ["Type", "ReferenceNbr", "Status", "PaymentRef"]
    if kind == "journal":
        return (
            "JournalTransaction",
            f"startswith(Description,{key}) and Module eq 'GL'",
            ["Module", "BatchNbr", "Status", "Description"],
        )
    if kind == "customer":
        return "Customer", f"CustomerID eq {key}", ["CustomerID", "Status"]
    raise ValueError(f"unknown document kind {kind!r}")


def key_groups(keys: Iterable[str]) -> list[list[str]]:
    """Natural keys in groups of at most KEYS_PER_READ keys and KEY_CHARS_PER_READ characters,
    each group one read-back request."""
    groups: list[list[str]] = []
    chars = 0
    for key in dict.fromkeys(keys):
        if not groups or len(groups[-1]) >= KEYS_PER_READ or chars + len(key) > KEY_CHARS_PER_READ:
            groups.append([])
            chars = 0
        groups[-1].append(key)
        chars += len(key)
    return groups


def _carries(kind: RefKind, row: Mapping[str, Any], natural_key: str) -> bool:
    """Whether a row found by the (case-insensitive, prefix) filter carries exactly the key."""
    if kind in INVOICE_TYPES:
        return row.get("CustomerOrder") == natural_key
    if kind in PAYMENT_TYPES:
        return row.get("PaymentRef") == natural_key
    if kind == "journal":
        text = str(row.get("Description") or "")
        return text == natural_key or text.startswith(natural_key + " ")
    return row.get("CustomerID") == natural_key


def ref_from_row(kind: RefKind, row: Mapping[str, Any]) -> ErpRef:
    status = row.get("Status")
    status = str(status) if status is not None else None
    if kind == "customer":
        return ErpRef(kind, str(row["CustomerID"]), True, erp_id=row.get("id"), status=status)
    if kind == "journal":
        key = f"{row.get('Module') or 'GL'}/{row['BatchNbr']}"
        return ErpRef(kind, key, status in RELEASED_GL, erp_id=row.get("id"), status=status)
    key = f"{row['Type']}/{row['ReferenceNbr']}"
    return ErpRef(kind, key, status in RELEASED_AR, erp_id=row.get("id"), status=status)


def _amount(value: object) -> Decimal:
    if value is None:
        return ZERO
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        return Decimal(value)
    raise TypeError(f"not an amount: {value!r}")


# -- the adapter ---------------------------------------------------------------------------------


class CurrencyCache:
    """Customer -> currency (None: the customer has none), the ``size`` most recently used only,
    so a process's memory does not grow with the number of customers. Thread-safe."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, str | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, customer_id: str) -> tuple[bool, str | None]:
        with self._lock:
            if customer_id not in self._items:
                return False, None
            self._items.move_to_end(customer_id)
            return True, self._items[customer_id]

    def put(self, customer_id: str, currency: str | None) -> None:
        with self._lock:
            self._items[customer_id] = currency
            self._items.move_to_end(customer_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class AcumaticaErp:
    """The :class:`~shared.erp.base.ErpTarget` for Acumatica over one :class:`AcumaticaClient`."""

    def __init__(self, client: AcumaticaClient, *, shared: Any = None) -> None:
        self.client = client
        self._customer_currency = CurrencyCache(CURRENCY_CACHE_SIZE)
        # Optional Redis client: customer currencies are then shared by the whole fleet, so each
        # is read at most once (not once per worker process); an entry lives an hour.
        self._shared = shared

    @classmethod
    def from_target(
        cls,
        target: AcumaticaTarget,
        *,
        connection: str,
        redis: Any,
        audit: AuditHook | None = None,
        **client_options: Any,
    ) -> AcumaticaErp:
        return cls(
            AcumaticaClient(target, connection=connection, redis=redis, audit=audit, **client_options),
            shared=redis,
        )

    # -- writes ----------------------------------------------------------------------------------

    def upsert_customer(self, customer: Customer) -> ErpRef:
        # PUT by key is an idempotent upsert, so it may be retried like a read.
        row = self.client.put(*entity_record(customer), repeatable=True)
        self._remember_currency(customer.customer_id, str(row.get("CurrencyID") or customer.currency))
        return ErpRef(
            "customer", str(row.get("CustomerID") or customer.customer_id), True, erp_id=row.get("id")
        )

    def create_document(self, doc: ArDocument) -> ErpRef:
        self._check_currency(doc.customer_id, doc.currency, f"{doc.kind} {doc.natural_key}")
        applications = self._resolve(doc.applies_to, doc.customer_id)
        row = self.client.put(*entity_record(doc, applications), repeatable=False)
        return self._created(doc.kind, row)

    def create_payment(self, payment: Payment) -> ErpRef:
        self._check_currency(payment.customer_id, payment.currency, f"{payment.kind} {payment.natural_key}")
        applications = self._resolve(payment.applications, payment.customer_id)
        row = self.client.put(*entity_record(payment, applications), repeatable=False)
        return self._created(payment.kind, row)

    def post_journal(self, journal: Journal) -> ErpRef:
        row = self.client.put(*entity_record(journal), repeatable=False)
        return self._created("journal", row)

    def render(self, document: Document, *, applied: AppliedRef | None = None) -> RenderedRequest:
        """The PUT the write of ``document`` makes: its entity and the body :meth:`AcumaticaClient.put`
        sends (the record :func:`entity_record` builds, wrapped by the same :func:`wrap`; the client
        serialises it with :func:`~shared.erp.acumatica_wire.dumps`). Nothing is read: the
        ReferenceNbr of each applied document comes from ``applied`` (the part of its key after
        ``Type/``), where sending looks the document up by natural key; one it has no key for is
        sent as ``?`` and listed in ``unresolved``. The customer's currency, which sending checks
        first, is not checked."""
        resolved: list[tuple[str, str, Decimal]] = []
        unresolved: list[Application] = []
        for app in applications_of(document):
            key = applied(app) if applied is not None else None
            _, slash, number = (key or "").partition("/")
            if not slash:
                unresolved.append(app)
                number = "?"
            resolved.append((APPLICATION_DOC_TYPES[app.kind], number, app.amount))
        entity, record = entity_record(document, resolved)
        return RenderedRequest(API, "PUT", entity, wrap(record), f"PUT {entity}", tuple(unresolved))

    def release(self, ref: ErpRef) -> ErpRef:
        """Run the release action and wait for it, then re-read the Status (section 4.4). A
        release that fails because the document was already released (e.g. an in-doubt retry)
        counts as done."""
        if ref.released or ref.kind == "customer":
            return ref
        entity, action, keys, key_fields = self._release_target(ref)
        record: dict[str, Any] = {"id": ref.erp_id} if ref.erp_id else key_fields
        try:
            self.client.invoke(entity, action, record)
        except (Rejected, Transient) as exc:
            try:
                current = self._reread(ref, entity, keys)
            except ApiError:
                raise exc from None
            if current.released:
                return current
            raise
        current = self._reread(ref, entity, keys)
        if not current.released:
            raise Rejected(
                f"{action} finished but {ref.key} is {current.status or 'unknown'}, not released",
                api=API,
                method="POST",
                url=f"{entity}/{action}",
            )
        return current

    # -- reads -----------------------------------------------------------------------------------

    def find_document(self, kind: RefKind, natural_key: str, customer_id: str | None = None) -> ErpRef | None:
        entity, where, select = find_query(kind, natural_key, customer_id)
        if kind == "customer" and "/" not in natural_key:
            # A key URL beats a filter for one record (section 4.2); "/" in a key forces a filter.
            try:
                row = self.client.get_record("Customer", natural_key, select=select)
            except NotFound:
                return None
            return ref_from_row(kind, row)
        rows = [
            r
            for r in self.client.get_list(entity, filter=where, select=select)
            if _carries(kind, r, natural_key)
        ]
        if not rows:
            return None
        refs = [ref_from_row(kind, r) for r in rows]
        if len(refs) > 1:
            raise DuplicateDocuments(
                f"{len(refs)} {entity} records carry {natural_key}: a person must keep one",
                natural_key=natural_key,
                refs=refs,
                api=API,
            )
        return refs[0]

    def journal_totals(
        self, *, natural_keys: Sequence[str] | None = None, period: dt.date | str | None = None
    ) -> AccountTotals:
        if (natural_keys is None) == (period is None):
            raise ValueError("give natural_keys or period, not both")
        batches: list[dict[str, Any]] = []
        if natural_keys is not None:
            groups = key_groups(natural_keys)

            def read(keys: Sequence[str]) -> list[dict[str, Any]]:
                where = "(" + " or ".join(f"startswith(Description,{odata_string(k)})" for k in keys) + ")"
                where += " and Module eq 'GL'"
                found: list[dict[str, Any]] = []
                skip = 0
                while True:
                    page = self.client.get_list(
                        "JournalTransaction", filter=where, expand=["Details"], top=PAGE_SIZE, skip=skip
                    )
                    found += [b for b in page if any(_carries("journal", b, k) for k in keys)]
                    if len(page) < PAGE_SIZE:
                        return found
                    skip += PAGE_SIZE

            # A few keys per read (an OData `or`), as many reads at a time as the licence lets
            # requests run (the client's fleet-wide limiter still counts each); each thread runs
            # in a copy of the caller's context so its exchanges keep the caller's audit subject.
            width = max(1, min(self.client.target.max_concurrent, READ_THREADS, len(groups)))
            with ThreadPoolExecutor(max_workers=width, thread_name_prefix="acumatica-read") as pool:
                futures = [pool.submit(contextvars.copy_context().run, read, g) for g in groups]
                for future in futures:
                    batches.extend(future.result())
        else:
            assert period is not None
            wire_period = post_period(period)
            where = (
                f"PostPeriod eq {odata_string(wire_period)} and Module eq 'GL' "
                "and startswith(Description,'JE-')"
            )
            skip = 0
            while True:
                page = self.client.get_list(
                    "JournalTransaction", filter=where, expand=["Details"], top=PAGE_SIZE, skip=skip
                )
                batches.extend(
                    b for b in page if str(b.get("PostPeriod") or "").replace("-", "") == wire_period
                )
                if len(page) < PAGE_SIZE:
                    break
                skip += PAGE_SIZE
        totals: dict[tuple[str, str], Totals] = {}
        for batch in batches:
            if batch.get("Status") == "Voided":
                continue
            currency = str(batch.get("CurrencyID") or "")
            for line in batch.get("Details") or []:
                debit, credit = _amount(line.get("DebitAmount")), _amount(line.get("CreditAmount"))
                add_line_totals(totals, str(line.get("Account")), currency, Totals(debit, credit))
        return totals

    def check_reference_data(
        self, accounts: Iterable[str], currencies: Iterable[str], period: dt.date | str | None = None
    ) -> list[str]:
        problems: list[str] = []
        available = self.client.endpoints()
        if self.client.endpoint not in available:
            usable = [e for e in available if e in ACUMATICA_ENDPOINTS] or list(ACUMATICA_ENDPOINTS)
            problems.append(
                f"endpoint {self.client.endpoint} not found on this instance; set {ENDPOINT_VARIABLE} "
                f"to one of {', '.join(usable)}"
            )
            return problems
        for account in sorted(set(accounts)):
            problems += self._check_active("Account", account, ["AccountCD", "Active"], f"account {account}")
        for currency in sorted(set(currencies)):
            problems += self._check_active(
                "Currency", currency, ["CurrencyID", "Active"], f"currency {currency}"
            )
        if period is not None:
            problems += self._check_period(period_of(period))
        return problems

    def close(self) -> None:
        self.client.close()

    # -- helpers ---------------------------------------------------------------------------------

    def _created(self, kind: RefKind, row: Mapping[str, Any]) -> ErpRef:
        try:
            return ref_from_row(kind, row)
        except KeyError:
            # The create went through but the answer lacks the number: the flow must look it up.
            raise OutcomeUnknown(f"Acumatica's answer to the {kind} create has no key", api=API) from None

    def _check_currency(self, customer_id: str, currency: str, what: str) -> None:
        """The Invoice entity has no CurrencyID: a document takes its customer's currency
        (section 6.2). Refuse a document whose currency differs rather than post it silently in
        the wrong one. Each customer's currency is read once per process, or once per fleet when
        the adapter shares a Redis cache (a customer upserted here is never read at all)."""
        known, erp_currency = self._customer_currency.get(customer_id)
        if not known:
            shared = self._shared_currency(customer_id)
            if shared is not None:
                erp_currency = shared or None
                self._customer_currency.put(customer_id, erp_currency)
            else:
                try:
                    row = self.client.get_record("Customer", customer_id, select=["CustomerID", "CurrencyID"])
                except NotFound:
                    raise NotFound(f"customer {customer_id} of {what} is not in Acumatica", api=API) from None
                found = row.get("CurrencyID")
                erp_currency = str(found) if found else None
                self._remember_currency(customer_id, erp_currency)
        if erp_currency is not None and erp_currency != currency:
            raise Rejected(
                f"{what} is in {currency} but customer {customer_id} is in {erp_currency} in Acumatica",
                api=API,
            )

    def _currency_key(self, customer_id: str) -> str:
        return f"ledgerbridge:{self.client.connection}:acumatica:customer-currency:{customer_id}"

    def _remember_currency(self, customer_id: str, currency: str | None) -> None:
        self._customer_currency.put(customer_id, currency)
        if self._shared is not None:
            # A cache: when Redis cannot keep it, the next process reads the customer itself.
            with contextlib.suppress(RedisError):
                self._shared.set(self._currency_key(customer_id), currency or "", ex=CURRENCY_CACHE_SECONDS)

    def _shared_currency(self, customer_id: str) -> str | None:
        """The fleet's cached currency ("" = none set), or None when not cached."""
        if self._shared is None:
            return None
        try:
            value = self._shared.get(self._currency_key(customer_id))
        except RedisError:
            return None
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def _resolve(self, applications: Iterable[Any], customer_id: str) -> list[tuple[str, str, Decimal]]:
        """(DocType, ReferenceNbr, amount) for each application; the applied document must exist
        and be released (Acumatica applies only to open documents)."""
        resolved = []
        for app in applications:
            ref = self.find_document(app.kind, app.natural_key, customer_id)
            if ref is None:
                raise NotFound(f"{app.kind} {app.natural_key} to apply to is not in Acumatica", api=API)
            if not ref.released:
                raise Transient(f"{app.kind} {app.natural_key} ({ref.key}) is not released yet", api=API)
            resolved.append((APPLICATION_DOC_TYPES[app.kind], ref.key.split("/", 1)[1], app.amount))
        return resolved

    @staticmethod
    def _release_target(ref: ErpRef) -> tuple[str, str, tuple[str, ...], dict[str, Any]]:
        first, _, number = ref.key.partition("/")
        if not number:
            raise ValueError(f"not an Acumatica document key: {ref.key!r}")
        if ref.kind in INVOICE_TYPES:
            return "Invoice", "ReleaseInvoice", (first, number), {"Type": first, "ReferenceNbr": number}
        if ref.kind in PAYMENT_TYPES:
            return "Payment", "ReleasePayment", (first, number), {"Type": first, "ReferenceNbr": number}
        if ref.kind == "journal":
            return (
                "JournalTransaction",
                "ReleaseJournalTransaction",
                (first, number),
                {"Module": first, "BatchNbr": number},
            )
        raise ValueError(f"cannot release a {ref.kind}")

    def _reread(self, ref: ErpRef, entity: str, keys: tuple[str, ...]) -> ErpRef:
        select = (
            ["Module", "BatchNbr", "Status"] if ref.kind == "journal" else ["Type", "ReferenceNbr", "Status"]
        )
        row = self.client.get_record(entity, *keys, select=select)
        return ref_from_row(ref.kind, row)

    def _check_active(self, entity: str, key: str, select: list[str], what: str) -> list[str]:
        try:
            row = self.client.get_record(entity, key, select=select)
        except NotFound:
            return [f"{what} does not exist in Acumatica"]
        except Rejected as exc:
            return [f"{what} could not be checked: {exc.message}"]
        return [f"{what} is inactive in Acumatica"] if row.get("Active") is False else []

    def _check_period(self, period: str) -> list[str]:
        year, month = period.split("-")
        label = f"financial period {month}-{year}"
        try:
            row = self.client.get_record("FinancialPeriod", year, expand=["Details"])
        except NotFound:
            return [f"financial year {year} does not exist in Acumatica's master calendar"]
        except Rejected as exc:
            return [f"{label} could not be checked: {exc.message}"]
        # FinancialPeriodID reads back as MMYYYY (unconfirmed, section 6.6): accept the other
        # spellings too, and fall back to the period number within the year.
        ids = {f"{month}{year}", f"{year}{month}", f"{month}-{year}"}
        details = row.get("Details") or []
        match = next((d for d in details if str(d.get("FinancialPeriodID") or "") in ids), None)
        if match is None:
            match = next((d for d in details if str(d.get("PeriodNbr") or "") == month), None)
        if match is None:
            return [f"{label} does not exist in Acumatica's master calendar"]
        problems = []
        if match.get("Status") != "Open":
            problems.append(f"{label} is {match.get('Status') or 'not open'} in Acumatica (it must be Open)")
        if match.get("ClosedInAR") is True:
            problems.append(f"{label} is closed in AR in Acumatica")
        return problems
