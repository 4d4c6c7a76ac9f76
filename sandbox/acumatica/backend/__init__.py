"""The sandbox's state and one method per real operation (moto's ``models.py``).

``AcumaticaBackend`` holds the tables (customers, AR documents, GL batches, chart of accounts,
subaccounts, currencies, branches, ledgers, financial years), the sessions and OAuth grants,
the long-running operations, the counters and the fault plan, behind one re-entrant lock. It
knows nothing about HTTP beyond raising ``ApiFailure``s whose status and body are the real
server's (acumatica-api.md); the handlers parse and render, the backend decides.

Document behaviour follows section 6: PUT with ``Hold=false`` gives Balanced (documents start On
Hold when ``hold_on_entry``), a release action gives Open (invoices), Open/Closed (payments, by
unapplied balance) or Posted/Unposted (GL batches), applications reduce invoice balances and
close them at zero. Validation failures are 422 records with field errors (section 3.3).
"""

from __future__ import annotations

import bisect
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.acumatica import errors
from sandbox.acumatica.config import SandboxConfig
from sandbox.acumatica.entities import (
    ACCOUNT_TYPES,
    CREATABLE_INVOICE_TYPES,
    CREATABLE_PAYMENT_TYPES,
    CUSTOMER_STATUSES,
    ENTITIES,
    INVOICE_TYPES,
    PAYMENT_TYPES,
    EntitySpec,
    FieldSpec,
    ObjectSpec,
    in_version,
    label_to_code,
)
from sandbox.acumatica.errors import ActionFailed, ApiFailure, RecordInvalid
from sandbox.acumatica.faults import FaultPlan
from sandbox.acumatica.licence import Licence
from sandbox.acumatica.query import (
    Filter,
    parse_count,
    parse_custom,
    parse_expand,
    parse_filter,
    parse_select,
)
from sandbox.acumatica.records import (
    Parsed,
    Problems,
    RenderContext,
    Row,
    convert,
    custom_type,
    parse_entity,
    plain,
    render_entity,
)

ZERO = Decimal("0")
INVOICE_SIDE = frozenset({"INV", "DRM", "FCH"})
PAYMENT_SIDE = frozenset({"PMT", "PPM", "CRM"})
RELEASED_STATUSES = frozenset({"Open", "Closed", "Posted", "Unposted", "Released", "Voided"})
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

DEFAULT_ACCOUNTS: tuple[tuple[str, str, str, bool], ...] = (
    # AccountCD, Description, Type code, CashAccount
    ("10100", "Petty Cash", "A", True),
    ("10200", "Company Checking Account", "A", True),
    ("10400", "Payment Gateway Clearing", "A", True),
    ("11000", "Accounts Receivable", "A", False),
    ("12000", "Unbilled Receivables", "A", False),
    ("20000", "Accounts Payable", "L", False),
    ("21000", "Accrued Liabilities", "L", False),
    ("23000", "Deferred Revenue", "L", False),
    ("24000", "Sales Tax Payable", "L", False),
    ("25000", "Customer Deposits", "L", False),
    ("40000", "Subscription Revenue", "I", False),
    ("41000", "Services Revenue", "I", False),
    ("42000", "Usage Revenue", "I", False),
    ("49000", "Sales Discounts", "I", False),
    ("60000", "Operating Expenses", "E", False),
    ("68000", "Bad Debt Expense", "E", False),
    ("69000", "Payment Processing Fees", "E", False),
    ("70000", "Foreign Exchange Gain/Loss", "E", False),
)


@dataclass
class Session:
    """An API session: a cookie login or the server session bound to an OAuth grant."""

    token: str  # the .ASPXAUTH cookie value
    session_id: str  # the ASP.NET_SessionId cookie value
    created: float
    last_used: float
    branch: str | None = None
    grant: str | None = None
    expires: float | None = None  # OAuth sessions close when the access token expires (2.2)


@dataclass
class Grant:
    id: str
    scope: str
    session: str | None = None
    refresh_token: str | None = None


@dataclass
class AccessToken:
    grant: str
    expires: float


@dataclass
class Operation:
    """A long-running action (section 4.4): 202 for ``polls_left`` polls, then done."""

    id: str
    entity: str
    action: str
    row_id: str
    started: float
    polls_left: int
    state: str = "running"  # running | done | failed
    error: str | None = None


@dataclass(frozen=True)
class RequestContext:
    """Per-request business date and branch (``PX-CbApiBusinessDate``, ``PX-CbApiBranch``, login branch)."""

    business_date: date
    branch: str | None = None


@dataclass(frozen=True)
class QueryOptions:
    """The raw query options of a request; the backend parses and validates them."""

    filter: str | None = None
    select: str | None = None
    expand: str | None = None
    custom: str | None = None
    top: str | None = None
    skip: str | None = None


@dataclass(frozen=True)
class _Shape:
    filter: Filter | None
    render: RenderContext
    top: int | None
    skip: int | None


@dataclass
class PutResult:
    record: dict[str, Any]
    created: bool


@dataclass
class _Write:
    """One PUT being applied: the entity, the candidate row, what was sent, where problems go."""

    spec: EntitySpec
    row: Row
    parsed: Parsed
    problems: Problems
    ctx: RequestContext
    created: bool


@dataclass
class _Touched:
    """Which fields a request sent, per object (by row id): drives recomputation of line amounts."""

    fields: dict[str, set[str]] = field(default_factory=dict)

    def sent(self, row_id: str) -> set[str]:
        return self.fields.get(row_id, set())


def _money(value: Decimal, places: int = 2) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _period_text(period: str) -> str:
    """``MMYYYY`` as the ``MM-YYYY`` the messages show."""
    return f"{period[:2]}-{period[2:]}"


def normalize_period(value: str) -> str | None:
    """``MMYYYY`` from ``MMYYYY`` or ``MM-YYYY`` (section 6.2); ``None`` if it is neither."""
    text = value.strip().replace("-", "")
    if len(text) != 6 or not text.isdigit():
        return None
    if not 1 <= int(text[:2]) <= 12:
        return None
    return text


