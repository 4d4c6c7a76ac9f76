"""``ZuoraBackend``: the sandbox tenant's state and one method per real Zuora operation.

Moto-style: handlers parse requests and render responses; the backend owns the tables and the
rules. The class is composed of one class per API area, each in its own module and each deriving
from ``state.TenantState`` (which declares the shared state and what one area asks of another):

- ``auth``: OAuth tokens; ``actions``: ZOQL query/queryMore and action/update;
- ``transfers``: the REST transferredToAccounting writes and accounting codes;
- ``object_query``: Object Query pages and keys; ``periods``: accounting periods, trial balances;
- ``journal_runs``: journal runs and the entries they book; ``journal_entries``: entry reads,
  manual entries, marking, cancelling and deleting;
- ``corrections``: reversals, write-offs, applying and unapplying payments and credit memos,
  refunds of payments;
- ``records``: control-plane record creation and state views; ``control``: config, clock, events.

This module holds the class itself: its tables, lock and clock (``__init__``, ``_reset_data``),
reset and seeding, and ``_advance``, which finishes the asynchronous work of periods and journal
runs. Every public method takes the lock (an ``RLock``; the app may be called from several
threads), advances the jobs to "now" and returns plain data (copies, never live rows).

Asynchronous work (trial balances, journal runs, their cancellation) is derived lazily from the
clock or from status polls (``jobs.Job``). ``events`` records every record posted or changed, for
the callout sender (``events_since`` / ``subscribe``).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sandbox.zuora.config import SandboxConfig
from sandbox.zuora.formats import from_epoch
from sandbox.zuora.gateway import Gateway
from sandbox.zuora.journal import LineKey
from sandbox.zuora.paging import QueryLocators
from sandbox.zuora.seed import Factory, Sizes, seed_tables
from sandbox.zuora.tables import Table, new_tables

from .actions import Actions
from .auth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, TENANT_ID, Auth
from .control import Control
from .corrections import Corrections
from .journal_entries import JournalEntries
from .journal_runs import JournalRuns
from .object_query import ObjectQueries
from .periods import Periods
from .records import Records
from .state import JournalEntry, JournalRun, PeriodState, SandboxEvent
from .transfers import Transfers

MAX_EVENTS = 100_000  # the oldest events drop off; sequence numbers keep counting


class ZuoraBackend(
    Auth,
    Actions,
    Transfers,
    Corrections,
    ObjectQueries,
    Periods,
    JournalRuns,
    JournalEntries,
    Records,
    Control,
):
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

    def _advance(self) -> None:
        """Finish every job whose time has come (lazily, at the start of each operation)."""
        now = self.now()
        self._finish_trial_balances(now)
        self._finish_journal_runs(now)


__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "TENANT_ID", "SandboxEvent", "ZuoraBackend"]
