"""The ledger transitions the post and mark steps may commit after the fact, in groups."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from shared.ledger.repo import Ledger

log = logging.getLogger("ledgerbridge.close")

# ``posted`` and ``marked`` are committed for this many entries at a time.
LATE_GROUP = 32

Change = tuple[Callable[[Any], object], Callable[[], None] | None]


class LateTransitions:
    """The transitions a step may commit after the fact, for many entries in one transaction.

    ``posting -> posted`` and ``posted -> marked`` need not be committed before the step goes
    on: a crash before they commit leaves an entry ``posting`` (in doubt: the next try looks it
    up in the ERP and finds it) or ``posted`` (saved as in flight: re-read in Zuora before it is
    marked), both already handled. Committing them in groups of ``size`` spares the ledger a
    transaction (and, on SQLite, a turn at the write lock) per entry. Only ``pending -> posting``
    must commit before the ERP call, and does so on its own."""

    def __init__(self, ledger: Ledger, size: int = LATE_GROUP) -> None:
        self.ledger = ledger
        self.size = max(1, size)
        self._lock = threading.Lock()
        self._changes: list[Change] = []

    def add(self, change: Callable[[Any], object], then: Callable[[], None] | None = None) -> None:
        """Queue ``change(session)``; the caller whose change fills a group commits the group.
        ``then()`` runs once the change is committed (never when its group fails)."""
        with self._lock:
            self._changes.append((change, then))
            if len(self._changes) < self.size:
                return
            group, self._changes = self._changes, []
        self._commit(group)

    def flush(self) -> None:
        """Commit whatever is queued (call before the step reads the rows or returns)."""
        with self._lock:
            group, self._changes = self._changes, []
        self._commit(group)

    def flush_quietly(self) -> None:
        """:meth:`flush` while another error is on its way out: a failure here is logged, and the
        rows it leaves behind are the in-doubt or in-flight ones the next try handles."""
        try:
            self.flush()
        except Exception:
            log.exception("could not commit the entries' last transitions; the next try looks them up")

    def _commit(self, group: Sequence[Change]) -> None:
        if not group:
            return
        with self.ledger.session() as session:
            for change, _ in group:
                change(session)
        for _, then in group:
            if then is not None:
                then()