class AcumaticaBackend:
    """All state of one sandboxed Acumatica instance; every public method is thread-safe."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        seed: bool = True,
        clock: Callable[[], float] = time.time,
        fault_seed: int = 0,
    ) -> None:
        self.config = config or SandboxConfig()
        self.config.validate()
        self._clock = clock
        self._offset = 0.0
        self._lock = threading.RLock()
        self.licence = Licence()
        self.faults = FaultPlan(fault_seed)
        self._clear()
        if seed:
            self.seed_defaults()

    # ------------------------------------------------------------------ lifecycle and time

    def _clear(self) -> None:
        self.tables: dict[str, dict[str, Row]] = {spec.table: {} for spec in ENTITIES.values()}
        self._index: dict[str, dict[tuple[Any, ...], str]] = {spec.table: {} for spec in ENTITIES.values()}
        # (sort key, row id) in key order per table, kept sorted on insert and delete.
        self._order: dict[str, list[tuple[tuple[str, ...], str]]] = {
            spec.table: [] for spec in ENTITIES.values()
        }
        self.sessions: dict[str, Session] = {}
        self.grants: dict[str, Grant] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.operations: dict[str, Operation] = {}
        self.sequences: Counter[str] = Counter()
        self.branches: dict[str, dict[str, Any]] = {}
        self.customer_classes: dict[str, dict[str, str]] = {}
        self.payment_methods: dict[str, dict[str, Any]] = {}
        self.terms: dict[str, int] = {}
        self.events: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def now(self) -> float:
        """Wall-clock seconds as the sandbox sees them (``advance_clock`` moves it forward)."""
        return self._clock() + self._offset

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox's clock forward: sessions, tokens and timed actions age at once."""
        with self._lock:
            self._offset += seconds

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def reset(self, *, seed: bool = True) -> None:
        """Forget every record, session, operation, fault and counter (the config stays)."""
        with self._lock:
            self._clear()
            self.faults.clear()
            self.licence.reset_counts()
            if seed:
                self.seed_defaults()

    def _base(self) -> str:
        return f"{self.config.site_path}/entity/{self.config.endpoint}"

    def business_date(self, header: str | None) -> date:
        """The request's business date: the header, the configured one, or today in the server zone."""
        for text in (header, self.config.business_date):
            if text:
                parsed = _parse_business_date(text)
                if parsed is not None:
                    return parsed
        return datetime.fromtimestamp(self.now(), self.config.tz).date()

    # ------------------------------------------------------------------ seeding

    def seed_defaults(self) -> None:
        """A small, realistic tenant: chart of accounts, USD/EUR/GBP, branch HQ, ledger ACTUAL,
        customer class DEFAULT, payment methods, terms, and four open financial years."""
        with self._lock:
            for code, description, kind, cash in DEFAULT_ACCOUNTS:
                self.add_account(code, description, kind, cash_account=cash)
            self.add_subaccount("000000", "Default subaccount")
            self.add_currency("USD", "US Dollar", "$")
            self.add_currency("EUR", "Euro", "€")
            self.add_currency("GBP", "Pound Sterling", "£")
            self.add_currency("CAD", "Canadian Dollar", "$", active=False)
            self.add_branch("HQ", "Headquarters")
            self.add_ledger("ACTUAL", "Actual ledger", "Actual", "USD")
            self.customer_classes["DEFAULT"] = {
                "currency": "USD",
                "terms": "30D",
                "ar_account": "11000",
                "sales_account": "40000",
            }
            self.terms.update({"30D": 30, "15D": 15, "60D": 60, "COD": 0})
            self.add_payment_method("CHECK", "10200")
            self.add_payment_method("WIRE", "10200")
            self.add_payment_method("CARD", "10400")
            self.add_payment_method("CASH", "10100")
            # The methods mapping.example.toml maps Zuora's payment method types to.
            for method in ("CC", "ACH", "EFT", "PAYPAL", "OTHER"):
                self.add_payment_method(method, "10200")
            year = datetime.fromtimestamp(self.now(), self.config.tz).year
            for each in range(year - 2, year + 2):
                self.add_financial_year(each, status="Open")

    def _store_plain(self, spec: EntitySpec, values: dict[str, Any]) -> Row:
        row = Row(values=dict(values))
        stamp = self._now_dt()
        created, modified = spec.obj.field("CreatedDateTime"), spec.obj.field("LastModifiedDateTime")
        if created is not None:
            row.values.setdefault(created.key, stamp)
        if modified is not None:
            row.values[modified.key] = stamp
        existing = self._by_key(spec, self._key_of(spec, row))
        if existing is not None:
            existing.values.update(row.values)
            return existing
        self._save(spec, row)
        return row

    def add_account(
        self,
        code: str,
        description: str,
        kind: str = "A",
        *,
        cash_account: bool = False,
        active: bool = True,
        currency: str | None = None,
    ) -> None:
        kind = label_to_code(ACCOUNT_TYPES, kind) or "A"
        with self._lock:
            self.sequences["AccountID"] += 1
            self._store_plain(
                ENTITIES["Account"],
                {
                    "AccountCD": code,
                    "AccountID": 1000 + self.sequences["AccountID"],
                    "Active": active,
                    "CashAccount": cash_account,
                    "CurrencyID": currency,
                    "Description": description,
                    "Type": kind,
                    "PostOption": "Summary",
                    "Secured": False,
                    "UseDefaultSubaccount": False,
                    "ChartOfAccountsOrder": int(code[0]) if code[:1].isdigit() else 0,
                },
            )

    def add_subaccount(self, code: str, description: str, *, active: bool = True) -> None:
        with self._lock:
            self.sequences["SubaccountID"] += 1
            self._store_plain(
                ENTITIES["Subaccount"],
                {
                    "SubaccountCD": code,
                    "SubaccountID": 100 + self.sequences["SubaccountID"],
                    "Active": active,
                    "Description": description,
                    "Secured": False,
                },
            )

    def add_currency(
        self, code: str, description: str, symbol: str = "", *, precision: int = 2, active: bool = True
    ) -> None:
        with self._lock:
            self._store_plain(
                ENTITIES["Currency"],
                {
                    "CurrencyID": code,
                    "Description": description,
                    "CurrencySymbol": symbol,
                    "DecimalPrecision": precision,
                    "Active": active,
                    "UseForAccounting": active,
                },
            )

    def add_branch(self, branch_id: str, name: str = "", *, active: bool = True) -> None:
        with self._lock:
            self.branches[branch_id] = {"name": name or branch_id, "active": active}

    def add_ledger(
        self, ledger_id: str, description: str, kind: str = "Actual", currency: str = "USD"
    ) -> None:
        with self._lock:
            self._store_plain(
                ENTITIES["Ledger"],
                {"LedgerID": ledger_id, "Description": description, "Type": kind, "Currency": currency},
            )

    def add_payment_method(self, method: str, cash_account: str, *, active: bool = True) -> None:
        with self._lock:
            self.payment_methods[method] = {"cash_account": cash_account, "active": active}

    def add_financial_year(self, year: int, *, status: str = "Open") -> None:
        """A calendar year of twelve monthly periods, each with ``status``."""
        with self._lock:
            header, periods = _financial_year(year, status)
            row = self._store_plain(ENTITIES["FinancialPeriod"], header)
            row.collections["periods"] = periods

    def add_customer(self, customer_id: str, name: str | None = None, **values: Any) -> None:
        """A customer as if created on AR303000 (defaults from class DEFAULT)."""
        with self._lock:
            klass = self.customer_classes.get(values.get("CustomerClass", "DEFAULT"), {})
            self.sequences["BAccountID"] += 1
            row_values = {
                "CustomerID": customer_id,
                "CustomerName": name or customer_id,
                "CustomerClass": "DEFAULT",
                "CurrencyID": klass.get("currency", "USD"),
                "Terms": klass.get("terms", "30D"),
                "Status": "A",
                "CreditLimit": ZERO,
                "BAccountID": 5000 + self.sequences["BAccountID"],
            }
            for name_, value in values.items():
                spec_field = ENTITIES["Customer"].obj.field(name_)
                if spec_field is None:
                    raise ValueError(f"Customer has no field {name_!r}")
                stored = value
                if spec_field.labels is not None and isinstance(value, str):
                    stored = label_to_code(spec_field.labels, value) or value
                row_values[spec_field.key] = convert(spec_field.kind, stored, self.config.tz)
            row = self._store_plain(ENTITIES["Customer"], row_values)
            row.values["NoteID"] = row.id

    def seed(self, payload: dict[str, Any]) -> dict[str, int]:
        """Add reference data and customers from a control-plane payload (see ``control``)."""
        added: Counter[str] = Counter()
        with self._lock:
            for item in payload.get("accounts", []):
                self.add_account(
                    str(item["AccountCD"]),
                    str(item.get("Description", item["AccountCD"])),
                    str(item.get("Type", "Asset")),
                    cash_account=bool(item.get("CashAccount", False)),
                    active=bool(item.get("Active", True)),
                    currency=item.get("CurrencyID"),
                )
                added["accounts"] += 1
            for item in payload.get("subaccounts", []):
                self.add_subaccount(
                    str(item["SubaccountCD"]),
                    str(item.get("Description", "")),
                    active=bool(item.get("Active", True)),
                )
                added["subaccounts"] += 1
            for item in payload.get("currencies", []):
                self.add_currency(
                    str(item["CurrencyID"]),
                    str(item.get("Description", item["CurrencyID"])),
                    str(item.get("CurrencySymbol", "")),
                    precision=int(item.get("DecimalPrecision", 2)),
                    active=bool(item.get("Active", True)),
                )
                added["currencies"] += 1
            for item in payload.get("branches", []):
                if isinstance(item, str):
                    self.add_branch(item)
                else:
                    self.add_branch(
                        str(item["BranchID"]),
                        str(item.get("Name", "")),
                        active=bool(item.get("Active", True)),
                    )
                added["branches"] += 1
            for item in payload.get("ledgers", []):
                self.add_ledger(
                    str(item["LedgerID"]),
                    str(item.get("Description", "")),
                    str(item.get("Type", "Actual")),
                    str(item.get("Currency", "USD")),
                )
                added["ledgers"] += 1
            for item in payload.get("payment_methods", []):
                self.add_payment_method(str(item["PaymentMethodID"]), str(item["CashAccount"]))
                added["payment_methods"] += 1
            for item in payload.get("years", []):
                if isinstance(item, dict):
                    self.add_financial_year(int(item["year"]), status=str(item.get("status", "Open")))
                else:
                    self.add_financial_year(int(item))
                added["years"] += 1
            for item in payload.get("customers", []):
                values = {
                    key: value for key, value in item.items() if key not in ("CustomerID", "CustomerName")
                }
                self.add_customer(str(item["CustomerID"]), item.get("CustomerName"), **values)
                added["customers"] += 1
        return dict(added)

    def set_period_status(
        self, period: str, status: str, *, closed_in_ar: bool | None = None
    ) -> dict[str, Any]:
        """Open, close, deactivate or lock one period (GL503000/GL509000 are processing screens)."""
        if status not in ("Open", "Closed", "Inactive", "Locked"):
            raise ValueError("status must be Open, Closed, Inactive or Locked")
        normalized = normalize_period(period)
        if normalized is None:
            raise ValueError(f"{period!r} is not a period (MMYYYY or MM-YYYY)")
        with self._lock:
            line = self._period_line(normalized)
            if line is None:
                raise ValueError(f"period {_period_text(normalized)} is not in the financial calendar")
            line.values["Status"] = status
            closed = status in ("Closed", "Locked") if closed_in_ar is None else closed_in_ar
            for flag in ("ClosedInAR", "ClosedInAP", "ClosedInCA", "ClosedInFA", "ClosedInIN"):
                line.values[flag] = closed
            return plain(ENTITIES["FinancialPeriod"].obj.collections[0].item, line, self.config.tz)

    # ------------------------------------------------------------------ storage helpers

    def _key_of(self, spec: EntitySpec, row: Row) -> tuple[Any, ...]:
        return tuple(row.values.get(self._field(spec, name).key) for name in spec.keys)

    @staticmethod
    def _field(spec: EntitySpec, name: str) -> FieldSpec:
        found = spec.obj.field(name)
        assert found is not None, f"{spec.name} has no field {name}"
        return found

    def _in_view(self, spec: EntitySpec, row: Row) -> bool:
        return spec.doc_types is None or row.values.get("doc_type") in spec.doc_types

    def _by_key(self, spec: EntitySpec, key: tuple[Any, ...]) -> Row | None:
        row_id = self._index[spec.table].get(key)
        if row_id is None:
            return None
        row = self.tables[spec.table].get(row_id)
        return row if row is not None and self._in_view(spec, row) else None

    def _save(self, spec: EntitySpec, row: Row) -> None:
        table = self.tables[spec.table]
        index = self._index[spec.table]
        order = self._order[spec.table]
        old = table.get(row.id)
        key = self._key_of(spec, row)
        if old is not None:
            old_key = self._key_of(spec, old)
            if old_key != key:
                index.pop(old_key, None)
                order.remove((_sortable(old_key), row.id))
                bisect.insort(order, (_sortable(key), row.id))
        else:
            bisect.insort(order, (_sortable(key), row.id))
        table[row.id] = row
        index[key] = row.id

    def _remove(self, spec: EntitySpec, row: Row) -> None:
        key = self._key_of(spec, row)
        self.tables[spec.table].pop(row.id, None)
        self._index[spec.table].pop(key, None)
        self._order[spec.table].remove((_sortable(key), row.id))

    def _rows(self, spec: EntitySpec) -> list[Row]:
        """The rows ``spec`` views, in key order (as the server lists them)."""
        table = self.tables[spec.table]
        rows = (table[row_id] for _, row_id in self._order[spec.table])
        return [row for row in rows if self._in_view(spec, row)]

    def _lookup(self, entity: str, key: str) -> Row | None:
        return self._by_key(ENTITIES[entity], (key,))

    def _period_line(self, period: str) -> Row | None:
        year = self._by_key(ENTITIES["FinancialPeriod"], (period[2:],))
        if year is None:
            return None
        for line in year.collections.get("periods", []):
            if line.values.get("FinancialPeriodID") == period:
                return line
        return None

    def _next_number(self, spec: EntitySpec, doc_type: str | None) -> str:
        if spec.table == "batches":
            sequence, prefix = "GLBATCH", ""
        elif doc_type in CREATABLE_PAYMENT_TYPES:
            sequence, prefix = "ARPAYMENT", ""
        else:
            sequence, prefix = "ARINVOICE", "AR"
        while True:
            self.sequences[sequence] += 1
            number = f"{prefix}{self.sequences[sequence]:06d}"
            key = (doc_type, number) if spec.table == "ar_documents" else ("GL", number)
            if key not in self._index[spec.table]:
                return number

    def _shape(self, spec: EntitySpec, options: QueryOptions, *, listing: bool) -> _Shape:
        render = RenderContext(
            base=self._base(),
            tz=self.config.tz,
            select=parse_select(options.select, spec),
            expand=parse_expand(options.expand, spec),
            custom=parse_custom(options.custom),
            version=self.config.endpoint_version,
        )
        flt = parse_filter(options.filter, spec, self.config.tz) if options.filter else None
        top = parse_count(options.top, "$top") if listing else None
        skip = parse_count(options.skip, "$skip") if listing else None
        return _Shape(flt, render, top, skip)

    # ------------------------------------------------------------------ sessions and OAuth

    def _purge_sessions(self) -> None:
        now = self.now()
        idle = self.config.session_idle_seconds
        for token, session in list(self.sessions.items()):
            if session.grant is not None:
                expired = session.expires is not None and session.expires <= now
            else:
                expired = now - session.last_used > idle
            if expired:
                del self.sessions[token]
                self.events["sessions_expired"] += 1

    def _open_session(
        self, branch: str | None, grant: str | None = None, expires: float | None = None
    ) -> Session:
        self._purge_sessions()
        if len(self.sessions) >= self.config.max_sessions:
            self.events["login_limit"] += 1
            raise errors.login_limit()
        now = self.now()
        session = Session(
            token=secrets.token_hex(32).upper(),
            session_id=secrets.token_hex(12),
            created=now,
            last_used=now,
            branch=branch,
            grant=grant,
            expires=expires,
        )
        self.sessions[session.token] = session
        return session

    def login(self, body: dict[str, Any]) -> Session:
        """``POST /entity/auth/login`` (section 2.1): a new session, or the real server's refusals."""
        with self._lock:
            name, password = body.get("name"), body.get("password")
            if name != self.config.username or password != self.config.password:
                self.events["login_failures"] += 1
                raise errors.http_error(500, "Invalid credentials. Please try again.")
            tenant = body.get("tenant") or body.get("company")
            if tenant and tenant != self.config.tenant:
                self.events["login_failures"] += 1
                raise errors.undefined_company()
            branch = body.get("branch") or None
            if branch is not None and branch not in self.branches:
                self.events["login_failures"] += 1
                raise errors.http_error(500, f"Branch '{branch}' cannot be found in the system.")
            session = self._open_session(branch)
            self.events["logins"] += 1
            return session

    def logout(self, cookie: str | None, bearer: str | None) -> None:
        """``POST /entity/auth/logout``: frees the session at once (204 whether or not there was one)."""
        with self._lock:
            if cookie and cookie in self.sessions:
                del self.sessions[cookie]
                self.events["logouts"] += 1
            if bearer and bearer in self.access_tokens:
                grant = self.grants.get(self.access_tokens[bearer].grant)
                if grant is not None and grant.session in self.sessions:
                    del self.sessions[grant.session]
                    self.events["logouts"] += 1

    def authenticate(self, cookie: str | None, bearer: str | None) -> Session:
        """The session behind a data request; 401 when missing or expired (section 2.1)."""
        with self._lock:
            now = self.now()
            if bearer:
                token = self.access_tokens.get(bearer)
                if token is None or token.expires <= now:
                    self.events["unauthorized"] += 1
                    raise errors.not_signed_in()
                grant = self.grants[token.grant]
                session = self.sessions.get(grant.session or "")
                if session is None:
                    session = self._open_session(None, grant.id, token.expires)
                    grant.session = session.token
                session.last_used = now
                return session
            session = self.sessions.get(cookie or "")
            if session is None:
                self.events["unauthorized"] += 1
                raise errors.not_signed_in()
            if session.grant is None and now - session.last_used > self.config.session_idle_seconds:
                del self.sessions[session.token]
                self.events["sessions_expired"] += 1
                self.events["unauthorized"] += 1
                raise errors.not_signed_in()
            session.last_used = now
            return session

    def expire_sessions(self) -> int:
        """End every session and access token now (a lifecycle knob); returns how many sessions."""
        with self._lock:
            count = len(self.sessions)
            self.sessions.clear()
            for token in self.access_tokens.values():
                token.expires = min(token.expires, self.now())
            self.events["sessions_expired"] += count
            return count

    def issue_token(self, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
        """``POST /identity/connect/token``: password and refresh_token grants (section 2.2)."""
        client_id, client_secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if client_id != self.config.client_id or client_secret != self.config.client_secret:
            return 400, {"error": "invalid_client"}
        grant_type = form.get("grant_type")
        with self._lock:
            if grant_type == "password":
                if (
                    form.get("username") != self.config.username
                    or form.get("password") != self.config.password
                ):
                    self.events["login_failures"] += 1
                    return 400, {
                        "error": "invalid_grant",
                        "error_description": "invalid_username_or_password",
                    }
                scope = form.get("scope", "api")
                if "api" not in scope.split():
                    return 400, {"error": "invalid_scope"}
                grant = Grant(id=str(uuid.uuid4()), scope=scope)
            elif grant_type == "refresh_token":
                grant_id = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
                if grant_id is None or grant_id not in self.grants:
                    return 400, {"error": "invalid_grant"}
                grant = self.grants[grant_id]
            else:
                return 400, {"error": "unsupported_grant_type"}
            expires = self.now() + self.config.token_lifetime_seconds
            session = self.sessions.get(grant.session or "")
            if session is None:
                try:
                    session = self._open_session(None, grant.id, expires)
                except ApiFailure:
                    return 429, {"error": "invalid_request", "error_description": "API Login Limit"}
                grant.session = session.token
            session.expires = expires
            self.grants[grant.id] = grant
            access = secrets.token_urlsafe(32)
            self.access_tokens[access] = AccessToken(grant.id, expires)
            body: dict[str, Any] = {
                "access_token": access,
                "expires_in": self.config.token_lifetime_seconds,
                "token_type": "Bearer",
                "scope": grant.scope,
            }
            if "offline_access" in grant.scope.split():
                # Each refresh returns a new refresh token; the old one stops working (section 2.2).
                refresh = secrets.token_urlsafe(32)
                self.refresh_tokens[refresh] = grant.id
                grant.refresh_token = refresh
                body["refresh_token"] = refresh
            self.events["tokens_issued"] += 1
            return 200, body

    def count_call(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    # ------------------------------------------------------------------ reads

    def get_record(self, entity: str, keys: list[str], options: QueryOptions) -> dict[str, Any]:
        """``GET {Entity}/{k1}/{k2}`` or ``GET {Entity}/{id}``; a missing record is the 500 (4.2)."""
        spec = ENTITIES[entity]
        shape = self._shape(spec, options, listing=False)
        with self._lock:
            self._advance_operations()
            row = self._find(spec, keys)
            if row is None:
                raise errors.no_entity()
            return render_entity(spec, row, shape.render)

    def list_records(self, entity: str, options: QueryOptions) -> list[dict[str, Any]]:
        """``GET {Entity}`` with ``$filter``, ``$select``, ``$expand``, ``$skip`` then ``$top``."""
        spec = ENTITIES[entity]
        shape = self._shape(spec, options, listing=True)
        with self._lock:
            self._advance_operations()
            rows = self._rows(spec)
            if shape.filter is not None:
                rows = [row for row in rows if shape.filter.matches(row)]
            if shape.skip:
                rows = rows[shape.skip :]
            if shape.top is not None:
                rows = rows[: shape.top]
            return [
                render_entity(spec, row, shape.render, row_number=n) for n, row in enumerate(rows, start=1)
            ]

    def _find(self, spec: EntitySpec, keys: list[str]) -> Row | None:
        if len(keys) == 1:
            try:
                row_id = str(uuid.UUID(keys[0]))
            except ValueError:
                row_id = ""
            row = self.tables[spec.table].get(row_id)
            if row is not None and self._in_view(spec, row):
                return row
        if len(keys) != len(spec.keys):
            return None
        key = []
        for name, value in zip(spec.keys, keys, strict=True):
            spec_field = self._field(spec, name)
            if spec_field.labels is not None:
                code = label_to_code(spec_field.labels, value)
                if code is None:
                    return None
                key.append(code)
            else:
                key.append(value)
        return self._by_key(spec, tuple(key))

    def ad_hoc_schema(self, entity: str) -> dict[str, Any]:
        """``GET {Entity}/$adHocSchema``: an empty record (every contract field ``{}``) whose
        ``custom`` names each field outside the contract, by view, with its type (the
        definition's "field name, view name, and type of the fields that are not defined in the
        contract"); here, the custom fields stored on the entity's records."""
        spec = ENTITIES[entity]
        out: dict[str, Any] = {"id": str(uuid.UUID(int=0)), "rowNumber": 1, "note": {}}
        for spec_field in spec.obj.fields:
            if in_version(spec_field, self.config.endpoint_version):
                out[spec_field.name] = {}
        custom: dict[str, dict[str, Any]] = {}
        with self._lock:
            for row in self._rows(spec):
                for view, fields in row.custom.items():
                    for name, value in fields.items():
                        custom.setdefault(view, {}).setdefault(name, {"type": custom_type(value)})
        out["custom"] = custom
        return out

    # ------------------------------------------------------------------ writes

    def put(
        self,
        entity: str,
        body: Any,
        options: QueryOptions,
        context: RequestContext,
        *,
        if_none_match: bool = False,
        if_match: bool = False,
    ) -> PutResult:
        """``PUT {Entity}``: match by id, then keys, then ``$filter``; update it or insert (4.1)."""
        spec = ENTITIES[entity]
        parsed = parse_entity(spec, body, self.config.tz)
        shape = self._shape(spec, options, listing=False)
        with self._lock:
            self._advance_operations()
            target = self._match(spec, parsed, shape.filter)
            if if_none_match and target is not None:
                raise errors.precondition_failed(True)
            if if_match and target is None:
                raise errors.precondition_failed(False)
            created = target is None
            candidate = Row() if target is None else target.clone()
            problems = Problems()
            WRITERS[spec.name](self, _Write(spec, candidate, parsed, problems, context, created))
            if problems:
                overrides: dict[str, Any] = {}
                if created and spec.auto_key and not self.config.manual_numbering:
                    overrides[spec.auto_key] = "<NEW>"
                raise RecordInvalid(
                    render_entity(
                        spec,
                        candidate,
                        shape.render,
                        problems=self._top(spec, problems, created),
                        overrides=overrides,
                    )
                )
            stamp = self._now_dt()
            if created:
                if spec.auto_key:
                    number_field = self._field(spec, spec.auto_key)
                    sent = candidate.values.get(number_field.key)
                    if not (self.config.manual_numbering and sent):
                        candidate.values[number_field.key] = self._next_number(
                            spec, candidate.values.get("doc_type")
                        )
                if spec.obj.field("CreatedDateTime") is not None:
                    candidate.values[self._field(spec, "CreatedDateTime").key] = stamp
                if spec.obj.field("NoteID") is not None:
                    candidate.values[self._field(spec, "NoteID").key] = candidate.id
            if spec.obj.field("LastModifiedDateTime") is not None:
                candidate.values[self._field(spec, "LastModifiedDateTime").key] = stamp
            self._save(spec, candidate)
            return PutResult(render_entity(spec, candidate, shape.render), created)

    def _top(self, spec: EntitySpec, problems: Problems, created: bool) -> Problems:
        """The 422's top-level message: the generic line when fields carry errors (section 3.3)."""
        messages = list(problems.top)
        if problems.fields:
            verb = "Inserting" if created else "Updating"
            # The double space is the real server's (section 3.3).
            messages.insert(
                0, f"{verb}  '{spec.cache_name}' record raised at least one error. Please review the errors."
            )
        return Problems(top=messages, fields=dict(problems.fields))

    def _match(self, spec: EntitySpec, parsed: Parsed, flt: Filter | None) -> Row | None:
        if parsed.id is not None:
            row = self.tables[spec.table].get(parsed.id)
            if row is not None and self._in_view(spec, row):
                return row
        key: list[Any] = []
        for name in spec.keys:
            spec_field = self._field(spec, name)
            value = parsed.values.get(name)
            if value is None and name in spec.key_defaults and spec.auto_key in parsed.values:
                value = spec.key_defaults[name]
            elif value is not None and spec_field.labels is not None:
                value = label_to_code(spec_field.labels, value)
            if value is None:
                break
            key.append(value)
        else:
            row = self._by_key(spec, tuple(key))
            if row is not None:
                return row
        if flt is not None:
            for row in self._rows(spec):
                if flt.matches(row):
                    return row
        return None

    def delete(self, entity: str, keys: list[str]) -> None:
        """``DELETE {Entity}/{keys}``: 204; released documents and used customers refuse (4.3)."""
        spec = ENTITIES[entity]
        with self._lock:
            row = self._find(spec, keys)
            if row is None:
                raise errors.no_entity()
            if row.values.get("released"):
                raise errors.http_error(500, "The document has been released and cannot be deleted.")
            if spec.name == "Customer":
                customer_id = row.values.get("CustomerID")
                if any(
                    doc.values.get("customer") == customer_id for doc in self.tables["ar_documents"].values()
                ):
                    raise errors.http_error(500, "The customer cannot be deleted because it has documents.")
            self._remove(spec, row)

    # ------------------------------------------------------------------ generic apply

    def _apply(
        self,
        obj: ObjectSpec,
        row: Row,
        parsed: Parsed,
        problems: Problems,
        touched: _Touched,
        *,
        prefix: tuple[str, ...] = (),
        frozen: frozenset[str] = frozenset(),
    ) -> None:
        """Copy the sent fields onto ``row``: labels to codes, lengths checked, read-only ignored."""
        if parsed.note is not None:
            row.note = parsed.note
        for view, values in parsed.custom.items():
            row.custom.setdefault(view, {}).update(values)
        sent = touched.fields.setdefault(row.id, set())
        for name, sent_value in parsed.values.items():
            spec_field = obj.field(name)
            if spec_field is None or spec_field.readonly or name in frozen:
                continue
            path = (*prefix, name)
            value = sent_value
            if value is not None and spec_field.labels is not None:
                code = label_to_code(spec_field.labels, str(value))
                if code is None:
                    problems.add(
                        path, f"The value '{value}' is not in the list of allowed values for {name}."
                    )
                    row.values[spec_field.key] = value
                    continue
                value = code
            if (
                isinstance(value, str)
                and spec_field.max_length is not None
                and len(value) > spec_field.max_length
            ):
                problems.add(path, f"The length of the value exceeds {spec_field.max_length} characters.")
            row.values[spec_field.key] = value
            sent.add(name)
        for name, link_parsed in parsed.links.items():
            link = obj.link(name)
            if link is None:
                continue
            self._apply(
                link.item, row.link(link.attr), link_parsed, problems, touched, prefix=(*prefix, name)
            )
        for name, lines in parsed.collections.items():
            collection = obj.collection(name)
            if collection is None or collection.readonly:
                continue
            stored = row.lines(collection.attr)
            for line in lines:
                existing = None
                if line.id is not None:
                    existing = next(
                        (
                            candidate
                            for candidate in stored
                            if candidate.id == line.id
                            and (collection.shows is None or collection.shows(candidate))
                        ),
                        None,
                    )
                if line.delete:
                    if existing is not None:
                        stored.remove(existing)
                    continue
                if existing is None:
                    existing = Row()
                    stored.append(existing)
                self._apply(collection.item, existing, line, problems, touched, prefix=(name, existing.id))

    # ------------------------------------------------------------------ validation helpers

    def _required(self, problems: Problems, path: tuple[str, ...], value: Any, display: str) -> bool:
        if value is None or value == "":
            problems.add(path, f"'{display}' cannot be empty.")
            return False
        return True

    def _exists(self, problems: Problems, path: tuple[str, ...], ok: bool, display: str, value: Any) -> bool:
        if not ok:
            problems.add(path, f"{display} '{value}' cannot be found in the system.")
        return ok

    def _account_ok(self, code: Any, *, cash: bool = False) -> bool:
        row = self._lookup("Account", str(code))
        if row is None or not row.values.get("Active"):
            return False
        return not cash or bool(row.values.get("CashAccount"))

    def _subaccount_ok(self, code: Any) -> bool:
        row = self._lookup("Subaccount", str(code))
        return row is not None and bool(row.values.get("Active"))

    def _currency_ok(self, code: Any) -> bool:
        row = self._lookup("Currency", str(code))
        return row is not None and bool(row.values.get("Active"))

    def _branch_ok(self, code: Any) -> bool:
        branch = self.branches.get(str(code))
        return branch is not None and bool(branch["active"])

    def _precision(self, currency: Any) -> int:
        row = self._lookup("Currency", str(currency)) if currency else None
        return int(row.values.get("DecimalPrecision") or 2) if row is not None else 2

    def _period_problem(self, period: str, *, module: str, from_date: date | None) -> str | None:
        """Why ``period`` cannot take a posting, or ``None`` (pitfall 3)."""
        line = self._period_line(period)
        if line is None:
            if from_date is not None:
                return (
                    f"The financial period that corresponds to the {from_date.month}/{from_date.day}/"
                    f"{from_date.year} date does not exist in the master financial calendar."
                )
            text = _period_text(period)
            return f"The {text} financial period does not exist in the master financial calendar."
        status = line.values.get("Status")
        if status == "Inactive":
            return f"The {_period_text(period)} financial period is inactive."
        if status in ("Closed", "Locked"):
            return f"The {_period_text(period)} financial period is {str(status).lower()}."
        if module == "AR" and line.values.get("ClosedInAR"):
            return f"The {_period_text(period)} financial period is closed in Accounts Receivable."
        return None

    def _post_period(
        self,
        row: Row,
        problems: Problems,
        *,
        module: str,
        sent: set[str],
        period_field: str | None,
        date_field: str,
    ) -> str | None:
        """Set ``fin_period`` (sent as MMYYYY/MM-YYYY, else derived from the date) and check it is open.

        An explicit period is kept on later updates unless a new period or a new date is sent.
        """
        doc_date: date | None = row.values.get("doc_date")
        raw = row.values.get("fin_period")
        from_date: date | None = None
        if period_field is not None and period_field in sent and raw:
            period = normalize_period(str(raw))
            if period is None:
                problems.add(
                    (period_field,), f"'{raw}' is not a valid financial period. Use the MMYYYY format."
                )
                return None
        elif raw and period_field is not None and date_field not in sent:
            period = str(raw)
        elif doc_date is not None:
            period = f"{doc_date.month:02d}{doc_date.year}"
            from_date = doc_date
        else:
            return None
        row.values["fin_period"] = period
        message = self._period_problem(period, module=module, from_date=from_date)
        if message is not None:
            problems.add(
                (date_field,) if from_date is not None or period_field is None else (period_field,), message
            )
        return period

    def _next_line_nbr(self, lines: Iterable[Row]) -> int:
        return max((int(line.values.get("LineNbr") or 0) for line in lines), default=0) + 1

    # ------------------------------------------------------------------ entity writers

    def _write_customer(self, w: _Write) -> None:
        spec, row, parsed, problems, created = w.spec, w.row, w.parsed, w.problems, w.created
        touched = _Touched()
        self._apply(
            spec.obj,
            row,
            parsed,
            problems,
            touched,
            frozen=frozenset() if created else frozenset({"CustomerID"}),
        )
        values = row.values
        if not self._required(problems, ("CustomerID",), values.get("CustomerID"), "Customer ID"):
            return
        if created:
            klass = self.customer_classes.get(str(values.get("CustomerClass") or "DEFAULT"), {})
            values.setdefault("CustomerClass", "DEFAULT")
            if values.get("CustomerClass") is None:
                values["CustomerClass"] = "DEFAULT"
            for name, default in (
                ("Status", "A"),
                ("CurrencyID", klass.get("currency", "USD")),
                ("Terms", klass.get("terms", "30D")),
                ("CreditLimit", ZERO),
            ):
                if values.get(name) is None:
                    values[name] = default
            self.sequences["BAccountID"] += 1
            values["BAccountID"] = 5000 + self.sequences["BAccountID"]
        self._required(problems, ("CustomerName",), values.get("CustomerName"), "Customer Name")
        klass_id = values.get("CustomerClass")
        self._exists(
            problems, ("CustomerClass",), klass_id in self.customer_classes, "Customer Class", klass_id
        )
        currency = values.get("CurrencyID")
        if currency is not None:
            self._exists(problems, ("CurrencyID",), self._currency_ok(currency), "Currency", currency)
        terms = values.get("Terms")
        if terms is not None:
            self._exists(problems, ("Terms",), terms in self.terms, "Terms", terms)

    def _write_invoice(self, w: _Write) -> None:
        spec, row, parsed, problems, ctx, created = w.spec, w.row, w.parsed, w.problems, w.ctx, w.created
        values = row.values
        if values.get("released"):
            # A released document's fields are disabled: a PUT changes nothing but note and
            # custom fields, and still answers 200 (section 4.1).
            self._apply(spec.obj, row, Parsed(note=parsed.note, custom=parsed.custom), problems, _Touched())
            return
        touched = _Touched()
        frozen = frozenset() if created else frozenset({"Type", "ReferenceNbr"})
        if created and values.get("doc_type") is None:
            values["doc_type"] = "INV"
        self._apply(spec.obj, row, parsed, problems, touched, frozen=frozen)
        sent = touched.sent(row.id)
        doc_type = values.get("doc_type")
        if created and ("Type",) not in problems.fields and doc_type not in CREATABLE_INVOICE_TYPES:
            problems.add(
                ("Type",),
                f"Documents of the {INVOICE_TYPES.get(str(doc_type), doc_type)} type cannot be created here.",
            )
        customer = self._customer(values.get("customer"), problems, ("Customer",), "Customer")
        klass = self.customer_classes.get(
            str(customer.values.get("CustomerClass")) if customer else "DEFAULT", {}
        )
        if values.get("doc_date") is None:
            values["doc_date"] = ctx.business_date
        self._post_period(row, problems, module="AR", sent=sent, period_field="PostPeriod", date_field="Date")
        if customer is not None:
            if values.get("terms") is None:
                values["terms"] = customer.values.get("Terms")
            values["currency"] = customer.values.get("CurrencyID")
        if values.get("terms") is not None:
            self._exists(problems, ("Terms",), values["terms"] in self.terms, "Terms", values["terms"])
        if values.get("due_date") is None and doc_type != "CRM":
            values["due_date"] = values["doc_date"] + timedelta(
                days=self.terms.get(str(values.get("terms")), 0)
            )
        if values.get("ar_account") is None:
            values["ar_account"] = klass.get("ar_account", "11000")
        self._exists(
            problems,
            ("LinkARAccount",),
            self._account_ok(values["ar_account"]),
            "AR Account",
            values["ar_account"],
        )
        if values.get("branch") is None:
            values["branch"] = ctx.branch or "HQ"
        self._exists(problems, ("LinkBranch",), self._branch_ok(values["branch"]), "Branch", values["branch"])
        if created and "Hold" not in sent:
            values["hold"] = self.config.hold_on_entry
        if values.get("hold") is None:
            values["hold"] = False
        places = self._precision(values.get("currency"))
        total = ZERO
        lines = row.lines("lines")
        for line in lines:
            line_sent = touched.sent(line.id)
            lv = line.values
            path = ("Details", line.id)
            if lv.get("LineNbr") is None:
                lv["LineNbr"] = self._next_line_nbr(lines)
            if lv.get("Branch") is None:
                lv["Branch"] = values["branch"]
            self._exists(problems, (*path, "Branch"), self._branch_ok(lv["Branch"]), "Branch", lv["Branch"])
            if lv.get("Account") is None:
                lv["Account"] = klass.get("sales_account", "40000")
            self._exists(
                problems, (*path, "Account"), self._account_ok(lv["Account"]), "Account", lv["Account"]
            )
            if lv.get("Subaccount") is None:
                lv["Subaccount"] = "000000"
            self._exists(
                problems,
                (*path, "Subaccount"),
                self._subaccount_ok(lv["Subaccount"]),
                "Subaccount",
                lv["Subaccount"],
            )
            total += self._line_amounts(lv, line_sent, places)
        values["amount"] = _money(total, places)
        values["balance"] = values["amount"]
        values["tax_total"] = ZERO
        values["status"] = "On Hold" if values["hold"] else "Balanced"
        if doc_type == "CRM":
            # A credit memo's applications are checked like a payment's and applied on release.
            self._check_applications(row, problems, places, collection="ApplicationsCreditMemo")
        else:
            for line in row.lines("applications"):
                if not line.values.get("released"):
                    problems.add(
                        ("ApplicationsCreditMemo", line.id, "ReferenceNbr"),
                        "Only a credit memo can be applied to other documents on this form.",
                    )

    @staticmethod
    def _line_amounts(lv: dict[str, Any], sent: set[str], places: int) -> Decimal:
        """Qty * UnitPrice = ExtendedPrice; Amount = ExtendedPrice - DiscountAmount (AR301000 lines)."""
        discount = lv.get("DiscountAmount") or ZERO
        lv["DiscountAmount"] = _money(discount, places)
        if lv.get("Qty") is None:
            lv["Qty"] = Decimal("1")
        qty: Decimal = lv["Qty"]
        if "ExtendedPrice" in sent and "UnitPrice" not in sent:
            extended = lv.get("ExtendedPrice") or ZERO
            lv["UnitPrice"] = (extended / qty) if qty else extended
        elif "Amount" in sent and not sent & {"UnitPrice", "ExtendedPrice"}:
            extended = (lv.get("Amount") or ZERO) + discount
            lv["UnitPrice"] = (extended / qty) if qty else extended
        elif sent & {"Qty", "UnitPrice", "DiscountAmount"} or lv.get("ExtendedPrice") is None:
            extended = qty * (lv.get("UnitPrice") or ZERO)
        else:
            extended = lv["ExtendedPrice"]
        if lv.get("UnitPrice") is None:
            lv["UnitPrice"] = ZERO
        lv["UnitPrice"] = _money(lv["UnitPrice"], 6).normalize() if lv["UnitPrice"] else ZERO
        lv["ExtendedPrice"] = _money(extended, places)
        lv["Amount"] = _money(extended - discount, places)
        amount: Decimal = lv["Amount"]
        return amount

    def _customer(
        self, customer_id: Any, problems: Problems, path: tuple[str, ...], display: str
    ) -> Row | None:
        if not self._required(problems, path, customer_id, display):
            return None
        customer = self._lookup("Customer", str(customer_id))
        if customer is None:
            self._exists(problems, path, False, display, customer_id)
            return None
        if customer.values.get("Status") == "I":
            problems.add(path, f"The customer status is '{CUSTOMER_STATUSES['I']}'.")
        return customer

    def _write_payment(self, w: _Write) -> None:
        spec, row, parsed, problems, ctx, created = w.spec, w.row, w.parsed, w.problems, w.ctx, w.created
        values = row.values
        touched = _Touched()
        frozen = frozenset() if created else frozenset({"Type", "ReferenceNbr"})
        if created and values.get("doc_type") is None:
            values["doc_type"] = "PMT"
        released = bool(values.get("released"))
        if released:
            # Fields of a released payment are disabled; new applications can still be added.
            restricted = Parsed(note=parsed.note, custom=parsed.custom, collections=dict(parsed.collections))
            self._apply(spec.obj, row, restricted, problems, touched, frozen=frozen)
        else:
            self._apply(spec.obj, row, parsed, problems, touched, frozen=frozen)
        sent = touched.sent(row.id)
        doc_type = values.get("doc_type")
        if created and ("Type",) not in problems.fields and doc_type not in CREATABLE_PAYMENT_TYPES:
            problems.add(
                ("Type",),
                f"Documents of the {PAYMENT_TYPES.get(str(doc_type), doc_type)} type cannot be created here.",
            )
        customer = self._customer(values.get("customer"), problems, ("CustomerID",), "Customer")
        if not released:
            if values.get("payment_method") is None:
                values["payment_method"] = "CHECK"
            method = self.payment_methods.get(str(values["payment_method"]))
            if self._exists(
                problems,
                ("PaymentMethod",),
                method is not None and method["active"],
                "Payment Method",
                values["payment_method"],
            ):
                assert method is not None
                if values.get("cash_account") is None:
                    values["cash_account"] = method["cash_account"]
            if values.get("cash_account") is not None:
                self._exists(
                    problems,
                    ("CashAccount",),
                    self._account_ok(values["cash_account"], cash=True),
                    "Cash Account",
                    values["cash_account"],
                )
            else:
                self._required(problems, ("CashAccount",), None, "Cash Account")
            if values.get("currency") is None and customer is not None:
                values["currency"] = customer.values.get("CurrencyID")
            if values.get("currency") is not None:
                self._exists(
                    problems,
                    ("CurrencyID",),
                    self._currency_ok(values["currency"]),
                    "Currency",
                    values["currency"],
                )
            if values.get("doc_date") is None:
                values["doc_date"] = ctx.business_date
            self._post_period(
                row, problems, module="AR", sent=sent, period_field=None, date_field="ApplicationDate"
            )
            if values.get("branch") is None:
                values["branch"] = ctx.branch or "HQ"
            self._exists(problems, ("Branch",), self._branch_ok(values["branch"]), "Branch", values["branch"])
            if values.get("amount") is None:
                values["amount"] = ZERO
            if values["amount"] < 0:
                problems.add(("PaymentAmount",), "The value must be greater than or equal to 0.")
            if created and "Hold" not in sent:
                values["hold"] = self.config.hold_on_entry
            if values.get("hold") is None:
                values["hold"] = False
            values["status"] = "On Hold" if values["hold"] else "Balanced"
        places = self._precision(values.get("currency"))
        values["amount"] = _money(values.get("amount") or ZERO, places)
        self._check_applications(row, problems, places)

    def _check_applications(
        self, row: Row, problems: Problems, places: int, *, collection: str = "DocumentsToApply"
    ) -> None:
        """Check the unreleased applications of a payment, refund or credit memo (stored under
        ``applications``, shown as ``collection``): open documents of the same customer, amounts
        within each document's balance and, together, within the applying document's amount."""
        values = row.values
        applications = row.lines("applications")
        released_total = sum(
            (line.values.get("AmountPaid") or ZERO for line in applications if line.values.get("released")),
            ZERO,
        )
        available = values["amount"] - released_total
        pending: dict[tuple[str, str], Decimal] = {}
        for line in applications:
            lv = line.values
            if lv.get("released"):
                continue
            path = (collection, line.id)
            if lv.get("DocType") is None:
                lv["DocType"] = "INV" if values.get("doc_type") != "REF" else "PMT"
            if not self._required(
                problems, (*path, "ReferenceNbr"), lv.get("ReferenceNbr"), "Reference Nbr."
            ):
                continue
            allowed = PAYMENT_SIDE if values.get("doc_type") == "REF" else INVOICE_SIDE
            target = self._by_key(
                ENTITIES["Invoice"] if lv["DocType"] in INVOICE_TYPES else ENTITIES["Payment"],
                (lv["DocType"], lv["ReferenceNbr"]),
            )
            # The selector lists only open documents of the same customer (AR302000).
            usable = (
                target is not None
                and lv["DocType"] in allowed
                and target.values.get("customer") == values.get("customer")
                and target.values.get("status") == "Open"
                and target.id != row.id
            )
            if not self._exists(
                problems, (*path, "ReferenceNbr"), usable, "Reference Nbr.", lv["ReferenceNbr"]
            ):
                continue
            assert target is not None
            key = (lv["DocType"], lv["ReferenceNbr"])
            balance = target.values.get("balance") or ZERO
            remaining_target = balance - pending.get(key, ZERO)
            if lv.get("AmountPaid") is None:
                lv["AmountPaid"] = max(ZERO, min(remaining_target, available - sum(pending.values(), ZERO)))
            lv["AmountPaid"] = _money(lv["AmountPaid"], places)
            if lv["AmountPaid"] < 0:
                problems.add((*path, "AmountPaid"), "The value must be greater than or equal to 0.")
            elif lv["AmountPaid"] > remaining_target:
                problems.add(
                    (*path, "AmountPaid"), "The amount paid cannot exceed the balance of the document."
                )
            pending[key] = pending.get(key, ZERO) + lv["AmountPaid"]
            lv["CustomerOrder"] = target.values.get("invoice_nbr")
            lv["Description"] = target.values.get("description")
            lv["Customer"] = target.values.get("customer")
            lv["Balance"] = balance
            lv["PostPeriod"] = target.values.get("fin_period")
        if sum(pending.values(), ZERO) > available:
            problems.add(("PaymentAmount",), "The amount applied to documents exceeds the payment amount.")
        values["applied_total"] = released_total + sum(pending.values(), ZERO)

    def _write_journal(self, w: _Write) -> None:
        spec, row, parsed, problems, ctx, created = w.spec, w.row, w.parsed, w.problems, w.ctx, w.created
        values = row.values
        if values.get("released"):
            self._apply(spec.obj, row, Parsed(note=parsed.note, custom=parsed.custom), problems, _Touched())
            return
        touched = _Touched()
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
                amount = _money(lv.get(name) or ZERO, places)
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

    def _write_reference(self, w: _Write) -> None:
        spec, row, parsed, problems, created = w.spec, w.row, w.parsed, w.problems, w.created
        key = spec.keys[0]
        self._apply(
            spec.obj, row, parsed, problems, _Touched(), frozen=frozenset() if created else frozenset({key})
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

    def _write_financial_year(self, w: _Write) -> None:
        spec, row, parsed, problems, created = w.spec, w.row, w.parsed, w.problems, w.created
        before = {line.id for line in row.collections.get("periods", [])}
        self._apply(
            spec.obj,
            row,
            parsed,
            problems,
            _Touched(),
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
            header, periods = _financial_year(int(year), "Inactive")
            for key, value in header.items():
                if row.values.get(key) is None:
                    row.values[key] = value
            row.collections["periods"] = periods

    # ------------------------------------------------------------------ actions

    def invoke(self, entity: str, action: str, body: Any, context: RequestContext) -> Operation:
        """``POST {Entity}/{Action}``: start a long-running action on the record ``entity`` names (4.4).

        With ``action_polls == 0`` the action runs at once (the handler answers 204); a failure
        then surfaces right here as a 500. Otherwise it runs when the polls are used up (or
        ``action_seconds`` pass) and a failure surfaces on the status poll.
        """
        spec = ENTITIES[entity]
        if not isinstance(body, dict):
            raise errors.model_state({"entity": ["The request body must be a JSON object."]})
        parsed = parse_entity(spec, body.get("entity") or {}, self.config.tz)
        with self._lock:
            self._advance_operations()
            row = self._match(spec, parsed, None)
            if row is None:
                raise errors.no_entity()
            operation = Operation(
                id=str(uuid.uuid4()),
                entity=entity,
                action=action,
                row_id=row.id,
                started=self.now(),
                polls_left=self.config.action_polls,
            )
            self.operations[operation.id] = operation
            if operation.polls_left == 0:
                self._execute(operation)
                if operation.state == "failed":
                    raise errors.http_error(500, operation.error)
            return operation

    def poll(self, entity: str, action: str, operation_id: str) -> bool:
        """``GET {Entity}/{Action}/status/{id}``: ``False`` while running (202), ``True`` when done (204)."""
        with self._lock:
            operation = self.operations.get(operation_id)
            if operation is None or operation.entity != entity or operation.action != action:
                raise errors.no_entity()
            self._advance_operations()
            if operation.state == "running":
                if operation.polls_left > 0:
                    operation.polls_left -= 1
                    return False
                self._execute(operation)
            if operation.state == "failed":
                raise errors.http_error(500, operation.error)
            return True

    def _advance_operations(self) -> None:
        limit = self.config.action_seconds
        if limit is None:
            return
        now = self.now()
        for operation in self.operations.values():
            if operation.state == "running" and now - operation.started >= limit:
                self._execute(operation)

    def _execute(self, operation: Operation) -> None:
        spec = ENTITIES[operation.entity]
        row = self.tables[spec.table].get(operation.row_id)
        try:
            if row is None:
                raise ActionFailed("No entity satisfies the condition.")
            runner = {
                "ReleaseInvoice": self._release_invoice,
                "ReleasePayment": self._release_payment,
                "ReleaseJournalTransaction": self._release_batch,
            }[operation.action]
            runner(row)
        except ActionFailed as failure:
            operation.state, operation.error = "failed", failure.message
            self.events["actions_failed"] += 1
            return
        operation.state = "done"
        self.events["actions_done"] += 1
        row.values["modified"] = self._now_dt()

    def _releasable(self, row: Row, module: str) -> None:
        values = row.values
        if values.get("hold"):
            raise ActionFailed("Document is On Hold and cannot be released.")
        if values.get("status") != "Balanced":
            raise ActionFailed("Document Status is invalid for processing.")
        period = values.get("fin_period")
        if period:
            message = self._period_problem(str(period), module=module, from_date=None)
            if message is not None:
                raise ActionFailed(message)

    def _release_invoice(self, row: Row) -> None:
        self._releasable(row, "AR")
        values = row.values
        if values.get("doc_type") == "CRM":
            # Releasing a credit memo releases its applications (section 6.4).
            self._release_applications(row)
            return
        values["released"] = True
        values["balance"] = values.get("amount") or ZERO
        values["status"] = "Open" if values["balance"] > 0 else "Closed"

    def _release_payment(self, row: Row) -> None:
        values = row.values
        if values.get("hold"):
            raise ActionFailed("Document is On Hold and cannot be released.")
        if values.get("status") not in ("Balanced", "Open"):
            raise ActionFailed("Document Status is invalid for processing.")
        if values.get("status") == "Balanced":
            self._releasable(row, "AR")
        self._release_applications(row)

    def _release_applications(self, row: Row) -> None:
        """Apply the unreleased applications of a payment, refund or credit memo to their
        documents (all are checked before any balance changes), then release the document: its
        balance is what is left unapplied (Open), or Closed at zero."""
        values = row.values
        pending = [line for line in row.lines("applications") if not line.values.get("released")]
        targets = []
        for line in pending:
            lv = line.values
            spec = ENTITIES["Invoice"] if lv.get("DocType") in INVOICE_TYPES else ENTITIES["Payment"]
            target = self._by_key(spec, (lv.get("DocType"), lv.get("ReferenceNbr")))
            if target is None or target.values.get("status") != "Open":
                raise ActionFailed(
                    f"The document {lv.get('ReferenceNbr')} is not open and cannot be adjusted."
                )
            if (lv.get("AmountPaid") or ZERO) > (target.values.get("balance") or ZERO):
                raise ActionFailed(
                    f"The amount paid exceeds the balance of the document {lv.get('ReferenceNbr')}."
                )
            targets.append(target)
        application_date = values.get("doc_date")
        for line, target in zip(pending, targets, strict=True):
            lv = line.values
            paid: Decimal = lv.get("AmountPaid") or ZERO
            target.values["balance"] = (target.values.get("balance") or ZERO) - paid
            if target.values["balance"] <= 0:
                target.values["balance"] = ZERO
                target.values["status"] = "Closed"
            target.values["modified"] = self._now_dt()
            lv["released"] = True
            lv["application_date"] = application_date
            lv["Balance"] = target.values["balance"]
            lv["Status"] = target.values["status"]
            target.lines("applied_by").append(
                Row(
                    values={
                        "AmountPaid": paid,
                        "Balance": target.values["balance"],
                        "DocType": values.get("doc_type"),
                        "PaymentDate": application_date,
                        "ReferenceNbr": values.get("ref_nbr"),
                        "Status": "Closed",
                    }
                )
            )
        applied = sum((line.values.get("AmountPaid") or ZERO for line in row.lines("applications")), ZERO)
        values["applied_total"] = applied
        values["released"] = True
        values["balance"] = (values.get("amount") or ZERO) - applied
        values["status"] = "Open" if values["balance"] > 0 else "Closed"

    def _release_batch(self, row: Row) -> None:
        self._releasable(row, "GL")
        lines = row.lines("lines")
        debit = sum((line.values.get("DebitAmount") or ZERO for line in lines), ZERO)
        credit = sum((line.values.get("CreditAmount") or ZERO for line in lines), ZERO)
        if debit != credit:
            raise ActionFailed("Batch is out of balance, please review.")
        row.values["released"] = True
        row.values["status"] = "Posted" if self.config.auto_post else "Unposted"

    # ------------------------------------------------------------------ control-plane views

    def state(self, entity: str) -> list[dict[str, Any]]:
        """Every record of ``entity``, unwrapped, with all details (for assertions)."""
        spec = ENTITIES[entity]
        with self._lock:
            self._advance_operations()
            return [self._plain(spec, row) for row in self._rows(spec)]

    def state_one(self, entity: str, keys: list[str]) -> dict[str, Any] | None:
        spec = ENTITIES[entity]
        with self._lock:
            row = self._find(spec, keys)
            return None if row is None else self._plain(spec, row)

    def _plain(self, spec: EntitySpec, row: Row) -> dict[str, Any]:
        out = plain(spec.obj, row, self.config.tz)
        if spec.table == "ar_documents":
            out["Released"] = bool(row.values.get("released"))
        return out

    def counts(self) -> dict[str, Any]:
        """Licence counters, calls by entity and verb, sessions, faults, and record counts."""
        with self._lock:
            self._purge_sessions()
            snapshot = self.licence.snapshot()
            snapshot.update(
                {
                    "calls": dict(sorted(self.calls.items())),
                    "logins": self.events["logins"],
                    "logouts": self.events["logouts"],
                    "login_failures": self.events["login_failures"],
                    "login_limit_429": self.events["login_limit"],
                    "unauthorized_401": self.events["unauthorized"],
                    "sessions_expired": self.events["sessions_expired"],
                    "open_sessions": len(self.sessions),
                    "tokens_issued": self.events["tokens_issued"],
                    "actions_done": self.events["actions_done"],
                    "actions_failed": self.events["actions_failed"],
                    "dropped_connections": self.events["dropped_connections"],
                    "faults_injected": dict(self.faults.injected),
                    "records": {name: len(self._rows(spec)) for name, spec in ENTITIES.items()},
                }
            )
            return snapshot

    def reset_counts(self) -> None:
        with self._lock:
            self.licence.reset_counts()
            self.calls.clear()
            self.events.clear()
            self.faults.injected.clear()

    def note_drop(self) -> None:
        with self._lock:
            self.events["dropped_connections"] += 1


Writer = Callable[[AcumaticaBackend, _Write], None]
WRITERS: dict[str, Writer] = {
    "Customer": AcumaticaBackend._write_customer,
    "Invoice": AcumaticaBackend._write_invoice,
    "Payment": AcumaticaBackend._write_payment,
    "JournalTransaction": AcumaticaBackend._write_journal,
    "Account": AcumaticaBackend._write_reference,
    "Subaccount": AcumaticaBackend._write_reference,
    "Currency": AcumaticaBackend._write_reference,
    "Ledger": AcumaticaBackend._write_reference,
    "FinancialPeriod": AcumaticaBackend._write_financial_year,
}


def _sortable(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if part is None else str(part) for part in key)


def _financial_year(year: int, status: str) -> tuple[dict[str, Any], list[Row]]:
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


def _parse_business_date(text: str) -> date | None:
    """``PX-CbApiBusinessDate`` accepts any reasonable date format (section 2.1)."""
    for fmt in ("%Y/%m/%d", "%Y-%m-%d", "%m/%d/%Y", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text.strip()[:19], fmt).date()
        except ValueError:
            continue
    return None


__all__ = [
    "AcumaticaBackend",
    "Operation",
    "PutResult",
    "QueryOptions",
    "RequestContext",
    "Session",
    "normalize_period",
]
