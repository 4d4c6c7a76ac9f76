"""The tenant's state as every API area sees it, and the helpers the areas share.

``TenantState`` declares what ``ZuoraBackend`` (the package) holds - the tables, the finance
records, the tokens, the event feed, one re-entrant lock and the clock - and the few methods one
area asks of another (declared abstract here, defined in the area that owns them). Each area class
(``auth``, ``actions``, ``transfers``, ``object_query``, ``periods``, ``journal_runs``,
``journal_entries``, ``records``, ``control``) derives from it and only from it.

Every public method of an area takes the lock, advances the asynchronous jobs to "now"
(``_advance``) and returns plain data (copies, never live rows).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from sandbox.zuora.config import SandboxConfig
from sandbox.zuora.errors import ZuoraError, invalid, missing
from sandbox.zuora.formats import from_epoch, parse_date, tenant_zone
from sandbox.zuora.gateway import Gateway
from sandbox.zuora.jobs import PENDING, Job
from sandbox.zuora.journal import LineKey
from sandbox.zuora.paging import QueryLocators
from sandbox.zuora.schema import ObjectType, plain
from sandbox.zuora.seed import SANDBOX_USER, Factory, Sizes
from sandbox.zuora.tables import Table

# The values transferredToAccounting may be set to, through Actions and through REST (section 10.2).
TRANSFERRED_ACTIONS = ("Processing", "Yes", "Error", "Ignore")  # SOAP/Actions values (section 10.2)
TRANSFERRED_REST = ("Processing", "Yes", "No", "Error", "Ignore")


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


class TenantState(ABC):
    """The state of one sandbox tenant; ``ZuoraBackend.__init__`` and ``_reset_data`` create it."""

    client_id: str
    client_secret: str
    gateway: Gateway
    seed_info: dict[str, Any] | None
    _lock: threading.RLock
    _config: SandboxConfig
    _clock: Callable[[], float]
    _offset: float
    _startup_seed: tuple[int, Sizes] | None
    _listeners: list[Callable[[SandboxEvent], None]]
    _events: deque[SandboxEvent]
    _event_seq: int
    _tokens: dict[str, float]  # bearer token -> expiry (epoch seconds)
    _sequences: dict[str, int]
    _tables: dict[str, Table]
    _periods: dict[str, PeriodState]
    _runs: dict[str, JournalRun]
    _entries: dict[str, JournalEntry]
    _taken: dict[LineKey, str]  # a transaction line -> the run or entry that booked it
    _locators: QueryLocators
    _fail_runs: deque[str]
    _factory: Factory

    @property
    def config(self) -> SandboxConfig:
        return self._config

    @property
    def zone(self) -> timezone:
        return tenant_zone(self._config.tenant_utc_offset_minutes)

    def now(self) -> float:
        """Seconds since the epoch on the sandbox clock (the real clock plus any advance)."""
        return self._clock() + self._offset

    def _now_dt(self) -> datetime:
        return from_epoch(self.now(), self.zone)

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

    def _plain(self, row: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = plain(dict(row), self.zone)
        return out

    # -- what one area asks of another ---------------------------------------------------------

    @abstractmethod
    def _advance(self) -> None:
        """Finish every asynchronous job whose time has come (called at the start of each operation)."""

    @abstractmethod
    def _row(self, kind: str, key: str, resource: int) -> dict[str, Any]:
        """The ``kind`` row with id or number ``key``, or the API's 404 for ``resource`` (transfers)."""

    @abstractmethod
    def _period_by_name(self, name: str) -> dict[str, Any] | None:
        """The accounting period row named ``name`` (periods)."""

    @abstractmethod
    def _render_period(self, period: dict[str, Any], *, listed: bool = False) -> dict[str, Any]:
        """A period as the API gives it (periods)."""

    @abstractmethod
    def _run(self, number: str) -> JournalRun:
        """The journal run ``number``, or the API's 404 (journal_runs)."""

    @abstractmethod
    def _render_run(self, run: JournalRun) -> dict[str, Any]:
        """A journal run as the API gives it (journal_runs)."""

    @abstractmethod
    def _entry(self, number: str) -> JournalEntry:
        """The journal entry ``number``, or the API's 404 (journal_entries)."""

    @abstractmethod
    def _render_entry(self, entry: JournalEntry) -> dict[str, Any]:
        """A journal entry as the API gives it (journal_entries)."""

    @abstractmethod
    def _cancel_entry(self, entry: JournalEntry) -> None:
        """Cancel ``entry`` and free its transaction lines for a later run (journal_entries)."""


def object_body(body: Any, *, resource: int = 500000) -> dict[str, Any]:
    """A request's JSON body as an object ({} when empty); anything else is category 90."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ZuoraError(90, "The request body must be a JSON object.", resource=resource)
    return body


def required_date(body: dict[str, Any], name: str, resource: int) -> date:
    """``body[name]`` as a date; absent or empty raises ``missing``, unparseable ``invalid``."""
    if not body.get(name):
        raise missing(f"{name} is required", resource=resource)
    parsed = optional_date(body, name, resource)
    assert parsed is not None
    return parsed


def optional_date(body: dict[str, Any], name: str, resource: int) -> date | None:
    """``body[name]`` as a date, None when absent or empty; unparseable is ``invalid``."""
    value = body.get(name)
    if value in (None, ""):
        return None
    try:
        return parse_date(value)
    except ValueError as exc:
        raise invalid(f"{name}: {exc}", resource=resource) from exc
