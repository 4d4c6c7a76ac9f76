"""Acumatica as an :class:`~shared.erp.base.ErpTarget` (contract version 4, Default 20-25).

The entities each document becomes and the natural-key lookups are built in
:mod:`shared.erp.acumatica_entities`; this adapter sends them through one
:class:`~shared.erp.acumatica_client.AcumaticaClient`. Documents are created unreleased and
released by a separate call to :meth:`AcumaticaErp.release` (pitfall 8). Acumatica keeps no
uniqueness on the natural-key fields, so a second match is reported as
:class:`~shared.erp.errors.DuplicateDocuments` for a person.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from typing import Any, Literal

from redis.exceptions import RedisError

from shared.connections import AcumaticaTarget
from shared.erp.acumatica_client import ENDPOINT_VARIABLE, AcumaticaClient
from shared.erp.acumatica_entities import (
    APPLICATION_DOC_TYPES,
    DOC_DESCRIPTION_LEN,
    INVOICE_TYPES,
    PAYMENT_TYPES,
    applications_of,
    carries,
    entity_record,
    find_query,
    key_groups,
    ref_from_row,
)
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
from shared.erp.errors import ClosedPeriod, DuplicateDocuments, OutcomeUnknown
from shared.errors import ApiError, NotFound, Rejected, Transient
from shared.exchange import AuditHook
from shared.settings import ACUMATICA_ENDPOINTS

API = "acumatica"

PAGE_SIZE = 100
CURRENCY_CACHE_SIZE = 5_000  # customers whose currency one process remembers
READ_THREADS = 16  # concurrent reads of one totals read-back
CURRENCY_CACHE_SECONDS = 3600


def _amount(value: object) -> Decimal:
    if value is None:
        return ZERO
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        return Decimal(value)
    raise TypeError(f"not an amount: {value!r}")


# Acumatica's answers for a period that takes no postings (guide section 4.3, pitfall 3):
# "The 08-2026 financial period is inactive.", "... is closed.", "... is locked.",
# "... is closed in Accounts Receivable."
_CLOSED = re.compile(r"\b(\d{2})-(\d{4}) financial period is (?:closed|locked|inactive)")


def closed_period_of(exc: Rejected) -> str | None:
    """The period (``YYYY-MM``) an Acumatica refusal says takes no postings, or None."""
    for text in [*(r.message for r in exc.reasons), exc.message]:
        found = _CLOSED.search(text or "")
        if found:
            return f"{found.group(2)}-{found.group(1)}"
    return None


def _noted(description: str, note: str) -> str:
    return f"{description} ({note})"[:DOC_DESCRIPTION_LEN]


def _as_date(value: object) -> dt.date | None:
    """The date of a DateTimeValue as read back (``2025-07-01T00:00:00``), or None."""
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


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

    def __init__(
        self,
        client: AcumaticaClient,
        *,
        shared: Any = None,
        closed_period: Literal["park", "next_open"] = "park",
    ) -> None:
        self.client = client
        self.closed_period = closed_period
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
            closed_period=target.closed_period,
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

        def into(period: str, start: dt.date, why: str) -> tuple[ArDocument, str]:
            note = f"posted in {period}: {why}"
            return replace(doc, post_period=start, description=_noted(doc.description, note)), note

        return self._create(doc, applications, into)

    def create_payment(self, payment: Payment) -> ErpRef:
        self._check_currency(payment.customer_id, payment.currency, f"{payment.kind} {payment.natural_key}")
        applications = self._resolve(payment.applications, payment.customer_id)

        def into(period: str, start: dt.date, why: str) -> tuple[Payment, str]:
            # The Payment entity has no PostPeriod: the period follows the application date.
            note = f"dated {start.isoformat()} in {period}: {why}"
            return replace(payment, date=start, description=_noted(payment.description, note)), note

        return self._create(payment, applications, into)

    def _create(
        self,
        document: ArDocument | Payment,
        applications: Sequence[tuple[str, str, Decimal]],
        into: Callable[[str, dt.date, str], tuple[ArDocument | Payment, str]],
    ) -> ErpRef:
        """PUT a new AR document or payment. One its financial period refuses (closed, locked ...)
        parks, or with the connection's ``next_open`` rule is sent again as ``into`` moves it into
        the next open period (the first PUT was refused: nothing exists twice), with a note."""
        try:
            row = self.client.put(*entity_record(document, applications), repeatable=False)
        except Rejected as exc:
            closed = self._closed(exc, f"{document.kind} {document.natural_key}")
            period, start = self._next_open_period(closed.period, closed)
            moved, note = into(period, start, f"its own period {closed.period} is closed in Acumatica")
            row = self.client.put(*entity_record(moved, applications), repeatable=False)
            return replace(self._created(document.kind, row), note=note)
        return self._created(document.kind, row)

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

    def apply_later(self, ref: ErpRef, application: Application, customer_id: str) -> tuple[ErpRef, bool]:
        """Apply a released payment, refund or credit memo to a document after both were created
        (section 6.4): the Payment entity (which also carries credit memos, by their Type) gets
        the document under ``DocumentsToApply`` and ``ReleasePayment`` releases the application.
        The document's ``ApplicationHistory`` (released applications) and ``DocumentsToApply``
        (unreleased ones) are read first, so an application a lost answer made is released, or
        counted as done, instead of being made twice."""
        doc_type, _, number = ref.key.partition("/")
        if not number:
            raise ValueError(f"not an Acumatica document key: {ref.key!r}")
        target = self.find_document(application.kind, application.natural_key, customer_id)
        if target is None:
            raise NotFound(
                f"{application.kind} {application.natural_key} to apply {ref.key} to is not in Acumatica",
                api=API,
            )
        if not target.released:
            raise Transient(
                f"{application.kind} {application.natural_key} ({target.key}) is not released yet", api=API
            )
        target_type, _, target_number = target.key.partition("/")
        keys = {"Type": doc_type, "ReferenceNbr": number}
        current = self.client.get_record(
            "Payment", doc_type, number, expand=["ApplicationHistory", "DocumentsToApply"]
        )
        applied = sum(
            (
                _amount(line.get("AmountPaid"))
                for line in current.get("ApplicationHistory") or []
                if line.get("DisplayDocType") == target_type and line.get("DisplayRefNbr") == target_number
            ),
            ZERO,
        )
        if applied >= application.amount:
            return target, False
        unreleased = [
            line
            for line in current.get("DocumentsToApply") or []
            if line.get("DocType") == target_type and line.get("ReferenceNbr") == target_number
        ]
        if not unreleased:
            line = {
                "DocType": target_type,
                "ReferenceNbr": target_number,
                "AmountPaid": application.amount - applied,
            }
            self.client.put("Payment", {**keys, "DocumentsToApply": [line]}, repeatable=False)
        self.client.invoke("Payment", "ReleasePayment", keys)
        return target, True

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
            if carries(kind, r, natural_key)
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
                    found += [b for b in page if any(carries("journal", b, k) for k in keys)]
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

    def _closed(self, exc: Rejected, what: str) -> ClosedPeriod:
        """``exc`` as a :class:`ClosedPeriod` when it says the document's period takes no postings,
        returned when the connection posts into the next open period and raised when it parks;
        any other refusal is raised as it is."""
        period = closed_period_of(exc)
        if period is None:
            raise exc
        closed = ClosedPeriod(
            f"{what}: Acumatica's financial period {period} takes no postings ({exc.message}); open "
            "it in Acumatica and replay the record, or set the connection's closed-period rule to "
            "next_open",
            period=period, api=API, status=exc.status, method=exc.method, url=exc.url, reasons=exc.reasons,
        )  # fmt: skip
        if self.closed_period != "next_open":
            raise closed from exc
        return closed

    def _next_open_period(self, after: str, closed: ClosedPeriod) -> tuple[str, dt.date]:
        """The first financial period after ``after`` (``YYYY-MM``) open for receivables, as
        (``YYYY-MM``, its start date), from the master calendar (FinancialPeriod, this year and
        the next). None open raises ``closed``."""
        year = int(after[:4])
        for candidate in (year, year + 1):
            try:
                row = self.client.get_record("FinancialPeriod", str(candidate), expand=["Details"])
            except NotFound:
                continue
            for detail in sorted(row.get("Details") or [], key=lambda d: str(d.get("StartDate") or "")):
                start = _as_date(detail.get("StartDate"))
                if start is None:
                    continue
                period = f"{start.year:04d}-{start.month:02d}"
                if period > after and detail.get("Status") == "Open" and detail.get("ClosedInAR") is not True:
                    return period, start
        raise closed

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
