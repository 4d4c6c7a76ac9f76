"""``ZuoraBackend``: the sandbox tenant's state and one method per real Zuora operation.

Moto-style: handlers parse requests and render responses; this class owns the tables and the
rules. Every public method takes the lock (an ``RLock``; the app may be called from several
threads), advances the asynchronous jobs to "now" and returns plain data (copies, never live rows).

Asynchronous work (trial balances, journal runs, their cancellation) is derived lazily from the
clock or from status polls (``jobs.Job``). ``events`` records every record posted or changed, for a
future callout sender (``events_since`` / ``subscribe``).
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from sandbox.zuora import zoql
from sandbox.zuora.catalog import ACCOUNTING_CODES, ALL_TRANSACTION_TYPES, PRODUCTS, TAX_RATES
from sandbox.zuora.config import SandboxConfig
from sandbox.zuora.errors import (
    RESOURCE_ACCOUNTING_CODE,
    RESOURCE_CREDIT_MEMO,
    RESOURCE_DEBIT_MEMO,
    RESOURCE_INVOICE,
    RESOURCE_JOURNAL_ENTRY,
    RESOURCE_JOURNAL_RUN,
    RESOURCE_PAYMENT,
    RESOURCE_PERIOD,
    RESOURCE_REFUND,
    ActionFault,
    Forbidden,
    OAuthError,
    UnrecognisedFields,
    ZuoraError,
    invalid,
    missing,
    not_found,
    rule,
)
from sandbox.zuora.formats import (
    finance_datetime,
    from_epoch,
    money,
    number_json,
    parse_date,
    tenant_zone,
    zoql_datetime,
)
from sandbox.zuora.gateway import Gateway
from sandbox.zuora.jobs import DONE, PENDING, Job
from sandbox.zuora.journal import LineKey, draft_entries
from sandbox.zuora.objectquery import ObjectQuery, next_cursor, render
from sandbox.zuora.paging import QueryLocators, keyset_page, keyset_scan, page_slice
from sandbox.zuora.schema import ENDPOINTS, OBJECTS, TABLES, Kind, ObjectType, Relation, coerce, plain
from sandbox.zuora.seed import (
    ELECTRONIC_TYPES,
    SANDBOX_USER,
    Factory,
    Sizes,
    apply_payment,
    build_item,
    invoice_row,
    memo_row,
    payment_row,
    refund_row,
    seed_tables,
)
from sandbox.zuora.tables import Table, new_tables

DEFAULT_CLIENT_ID = "00000000-0000-4000-8000-00000000cafe"
# <= 42 chars (section 1.1); '+', '/' and '=' catch clients that do not form-encode the secret.
DEFAULT_CLIENT_SECRET = "ledgerbridge/sandbox+secret=local"  # noqa: S105 - a public sandbox credential
TENANT_ID = "9999"

TRANSFERRED_ACTIONS = ("Processing", "Yes", "Error", "Ignore")  # SOAP/Actions values (section 10.2)
TRANSFERRED_REST = ("Processing", "Yes", "No", "Error", "Ignore")
MAX_ACTION_OBJECTS = 50
MAX_BULK_MEMOS = 50  # PUT /v1/credit-memos/bulk, /v1/debit-memos/bulk
MAX_EVENTS = 100_000  # the oldest events drop off; sequence numbers keep counting
JE_DEFAULT_PAGE_SIZE = 8
PERIOD_DEFAULT_PAGE_SIZE = 20
DEFAULT_TB_ERROR = (
    "Error creating the trial balance: exchange rate from USD to GBP on {day} is not available. "
    "Please import the rate and run trial balance again."
)
DEFAULT_JR_ERROR = "Journal run failed: an accounting code is missing on one or more transactions."

# Fields each Actions type may update (section 10); everything else known is a row error.
ACTION_UPDATABLE: dict[str, frozenset[str]] = {
    "Invoice": frozenset({"TransferredToAccounting"}),
    "Payment": frozenset({"TransferredToAccounting"}),
    "Refund": frozenset({"TransferredToAccounting"}),
    "Account": frozenset({"ERPAccountId__c", "Notes", "CrmId", "Name", "PurchaseOrderNumber"}),
}

# Event category codes (section 12.4) for a record posted through the control plane.
POSTED_EVENTS: dict[str, int] = {"Invoice": 1110, "Payment": 2120, "CreditMemo": 2720, "DebitMemo": 2820}


@dataclass(frozen=True)
class SandboxEvent:
    """'record posted/changed' and job completions, in order; a callout sender consumes these."""

    seq: int
    kind: str  # "posted" | "changed" | "completed"
    object_type: str
    object_id: str
    number: str | None
    at: str
    category: int | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PeriodState:
    """The finance side of an accounting period: its trial balance and the failure knob."""

    tb_status: str | None = None
    tb_start: datetime | None = None
    tb_end: datetime | None = None
    tb_error: str | None = None
    job: Job | None = None
    fail_message: str | None = None
    fail_times: int | None = None  # None with a message: fail every run until cleared
    file_ids: dict[str, str | None] = field(default_factory=dict)


@dataclass
class JournalEntry:
    number: str
    run_number: str | None
    journal_entry_date: date
    period_name: str
    period_start: date
    period_end: date
    currency: str
    home_currency: str
    transaction_type: str | None
    segments: list[tuple[str, str]]
    items: list[dict[str, Any]]
    lines: list[LineKey]
    status: str = "Created"
    transferred: str = "No"
    transferred_by: str | None = None
    transfer_at: datetime | None = None
    notes: str | None = None
    created_at: datetime | None = None
    # How many requests set transferredToAccounting=Yes (control plane only, never in the API).
    yes_writes: int = 0


@dataclass
class JournalRun:
    number: str
    journal_entry_date: date
    start: date
    end: date
    period_name: str | None
    transaction_types: list[str]
    executed_at: datetime
    job: Job | None
    action: str | None = None  # None (the run itself) | "cancel" | "delete"
    status: str = PENDING  # meaningful once no job is active
    drafts: list[Any] = field(default_factory=list)
    entry_numbers: list[str] = field(default_factory=list)
    error_message: str | None = None


class ZuoraBackend:
    """All state of one sandbox tenant. See the module docstring."""

    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        config: SandboxConfig | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self.client_id = client_id
        self.client_secret = client_secret
        self._config = config or SandboxConfig()
        self._clock = clock or time.time
        self._offset = 0.0
        self.gateway = Gateway()
        self._startup_seed: tuple[int, Sizes] | None = None
        self._listeners: list[Callable[[SandboxEvent], None]] = []
        self._reset_data()
        self._tokens: dict[str, float] = {}
        self._events: deque[SandboxEvent] = deque(maxlen=MAX_EVENTS)
        self._event_seq = 0

    # == lifecycle and control ===================================================================

    def _reset_data(self, seed: int = 0) -> None:
        self._sequences: dict[str, int] = {}
        self._tables: dict[str, Table] = new_tables()
        self._periods: dict[str, PeriodState] = {}
        self._runs: dict[str, JournalRun] = {}
        self._entries: dict[str, JournalEntry] = {}
        self._taken: dict[LineKey, str] = {}
        self._locators = QueryLocators()
        self._fail_runs: deque[str] = deque()
        self._factory = Factory(random.Random(f"add-{seed}"), self._sequences, self.zone)
        self.seed_info: dict[str, Any] | None = None

    def reset(self) -> None:
        """Back to the start-up state: the start-up seed (if any) re-applied; tokens, faults,
        counters, events and idempotency keys cleared; configuration and clock kept."""
        with self._lock:
            self._tokens = {}
            self._events.clear()
            self._event_seq = 0
            self.gateway.reset()
            if self._startup_seed is not None:
                self._seed(*self._startup_seed)
            else:
                self._reset_data()

    def seed(self, seed: int, sizes: Sizes | None = None, *, startup: bool = False) -> dict[str, int]:
        """Replace all data with the deterministic data of ``seed``/``sizes``; returns row counts."""
        sizes = sizes or Sizes()
        with self._lock:
            if startup:
                self._startup_seed = (seed, sizes)
            return self._seed(seed, sizes)

    def _seed(self, seed: int, sizes: Sizes) -> dict[str, int]:
        self._reset_data(seed)
        self._tables = seed_tables(seed, sizes, self.zone, self._sequences)
        for period in self._tables["AccountingPeriod"]:
            state = self._periods[period["Id"]] = PeriodState()
            if period["Status"] == "Closed":
                run_at = (
                    datetime.combine(period["EndDate"], datetime.min.time(), self.zone).timestamp() + 90000
                )
                state.tb_status = "Completed"
                state.tb_start = from_epoch(run_at, self.zone)
                state.tb_end = from_epoch(run_at + 23, self.zone)
                state.file_ids = self._file_ids(period["Id"])
        self.seed_info = {"seed": seed, "sizes": asdict(sizes)}
        return {name: len(table) for name, table in self._tables.items()}

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """Apply config changes (raises ``ValueError`` on a bad key or value)."""
        with self._lock:
            self._config = self._config.with_changes(changes)
            return self._config

    @property
    def zone(self) -> timezone:
        return tenant_zone(self._config.tenant_utc_offset_minutes)

    def now(self) -> float:
        """Seconds since the epoch on the sandbox clock (the real clock plus any advance)."""
        return self._clock() + self._offset

    def advance_clock(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
            return self.now()

    def _now_dt(self) -> datetime:
        return from_epoch(self.now(), self.zone)

    def subscribe(self, listener: Callable[[SandboxEvent], None]) -> None:
        """Call ``listener`` (under the lock, so keep it quick) for every new event."""
        with self._lock:
            self._listeners.append(listener)

    def events_since(self, seq: int = 0) -> list[SandboxEvent]:
        """Events with a sequence number above ``seq``, oldest first (a consumer keeps its last seq)."""
        with self._lock:
            return [e for e in self._events if e.seq > seq]

    def _emit(
        self, kind: str, obj: str, row_id: str, number: str | None, category: int | None, **details: Any
    ) -> None:
        self._event_seq += 1
        event = SandboxEvent(
            self._event_seq, kind, obj, row_id, number, self._now_dt().isoformat(), category, details
        )
        self._events.append(event)
        for listener in self._listeners:
            listener(event)

    # == OAuth (section 1) =======================================================================

    def issue_token(
        self, client_id: str | None, client_secret: str | None, grant_type: str | None
    ) -> dict[str, Any]:
        """Validate a client-credentials request and mint a bearer token."""
        if not client_id or not client_secret or not grant_type:
            raise OAuthError(400, "invalid_request", "client_id, client_secret and grant_type are required")
        if grant_type != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "only client_credentials is supported")
        if len(client_id) != 36 or len(client_secret) > 42:
            raise OAuthError(400, "invalid_request", "client_id must be 36 chars, client_secret at most 42")
        if not (
            secrets.compare_digest(client_id, self.client_id)
            and secrets.compare_digest(client_secret, self.client_secret)
        ):
            raise OAuthError(401, "invalid_client", "Bad client credentials")
        with self._lock:
            token = secrets.token_hex(16)
            lifetime = self._config.token_lifetime_seconds
            self._tokens[token] = self.now() + lifetime
            return {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": lifetime,
                "scope": f"user.{SANDBOX_USER} entity.00000000-0000-4000-8000-000000000001 "
                f"platform.write service.events.read tenant.{TENANT_ID}",
                "jti": token[:-1] + ("0" if token[-1] != "0" else "1"),
            }

    def authenticate(self, token: str) -> bool:
        """True while ``token`` is known and not expired."""
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if self.now() >= expiry:
                del self._tokens[token]
                return False
            return True

    def expire_tokens(self) -> int:
        """Invalidate every issued token (the next call gets 401); returns how many."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count

    # == ZOQL (section 5) ========================================================================

    def zoql_query(self, query_string: Any, batch_size: int, wsdl_version: int) -> dict[str, Any]:
        if not isinstance(query_string, str) or not query_string.strip():
            raise ActionFault("MALFORMED_QUERY", "queryString is required")
        try:
            query = zoql.parse(query_string)
        except zoql.ZoqlError as exc:
            raise ActionFault(exc.fault, str(exc)) from exc
        obj = next((o for o in OBJECTS.values() if o.name.lower() == query.object_name.lower()), None)
        if obj is None or not obj.zoql:
            raise ActionFault("INVALID_TYPE", f"invalid ZOQL object: {query.object_name}")
        selected = ["Id"]
        for name in query.fields:
            api_name = obj.field_named(name)
            if api_name is None or obj.min_wsdl.get(api_name, 0) > wsdl_version:
                raise ActionFault("INVALID_FIELD", f"invalid field for query: {obj.name}.{name}")
            if api_name not in selected:
                selected.append(api_name)
        with self._lock:
            self._advance()
            try:
                where = zoql.compile_where(query, obj, self.zone)
            except zoql.ZoqlError as exc:
                raise ActionFault(exc.fault, str(exc)) from exc
            zone = self.zone
            rows = [
                self._zoql_record(row, selected, zone)
                for row in self._tables[obj.name]
                if zoql.matches(where, row)
            ]
            batch, locator = self._locators.first_batch(
                rows, batch_size, self.now(), self._config.query_locator_ttl_seconds
            )
        return _zoql_response(batch, locator)

    def zoql_query_more(self, locator: Any, batch_size: int) -> dict[str, Any]:
        if not isinstance(locator, str) or not locator:
            raise ActionFault("INVALID_QUERY_LOCATOR", "queryLocator is required")
        with self._lock:
            found = self._locators.next_batch(
                locator, batch_size, self.now(), self._config.query_locator_ttl_seconds
            )
        if found is None:
            raise ActionFault("INVALID_QUERY_LOCATOR", "invalid or expired queryLocator")
        return _zoql_response(*found)

    @staticmethod
    def _zoql_record(row: dict[str, Any], selected: list[str], zone: timezone) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in selected:
            value = row.get(name)
            if value is None:
                continue  # ZOQL omits null fields (section 5.1)
            if isinstance(value, datetime):
                out[name] = zoql_datetime(value, zone)
            elif isinstance(value, date):
                out[name] = value.isoformat()
            elif isinstance(value, Decimal):
                out[name] = number_json(value)
            else:
                out[name] = value
        return out

    # == Actions: update (section 10) ============================================================

    def action_update(self, type_name: Any, objects: Any, *, reject_unknown: bool) -> list[dict[str, Any]]:
        """Per-row results in request order; whole-call faults for a bad envelope."""
        if not isinstance(type_name, str) or not type_name:
            raise ActionFault("MISSING_REQUIRED_VALUE", "type is required")
        if not isinstance(objects, list) or not objects:
            raise ActionFault("MISSING_REQUIRED_VALUE", "objects must be a non-empty array")
        if len(objects) > MAX_ACTION_OBJECTS:
            raise ActionFault(
                "MAX_RECORDS_EXCEEDED", f"at most {MAX_ACTION_OBJECTS} objects per call, got {len(objects)}"
            )
        if any(not isinstance(o, dict) for o in objects):
            raise ActionFault("INVALID_VALUE", "objects must not contain null or non-object entries")
        obj = OBJECTS.get(type_name)
        if obj is not None and reject_unknown:
            for item in objects:
                unknown = [k for k in item if k != "fieldsToNull" and obj.field_named(k) is None]
                if unknown:
                    raise UnrecognisedFields(str(unknown))
        with self._lock:
            self._advance()
            return [self._update_row(type_name, obj, item) for item in objects]

    def _update_row(self, type_name: str, obj: ObjectType | None, item: dict[str, Any]) -> dict[str, Any]:
        if obj is None or type_name not in ACTION_UPDATABLE:
            # Invoice Settlement objects (CreditMemo, DebitMemo) are not Actions objects (10.1).
            return _row_error("INVALID_TYPE", f"invalid type for update: {type_name}")
        row_id = item.get("Id")
        if not isinstance(row_id, str) or not row_id:
            return _row_error("MISSING_REQUIRED_VALUE", "Id is required")
        row = self._tables[obj.name].rows.get(row_id)
        if row is None:
            return _row_error("INVALID_ID", f"invalid id {row_id}")
        changes: dict[str, Any] = {}
        allowed = ACTION_UPDATABLE[type_name]
        to_null = item.get("fieldsToNull") or []
        if not isinstance(to_null, list):
            return _row_error("INVALID_VALUE", "fieldsToNull must be an array")
        for key, value in list(item.items()) + [(name, None) for name in to_null]:
            if key in ("Id", "fieldsToNull"):
                continue
            name = obj.field_named(str(key))
            if name is None:
                continue  # unknown fields are silently ignored (section 10.1)
            if name not in allowed:
                return _row_error("INVALID_FIELD", f"{name} cannot be updated on {type_name}")
            if name == "TransferredToAccounting":
                if value not in TRANSFERRED_ACTIONS:
                    return _row_error(
                        "INVALID_VALUE",
                        f"TransferredToAccounting must be one of {', '.join(TRANSFERRED_ACTIONS)}",
                    )
                if type_name == "Invoice" and row["Status"] != "Posted":
                    return _row_error(
                        "INVALID_VALUE", "TransferredToAccounting can only be set on Posted invoices"
                    )
            elif value is not None and not isinstance(value, str):
                return _row_error("INVALID_VALUE", f"{name} must be a string")
            changes[name] = value
        self._touch(obj, row, changes)
        return {"Success": True, "Id": row_id}

    def _touch(
        self,
        obj: ObjectType,
        row: dict[str, Any],
        changes: Mapping[str, Any],
        updated: datetime | None = None,
    ) -> dict[str, Any]:
        """Apply ``changes`` and bump UpdatedDate (writing TransferredToAccounting re-surfaces the
        record in the next high-water-mark poll, section 9.5)."""
        self._tables[obj.name].update(
            row["Id"], {**changes, "UpdatedDate": updated or self._now_dt(), "UpdatedById": SANDBOX_USER}
        )
        number = row.get(obj.number_field) if obj.number_field else None
        self._emit("changed", obj.name, row["Id"], number, None, fields=sorted(changes))
        return row

    # == REST writes of TransferredToAccounting (section 10.2) ==================================

    def update_invoice(self, key: str, body: Any) -> dict[str, Any]:
        body = _object_body(body)
        with self._lock:
            self._advance()
            row = self._row("Invoice", key, RESOURCE_INVOICE)
            changes = {}
            if "transferredToAccounting" in body:
                value = body["transferredToAccounting"]
                if value not in TRANSFERRED_ACTIONS:
                    raise invalid(
                        f"transferredToAccounting must be one of {', '.join(TRANSFERRED_ACTIONS)}",
                        resource=RESOURCE_INVOICE,
                    )
                if row["Status"] != "Posted":
                    raise rule(
                        "transferredToAccounting can only be updated on Posted invoices",
                        resource=RESOURCE_INVOICE,
                    )
                changes["TransferredToAccounting"] = value
            self._touch(OBJECTS["Invoice"], row, changes)
            return {
                "id": row["Id"],
                "invoiceNumber": row["InvoiceNumber"],
                "accountId": row["AccountId"],
                "amount": number_json(row["Amount"]),
                "balance": number_json(row["Balance"]),
                "status": row["Status"],
                "transferredToAccounting": row["TransferredToAccounting"],
                "success": True,
            }

    def update_memo(self, kind: str, key: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/credit-memos/{key}`` or ``/v1/debit-memos/{key}``: top-level transferredToAccounting."""
        resource = RESOURCE_CREDIT_MEMO if kind == "CreditMemo" else RESOURCE_DEBIT_MEMO
        body = _object_body(body)
        with self._lock:
            self._advance()
            row = self._row(kind, key, resource)
            changes: dict[str, Any] = {}
            if "transferredToAccounting" in body:
                value = body["transferredToAccounting"]
                if value not in TRANSFERRED_REST:
                    raise invalid(
                        f"transferredToAccounting must be one of {', '.join(TRANSFERRED_REST)}",
                        resource=resource,
                    )
                changes["TransferredToAccounting"] = value
            for field_name, api_name in (("comment", "Comments"), ("reasonCode", "ReasonCode")):
                if isinstance(body.get(field_name), str):
                    changes[api_name] = body[field_name]
            self._touch(OBJECTS[kind], row, changes)
            return self._memo_v1(kind, row)

    def update_memos(self, kind: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/credit-memos/bulk`` or ``/v1/debit-memos/bulk`` (``{"memos": [{"id", ...}]}``): up
        to 50 memos, each updated on its own (one failing does not stop the others); one result per
        memo, in order (``BulkCreditMemosResponse``/``BulkDebitMemosResponse``)."""
        resource = RESOURCE_CREDIT_MEMO if kind == "CreditMemo" else RESOURCE_DEBIT_MEMO
        body = _object_body(body)
        items = body.get("memos")
        if not isinstance(items, list) or not items:
            raise invalid("memos must be a non-empty array", resource=resource)
        if len(items) > MAX_BULK_MEMOS:
            raise invalid(f"at most {MAX_BULK_MEMOS} memos can be updated in one request", resource=resource)
        results: list[dict[str, Any]] = []
        for item in items:
            key = item.get("id") if isinstance(item, dict) else None
            try:
                if not isinstance(key, str) or not key:
                    raise invalid("id is required for each memo", resource=resource)
                changes = {k: v for k, v in item.items() if k != "id"}
                results.append({**self.update_memo(kind, key, changes), "success": True})
            except ZuoraError as exc:
                results.append(
                    {
                        "id": key,
                        "success": False,
                        "processId": secrets.token_hex(8).upper(),
                        "reasons": [{"code": str(exc.code), "message": exc.message}],
                    }
                )
        return {"memos": results, "success": True}

    def update_debit_memo_due_dates(self, body: Any) -> dict[str, Any]:
        """``PUT /v1/debit-memos`` is Zuora's "update due dates of debit memos"
        (``{"debitMemos": [{"id" | "memoKey", "dueDate"}]}``): answered ``{"success": true}`` without a
        per-memo list. Fields other than those are not part of the operation and change nothing."""
        body = _object_body(body)
        items = body.get("debitMemos")
        if not isinstance(items, list) or not items:
            raise invalid("debitMemos must be a non-empty array", resource=RESOURCE_DEBIT_MEMO)
        with self._lock:
            self._advance()
            for item in items:
                key = item.get("id") or item.get("memoKey") if isinstance(item, dict) else None
                if not isinstance(key, str) or not key:
                    raise invalid("each debit memo needs id or memoKey", resource=RESOURCE_DEBIT_MEMO)
                row = self._row("DebitMemo", key, RESOURCE_DEBIT_MEMO)
                due = item.get("dueDate")
                if due is not None:
                    try:
                        due_date = date.fromisoformat(str(due))
                    except ValueError:
                        raise invalid(
                            f"dueDate {due!r} is not a date", resource=RESOURCE_DEBIT_MEMO
                        ) from None
                    self._touch(OBJECTS["DebitMemo"], row, {"DueDate": due_date})
        return {"success": True}

    def update_payment_or_refund(self, kind: str, row_id: str, body: Any) -> dict[str, Any]:
        """``PUT /v1/payments/{id}`` / ``/v1/refunds/{id}``: nested financeInformation."""
        resource = RESOURCE_PAYMENT if kind == "Payment" else RESOURCE_REFUND
        body = _object_body(body)
        with self._lock:
            self._advance()
            row = self._tables[kind].rows.get(row_id)
            if row is None:
                raise not_found(f"{kind.lower()} {row_id} does not exist", resource=resource)
            changes: dict[str, Any] = {}
            finance = body.get("financeInformation")
            if finance is not None:
                if not isinstance(finance, dict):
                    raise invalid("financeInformation must be an object", resource=resource)
                if "transferredToAccounting" in finance:
                    value = finance["transferredToAccounting"]
                    if value not in TRANSFERRED_REST:
                        raise invalid(
                            f"transferredToAccounting must be one of {', '.join(TRANSFERRED_REST)}",
                            resource=resource,
                        )
                    changes["TransferredToAccounting"] = value
            if isinstance(body.get("comment"), str):
                changes["Comment"] = body["comment"]
            self._touch(OBJECTS[kind], row, changes)
            number_field = "PaymentNumber" if kind == "Payment" else "RefundNumber"
            return {
                "id": row["Id"],
                "number": row[number_field],
                "accountId": row["AccountId"],
                "amount": number_json(row["Amount"]),
                "status": row["Status"],
                "type": row["Type"],
                "financeInformation": {"transferredToAccounting": row["TransferredToAccounting"]},
                "success": True,
            }

    def _memo_v1(self, kind: str, row: dict[str, Any]) -> dict[str, Any]:
        """A memo as ``CreditMemoResponse`` / ``DebitMemoResponse`` (a credit memo's open amount is
        ``unappliedAmount``, a debit memo's ``balance``)."""
        open_amount = "unappliedAmount" if kind == "CreditMemo" else "balance"
        return {
            "id": row["Id"],
            "number": row["MemoNumber"],
            "accountId": row["AccountId"],
            "amount": number_json(row["TotalAmount"]),
            open_amount: number_json(row["Balance"]),
            "status": row["Status"],
            "transferredToAccounting": row["TransferredToAccounting"],
            "success": True,
        }

    def _row(self, kind: str, key: str, resource: int) -> dict[str, Any]:
        row = self._tables[kind].get(key)
        if row is None:
            raise not_found(f"{kind} {key} does not exist", resource=resource)
        return row

    # == Object Query (section 9) ================================================================

    def object_query(self, path: str, query: ObjectQuery) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ``/object-query/{path}`` and the next cursor (None on the last page)."""
        endpoint = ENDPOINTS[path]
        obj = endpoint.obj
        with self._lock:
            self._advance()
            zone = self.zone
            table = self._tables[obj.name]
            narrowed: list[dict[str, Any]] | None = None
            for flt in query.filters:
                # An EQ on an indexed id narrows the scan (invoice-items?filter[]=invoiceid.EQ:...).
                if flt.op == "EQ" and flt.kind is Kind.ID and table.indexed(flt.field) and flt.value:
                    narrowed = table.where(flt.field, flt.value) or table.where(
                        flt.field, str(flt.value).lower()
                    )
                    break

            def accept(row: dict[str, Any]) -> bool:
                return all(f.test(row) for f in query.filters)

            if narrowed is not None:
                page, more = keyset_page(
                    (r for r in narrowed if accept(r)),
                    query.sort_key,
                    descending=query.descending,
                    after=query.after,
                    page_size=query.page_size,
                )
            else:
                keys, ordered = table.ordered(query.sort_field, query.sort_key)
                page, more = keyset_scan(
                    keys,
                    ordered,
                    descending=query.descending,
                    after=query.after,
                    page_size=query.page_size,
                    accept=accept,
                )
            data = [render(row, obj, query, self._resolve, zone) for row in page]
            cursor = next_cursor(query, page[-1], zone) if more and page else None
        return data, cursor

    def object_query_by_key(self, path: str, key: str, query: ObjectQuery) -> dict[str, Any]:
        endpoint = ENDPOINTS[path]
        with self._lock:
            self._advance()
            row = self._tables[endpoint.obj.name].get(key)
            if row is None:
                raise ZuoraError(40, f"{endpoint.obj.name} {key} not found")
            return render(row, endpoint.obj, query, self._resolve, self.zone)

    def _resolve(
        self, relation: Relation, record: dict[str, Any]
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
        table = self._tables[relation.target]
        if relation.kind == "one":
            ref = record.get(relation.local)
            return table.rows.get(ref) if ref else None
        return table.where(relation.remote, record["Id"])

    # == Accounting codes ===========================================================================

    def list_accounting_codes(self, page: int, page_size: int) -> tuple[list[dict[str, Any]], bool]:
        """``GET /v1/accounting-codes``: the chart of accounting codes (zuora-sdk
        ``AccountingCodeItemResponse``), by name."""
        limit = self.config.list_max_page_size
        if page < 1 or not 1 <= page_size <= limit:
            raise invalid(f"page must be >= 1 and pageSize 1..{limit}", resource=RESOURCE_ACCOUNTING_CODE)
        with self._lock:
            self._advance()
        codes = sorted(ACCOUNTING_CODES.values(), key=lambda c: c.name)
        chosen, more = page_slice(codes, page, page_size)
        return [
            {
                "id": code.id,
                "name": code.name,
                "type": code.type,
                "category": code.category,
                "status": "Active",
                "glAccountNumber": code.gl_account_number,
                "glAccountName": code.gl_account_name,
                "notes": "",
                "createdBy": SANDBOX_USER,
                "createdOn": "2023-01-01 00:00:00",
                "updatedBy": SANDBOX_USER,
                "updatedOn": "2023-01-01 00:00:00",
            }
            for code in chosen
        ], more

    # == Accounting periods (section 6) ==========================================================

    def list_periods(self, page: int, page_size: int) -> tuple[list[dict[str, Any]], bool]:
        limit = self.config.list_max_page_size
        if page < 1 or not 1 <= page_size <= limit:
            raise invalid(f"page must be >= 1 and pageSize 1..{limit}", resource=RESOURCE_PERIOD)
        with self._lock:
            self._advance()
            ordered = sorted(self._tables["AccountingPeriod"], key=lambda p: p["StartDate"])
            chosen, more = page_slice(ordered, page, page_size)
            return [self._render_period(p, listed=True) for p in chosen], more

    def get_period(self, period_id: str, *, poll: bool = True) -> dict[str, Any]:
        """The period with its trial-balance fields; a read counts as a poll of a running TB."""
        with self._lock:
            period = self._period(period_id)
            job = self._periods[period_id].job
            if poll and job is not None:
                job.poll()
            self._advance()
            return {**self._render_period(period), "success": True}

    def run_trial_balance(self, period_id: str) -> None:
        with self._lock:
            self._advance()
            period = self._period(period_id)
            if period["Status"] != "Open":
                raise rule(
                    f"Trial balance can only be run for an open accounting period; "
                    f"{period['Name']} is {period['Status']}.",
                    resource=RESOURCE_PERIOD,
                )
            self._require_no_trial_balance(period)
            self._start_trial_balance(period)

    def pending_close(self, period_id: str) -> None:
        with self._lock:
            self._advance()
            period = self._period(period_id)
            if period["Status"] in ("Closed", "PendingClose"):
                raise rule(
                    f"Accounting period {period['Name']} is already {period['Status']}.",
                    resource=RESOURCE_PERIOD,
                )
            self._require_no_trial_balance(period)
            self._require_earlier_closed(period)
            self._set_period_status(period, "PendingClose")
            self._start_trial_balance(period)

    def close_period(self, period_id: str) -> None:
        with self._lock:
            self._advance()
            period = self._period(period_id)
            if period["Status"] == "Closed":
                raise rule(f"Accounting period {period['Name']} is already closed.", resource=RESOURCE_PERIOD)
            self._require_no_trial_balance(period)
            self._require_earlier_closed(period)
            self._set_period_status(period, "Closed")
            self._start_trial_balance(period)

    def reopen_period(self, period_id: str) -> None:
        with self._lock:
            self._advance()
            period = self._period(period_id)
            if period["Status"] not in ("Closed", "PendingClose"):
                raise rule(f"Accounting period {period['Name']} is not closed.", resource=RESOURCE_PERIOD)
            self._require_no_trial_balance(period)
            following = [p for p in self._tables["AccountingPeriod"] if p["StartDate"] > period["StartDate"]]
            successor = min(following, key=lambda p: p["StartDate"], default=None)
            # Only the period right before an open one may reopen; after the last defined period
            # comes Zuora's open-ended period, which is always open (section 6.2).
            if successor is not None and successor["Status"] != "Open":
                raise rule(
                    f"Only the accounting period immediately before an open period can be reopened; "
                    f"{successor['Name']} is {successor['Status']}.",
                    resource=RESOURCE_PERIOD,
                )
            self._set_period_status(period, "Open")

    def _period(self, period_id: str) -> dict[str, Any]:
        period = self._tables["AccountingPeriod"].rows.get(period_id)
        if period is None:
            raise not_found(f"Accounting period {period_id} does not exist.", resource=RESOURCE_PERIOD)
        return period

    def _require_no_trial_balance(self, period: dict[str, Any]) -> None:
        state = self._periods[period["Id"]]
        if state.job is not None:
            raise rule(f"A trial balance is already running for {period['Name']}.", resource=RESOURCE_PERIOD)

    def _require_earlier_closed(self, period: dict[str, Any]) -> None:
        earlier = [
            p
            for p in self._tables["AccountingPeriod"]
            if p["StartDate"] < period["StartDate"] and p["Status"] != "Closed"
        ]
        if earlier:
            names = ", ".join(p["Name"] for p in sorted(earlier, key=lambda p: p["StartDate"]))
            raise rule(
                f"All earlier accounting periods must be closed first ({names}).", resource=RESOURCE_PERIOD
            )

    def _set_period_status(self, period: dict[str, Any], status: str) -> None:
        self._touch(OBJECTS["AccountingPeriod"], period, {"Status": status})

    def _start_trial_balance(self, period: dict[str, Any]) -> None:
        state = self._periods[period["Id"]]
        outcome, message = "Completed", None
        if state.fail_message is not None:
            outcome, message = "Error", state.fail_message
            if state.fail_times is not None:
                state.fail_times -= 1
                if state.fail_times <= 0:
                    state.fail_message, state.fail_times = None, None
        state.job = Job(self.now(), self._config.trial_balance, outcome, message)
        state.tb_status, state.tb_start, state.tb_end, state.tb_error = PENDING, None, None, None

    def _render_period(self, period: dict[str, Any], *, listed: bool = False) -> dict[str, Any]:
        """A period as ``GET /v1/accounting-periods/{id}`` gives it (``GetAccountingPeriodResponse``),
        or with ``listed`` as the list gives it (``GetAccountingPeriodWithoutSuccessResponse``):
        zuora-sdk types the two differently (fiscalYear a number / a string, fiscalQuarter /
        fiscal_quarter); the client reads both (docs/vendor-notes.md)."""
        state = self._periods[period["Id"]]
        zone = self.zone
        status, start, end, error = state.tb_status, state.tb_start, state.tb_end, state.tb_error
        if state.job is not None:
            phase = state.job.phase(self.now())
            status = phase
            start = from_epoch(state.job.processing_at, zone) if state.job.processing_at is not None else None
            end, error = None, None
        file_keys = (
            "unprocessedChargesFileId",
            "accountsReceivableInvoiceAgingDetailExportFileId",
            "accountsReceivableAccountAgingDetailExportFileId",
            "accountsReceivableDebitMemoAgingDetailExportFileId",
            "revenueDetailExcelFileId",
            "revenueDetailCsvFileId",
            "arRollForwardDetailExportFileId",
            "fxRealizedGainAndLossDetailExportFileId",
            "fxUnrealizedGainAndLossDetailExportFileId",
        )
        return {
            "id": period["Id"],
            "name": period["Name"],
            "startDate": period["StartDate"].isoformat(),
            "endDate": period["EndDate"].isoformat(),
            "status": period["Status"],
            "runTrialBalanceStatus": status,
            "runTrialBalanceStart": finance_datetime(start, zone),
            "runTrialBalanceEnd": finance_datetime(end, zone),
            "runTrialBalanceErrorMessage": error,
            "fiscalYear": str(period["FiscalYear"]) if listed else period["FiscalYear"],
            "fiscal_quarter" if listed else "fiscalQuarter": period["FiscalQuarter"],
            "notes": period["Notes"] or "",
            "fileIds": {key: state.file_ids.get(key) for key in file_keys},
            "createdOn": finance_datetime(period["CreatedDate"], zone),
            "createdBy": period["CreatedById"],
            "updatedOn": finance_datetime(period["UpdatedDate"], zone),
            "updatedBy": period["UpdatedById"],
        }

    def _file_ids(self, period_id: str) -> dict[str, str | None]:
        keys = (
            "accountsReceivableInvoiceAgingDetailExportFileId",
            "accountsReceivableAccountAgingDetailExportFileId",
            "revenueDetailExcelFileId",
            "revenueDetailCsvFileId",
            "arRollForwardDetailExportFileId",
        )
        return {key: f"8a80{period_id[4:24]}{index:08x}" for index, key in enumerate(keys)}

    def _period_by_name(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self._tables["AccountingPeriod"] if p["Name"] == name), None)

    # == Journal runs (section 7) ================================================================

    def create_journal_run(self, body: Any) -> dict[str, Any]:
        body = _object_body(body, resource=RESOURCE_JOURNAL_RUN)
        res = RESOURCE_JOURNAL_RUN
        entry_date = _required_date(body, "journalEntryDate", res)
        types = body.get("transactionTypes")
        if not types:
            raise missing("transactionTypes is required", resource=res)
        if not isinstance(types, list) or not all(
            isinstance(t, dict) and isinstance(t.get("type"), str) for t in types
        ):
            raise invalid('transactionTypes must be an array of {"type": "..."}', resource=res)
        names = [t["type"] for t in types]
        with self._lock:
            self._advance()
            for name in names:
                if name not in ALL_TRANSACTION_TYPES:
                    raise invalid(f"Invalid transaction type: {name}", resource=res)
                if name not in self._config.enabled_transaction_types:
                    raise invalid(f"Transaction type {name} is not enabled for this tenant", resource=res)
            start, end, period_name = self._run_target(body)
            number = f"JR-{self._factory.next_number('JournalRun'):08d}"
            run = JournalRun(number, entry_date, start, end, period_name, names, self._now_dt(), None)
            if self._fail_runs:
                run.job = Job(self.now(), self._config.journal_run, "Error", self._fail_runs.popleft())
            else:
                run.job = Job(self.now(), self._config.journal_run)
                run.drafts = draft_entries(
                    self._tables, start, end, types=names, taken=self._taken, config=self._config
                )
                for draft in run.drafts:
                    for line in draft.lines:
                        self._taken[line] = number
            self._runs[number] = run
            return {"journalRunNumber": number, "success": True}

    def _run_target(self, body: dict[str, Any]) -> tuple[date, date, str | None]:
        res = RESOURCE_JOURNAL_RUN
        name = body.get("accountingPeriodName")
        start_text, end_text = body.get("targetStartDate"), body.get("targetEndDate")
        start = _optional_date(body, "targetStartDate", res)
        end = _optional_date(body, "targetEndDate", res)
        if name:
            period = self._period_by_name(str(name))
            if period is None:
                raise invalid(f"Accounting period {name} does not exist", resource=res)
            if start is not None and start != period["StartDate"]:
                raise invalid(
                    "targetStartDate must be empty or equal the accounting period's start date", resource=res
                )
            if end is not None and end != period["EndDate"]:
                raise invalid(
                    "targetEndDate must be empty or equal the accounting period's end date", resource=res
                )
            return period["StartDate"], period["EndDate"], period["Name"]
        if end_text and not start_text:
            raise missing("targetStartDate is required when targetEndDate is given", resource=res)
        if start is None or end is None:
            raise missing(
                "accountingPeriodName, or targetStartDate and targetEndDate, is required", resource=res
            )
        if start > end:
            raise invalid("targetStartDate must not be after targetEndDate", resource=res)
        return start, end, None

    def get_journal_run(self, number: str, *, poll: bool = True) -> dict[str, Any]:
        with self._lock:
            run = self._run(number)
            if poll and run.job is not None:
                run.job.poll()
            self._advance()
            run = self._run(number)  # a finished delete removes it
            return self._render_run(run)

    def cancel_journal_run(self, number: str) -> None:
        with self._lock:
            self._advance()
            run = self._run(number)
            status = self._run_status(run)
            if status not in ("Pending", "Error", "Completed"):
                raise rule(
                    f"Journal run {number} cannot be cancelled while {status}.", resource=RESOURCE_JOURNAL_RUN
                )
            if run.job is not None:  # still Pending: the run never books anything
                self._release_run_lines(run)
                run.drafts = []
            run.action = "cancel"
            run.job = Job(self.now(), self._config.journal_run)

    def delete_journal_run(self, number: str) -> None:
        with self._lock:
            self._advance()
            run = self._run(number)
            status = self._run_status(run)
            if status != "Cancelled":
                raise rule(
                    f"Only a cancelled journal run can be deleted; {number} is {status}.",
                    resource=RESOURCE_JOURNAL_RUN,
                )
            run.action = "delete"
            run.job = Job(self.now(), self._config.journal_run)

    def _run(self, number: str) -> JournalRun:
        run = self._runs.get(number)
        if run is None:
            raise not_found(f"Journal run {number} does not exist.", resource=RESOURCE_JOURNAL_RUN)
        return run

    def _run_status(self, run: JournalRun) -> str:
        if run.job is None:
            return run.status
        phase = run.job.phase(self.now())
        if run.action == "cancel":
            return "CancelInprogress"
        if run.action == "delete":
            return "DeleteInprogress"
        return phase if phase != DONE else run.job.outcome

    def _render_run(self, run: JournalRun) -> dict[str, Any]:
        return {
            "number": run.number,
            "status": self._run_status(run),
            "executedOn": finance_datetime(run.executed_at, self.zone),
            "journalEntryDate": run.journal_entry_date.isoformat(),
            "targetStartDate": run.start.isoformat(),
            "targetEndDate": run.end.isoformat(),
            "segmentationRuleName": self._config.segmentation_rule_name,
            "aggregateCurrency": False,
            "totalJournalEntryCount": len(run.entry_numbers),
            "transactionTypes": [{"type": t} for t in run.transaction_types],
            "success": True,
        }

    def _release_run_lines(self, run: JournalRun) -> None:
        for draft in run.drafts:
            for line in draft.lines:
                if self._taken.get(line) == run.number:
                    del self._taken[line]

    def _finish_run(self, run: JournalRun, job: Job) -> None:
        run.job = None
        if run.action is None:
            run.status = job.outcome
            run.error_message = job.message
            if job.outcome == "Completed":
                self._book(run)
            else:
                self._release_run_lines(run)
            run.drafts = []
            self._emit("completed", "JournalRun", run.number, run.number, 3110, status=run.status)
        elif run.action == "cancel":
            run.action = None
            survivors = 0
            for number in run.entry_numbers:
                entry = self._entries[number]
                if entry.status == "Cancelled":
                    continue
                if entry.transferred in ("Yes", "Processing"):
                    survivors += 1  # a transferred entry blocks its cancellation (section 7.3)
                else:
                    self._cancel_entry(entry)
            run.status = "Completed" if survivors else "Cancelled"
        else:
            for number in run.entry_numbers:
                self._entries.pop(number, None)
            del self._runs[run.number]

    def _book(self, run: JournalRun) -> None:
        zone = self.zone
        for draft in run.drafts:
            number = f"JE-{self._factory.next_number('JournalEntry'):08d}"
            items = [
                {
                    "accountingCodeName": i.code.name,
                    "accountingCodeType": i.code.type,
                    "glAccountName": i.code.gl_account_name or None,
                    "glAccountNumber": i.code.gl_account_number or None,
                    "type": i.type,
                    "amount": i.amount,
                    "homeCurrencyAmount": i.home_amount,
                }
                for i in draft.items
            ]
            self._entries[number] = JournalEntry(
                number,
                run.number,
                run.journal_entry_date,
                run.period_name or "",
                run.start,
                run.end,
                draft.currency,
                self._config.home_currency,
                draft.transaction_type,
                list(draft.segments),
                items,
                list(draft.lines),
                created_at=from_epoch(self.now(), zone),
            )
            run.entry_numbers.append(number)
            for line in draft.lines:
                self._taken[line] = number
                ttype, row_id = line
                if ttype in ("Invoice Item", "Credit Memo Item (Charge)", "Debit Memo Item (Charge)"):
                    table = {
                        "Invoice Item": "InvoiceItem",
                        "Credit Memo Item (Charge)": "CreditMemoItem",
                        "Debit Memo Item (Charge)": "DebitMemoItem",
                    }[ttype]
                    row = self._tables[table].rows.get(row_id)
                    if row is not None:
                        row["JournalEntryId"] = number

    # == Summary journal entries (section 8) =====================================================

    def list_journal_entries(
        self, run_number: str, page: int, page_size: int
    ) -> tuple[list[dict[str, Any]], bool]:
        limit = self.config.list_max_page_size
        if page < 1 or not 1 <= page_size <= limit:
            raise invalid(f"page must be >= 1 and pageSize 1..{limit}", resource=RESOURCE_JOURNAL_ENTRY)
        with self._lock:
            self._advance()
            run = self._run(run_number)
            entries = [self._entries[n] for n in run.entry_numbers if n in self._entries]
            chosen, more = page_slice(entries, page, page_size)
            return [self._render_entry(e) for e in chosen], more

    def get_journal_entry(self, number: str) -> dict[str, Any]:
        with self._lock:
            self._advance()
            return {**self._render_entry(self._entry(number)), "success": True}

    def update_journal_entry_basic(self, number: str, body: Any) -> None:
        res = RESOURCE_JOURNAL_ENTRY
        body = _object_body(body, resource=res)
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
        body = _object_body(body, resource=res)
        entry_date = _required_date(body, "journalEntryDate", res)
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

    # == asynchronous jobs =======================================================================

    def _advance(self) -> None:
        """Finish every job whose time has come (lazily, at the start of each operation)."""
        now = self.now()
        for period_id, state in self._periods.items():
            job = state.job
            if job is not None and job.phase(now) == DONE:
                state.job = None
                state.tb_status = job.outcome
                state.tb_start = from_epoch(
                    job.processing_at if job.processing_at is not None else now, self.zone
                )
                if job.outcome == "Completed":
                    state.tb_end = from_epoch(job.done_at if job.done_at is not None else now, self.zone)
                    state.file_ids = self._file_ids(period_id)
                    state.tb_error = None
                else:
                    state.tb_end = None
                    period = self._tables["AccountingPeriod"].rows[period_id]
                    state.tb_error = job.message or DEFAULT_TB_ERROR.format(
                        day=period["EndDate"].strftime("%m/%d/%Y")
                    )
                self._emit(
                    "completed", "AccountingPeriod", period_id, None, 3210, trialBalanceStatus=job.outcome
                )
        for run in list(self._runs.values()):
            job = run.job
            if job is not None and job.phase(now) == DONE:
                self._finish_run(run, job)

    # == control plane ===========================================================================

    def fail_trial_balance(
        self, period_id: str, message: str | None = None, times: int | None = None
    ) -> None:
        """Make the period's next trial balance(s) end in Error (``times`` None = until cleared)."""
        with self._lock:
            period = self._period(period_id)
            state = self._periods[period_id]
            state.fail_message = message or DEFAULT_TB_ERROR.format(
                day=period["EndDate"].strftime("%m/%d/%Y")
            )
            state.fail_times = times

    def clear_trial_balance_failure(self, period_id: str) -> None:
        with self._lock:
            self._period(period_id)
            state = self._periods[period_id]
            state.fail_message, state.fail_times = None, None

    def fail_next_journal_runs(self, count: int = 1, message: str | None = None) -> None:
        """The next ``count`` journal runs end in Error and book nothing."""
        with self._lock:
            self._fail_runs.extend([message or DEFAULT_JR_ERROR] * count)

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

    def _plain(self, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = plain(dict(row), self.zone)
        return out

    def counts(self) -> dict[str, int]:
        with self._lock:
            counts = {name: len(t) for name, t in self._tables.items()}
            counts.update(
                JournalRun=len(self._runs), JournalEntry=len(self._entries), Token=len(self._tokens)
            )
            return counts


class _Adder:
    """Builds one control-plane record with defaults and keeps parents' totals consistent."""

    def __init__(self, backend: ZuoraBackend, obj: ObjectType) -> None:
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


def _zoql_response(rows: list[dict[str, Any]], locator: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"records": rows, "size": len(rows), "done": locator is None}
    if locator is not None:
        body["queryLocator"] = locator
    return body


def _row_error(code_name: str, message: str) -> dict[str, Any]:
    return {"Success": False, "Errors": [{"Code": code_name, "Message": message}]}


def _object_body(body: Any, *, resource: int = 500000) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ZuoraError(90, "The request body must be a JSON object.", resource=resource)
    return body


def _required_date(body: dict[str, Any], name: str, resource: int) -> date:
    if not body.get(name):
        raise missing(f"{name} is required", resource=resource)
    parsed = _optional_date(body, name, resource)
    assert parsed is not None
    return parsed


def _optional_date(body: dict[str, Any], name: str, resource: int) -> date | None:
    value = body.get(name)
    if value in (None, ""):
        return None
    try:
        return parse_date(value)
    except ValueError as exc:
        raise invalid(f"{name}: {exc}", resource=resource) from exc
