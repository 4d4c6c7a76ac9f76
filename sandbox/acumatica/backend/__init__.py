"""``AcumaticaBackend``: the instance's state and one method per real operation (moto's ``models.py``).

The backend knows nothing about HTTP beyond raising ``ApiFailure``s whose status and body are the
real server's (acumatica-api.md); the handlers parse and render, the backend decides. The class is
composed of one class per area, each in its own module, each deriving from ``state.InstanceState``
(the tables, how records are stored and found, and what one area asks of another):

- ``auth``: sessions and OAuth; ``crud``: GET/PUT/DELETE of records and ``$adHocSchema``;
- ``validation``: field copying and the checks behind a 422, shared by ``receivables`` (customers,
  invoices, payments) and ``ledger`` (GL batches and the reference entities), the entity writers;
- ``actions``: the release actions and their status polls;
- ``reference``: seeding reference data and customers; ``control``: the clock, state views and
  period status for the control plane; ``counters``: licence accounting.

This module holds the class itself: its tables, lock and clock (``__init__``, ``_clear``),
``reset``, and ``_write``, which picks the entity's writer (``WRITERS``).

Document behaviour follows section 6: PUT with ``Hold=false`` gives Balanced (documents start On
Hold when ``hold_on_entry``), a release action gives Open (invoices), Open/Closed (payments, by
unapplied balance) or Posted/Unposted (GL batches), applications reduce invoice balances and
close them at zero. Validation failures are 422 records with field errors (section 3.3).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sandbox.acumatica.config import SandboxConfig
from sandbox.acumatica.entities import ENTITIES
from sandbox.acumatica.faults import FaultPlan
from sandbox.acumatica.licence import Licence
from sandbox.acumatica.records import Row

from .actions import Actions
from .auth import Auth
from .control import Control
from .counters import Counters
from .crud import Crud
from .ledger import Ledger
from .receivables import Receivables
from .reference import Reference
from .state import (
    AccessToken,
    Grant,
    Operation,
    PutResult,
    QueryOptions,
    RequestContext,
    Session,
    Write,
    normalize_period,
)


class AcumaticaBackend(Auth, Crud, Receivables, Ledger, Actions, Reference, Control, Counters):
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

    def reset(self, *, seed: bool = True) -> None:
        """Forget every record, session, operation, fault and counter (the config stays)."""
        with self._lock:
            self._clear()
            self.faults.clear()
            self.licence.reset_counts()
            if seed:
                self.seed_defaults()

    def _write(self, w: Write) -> None:
        WRITERS[w.spec.name](self, w)


Writer = Callable[[AcumaticaBackend, Write], None]
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


__all__ = [
    "AcumaticaBackend",
    "Operation",
    "PutResult",
    "QueryOptions",
    "RequestContext",
    "Session",
    "normalize_period",
]
