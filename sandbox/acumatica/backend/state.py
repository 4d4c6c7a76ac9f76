"""The instance's state as every area sees it: the tables and how records are stored and found.

``InstanceState`` declares what ``AcumaticaBackend`` (the package) holds - the tables with their
key index and key order, sessions and OAuth grants, long-running operations, reference lists,
counters, the licence, the fault plan, one re-entrant lock and the clock - and the storage helpers
every area uses: save and remove a row, find one by key, id or ``$filter``, list a table in key
order, number a new document, shape a response (``$select``/``$expand``/``$custom``). The few
methods one area asks of another are declared abstract here. Each area class (``auth``, ``crud``,
``validation``, ``receivables``, ``ledger``, ``actions``, ``reference``, ``control``,
``counters``) derives from it (the writers and actions through ``validation``).

The module also holds the records the areas pass around: sessions, grants, tokens, operations,
a request's context and query options, a PUT being applied.
"""

from __future__ import annotations

import bisect
import threading
import uuid
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.acumatica.config import SandboxConfig
from sandbox.acumatica.entities import CREATABLE_PAYMENT_TYPES, ENTITIES, EntitySpec, FieldSpec, label_to_code
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
from sandbox.acumatica.records import Parsed, Problems, RenderContext, Row

ZERO = Decimal("0")


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
class Shape:
    filter: Filter | None
    render: RenderContext
    top: int | None
    skip: int | None


@dataclass
class PutResult:
    record: dict[str, Any]
    created: bool


@dataclass
class Write:
    """One PUT being applied: the entity, the candidate row, what was sent, where problems go."""

    spec: EntitySpec
    row: Row
    parsed: Parsed
    problems: Problems
    ctx: RequestContext
    created: bool


@dataclass
class Touched:
    """Which fields a request sent, per object (by row id): drives recomputation of line amounts."""

    fields: dict[str, set[str]] = field(default_factory=dict)

    def sent(self, row_id: str) -> set[str]:
        return self.fields.get(row_id, set())


def money(value: Decimal, places: int = 2) -> Decimal:
    """``value`` rounded half-up to ``places`` decimals."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def period_text(period: str) -> str:
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


class InstanceState(ABC):
    """The state of one sandboxed instance; ``AcumaticaBackend.__init__`` and ``_clear`` create it."""

    config: SandboxConfig
    licence: Licence
    faults: FaultPlan
    _clock: Callable[[], float]
    _offset: float
    _lock: threading.RLock
    tables: dict[str, dict[str, Row]]  # table -> row id -> row
    _index: dict[str, dict[tuple[Any, ...], str]]  # table -> key -> row id
    _order: dict[str, list[tuple[tuple[str, ...], str]]]  # table -> (sort key, row id), kept sorted
    sessions: dict[str, Session]
    grants: dict[str, Grant]
    access_tokens: dict[str, AccessToken]
    refresh_tokens: dict[str, str]
    operations: dict[str, Operation]
    sequences: Counter[str]
    branches: dict[str, dict[str, Any]]
    customer_classes: dict[str, dict[str, str]]
    payment_methods: dict[str, dict[str, Any]]
    terms: dict[str, int]
    events: Counter[str]
    calls: Counter[str]

    def now(self) -> float:
        """Wall-clock seconds as the sandbox sees them (``advance_clock`` moves it forward)."""
        return self._clock() + self._offset

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

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

    def _shape(self, spec: EntitySpec, options: QueryOptions, *, listing: bool) -> Shape:
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
        return Shape(flt, render, top, skip)

    # -- what one area asks of another ---------------------------------------------------------

    @abstractmethod
    def _advance_operations(self) -> None:
        """Run every long-running action whose ``action_seconds`` have passed (actions)."""

    @abstractmethod
    def _purge_sessions(self) -> None:
        """Forget sessions that are idle too long or whose token expired (auth)."""

    @abstractmethod
    def _write(self, w: Write) -> None:
        """Apply and check a PUT with the writer of ``w.spec`` (receivables, ledger)."""


def _sortable(key: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if part is None else str(part) for part in key)


def _parse_business_date(text: str) -> date | None:
    """``PX-CbApiBusinessDate`` accepts any reasonable date format (section 2.1)."""
    for fmt in ("%Y/%m/%d", "%Y-%m-%d", "%m/%d/%Y", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text.strip()[:19], fmt).date()
        except ValueError:
            continue
    return None
