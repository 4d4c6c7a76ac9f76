"""This process's audit hook: exchanges are queued and written in batches.

An API call hands its :class:`~shared.exchange.Exchange` to :class:`AuditWriter` and goes on; a
background thread writes what is queued (the audit rows in one ledger transaction, the API
counters in one Redis pipeline) every ``interval`` seconds, at once when ``max_rows`` are
waiting, and whenever :meth:`AuditWriter.flush` is called: at the end of every task and when the
process exits. So one write serves many exchanges instead of one write each, and an exchange's
row is in the ledger at the latest when the task that made it has finished. A process killed
outright loses the rows of its last ``interval``; the state transitions, written in their own
transactions, do not depend on them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from shared.exchange import Exchange, current_subject
from shared.ledger.models import utcnow
from shared.ledger.repo import Ledger
from shared.metrics import count_exchanges

log = logging.getLogger("ledgerbridge.audit")

FLUSH_INTERVAL = 0.25
MAX_QUEUED = 200


class AuditWriter:
    """An audit hook (call it with an exchange) that writes to ``ledger`` and counts in the Redis
    that ``redis()`` returns, in batches. Thread-safe."""

    def __init__(
        self,
        ledger: Ledger,
        redis: Callable[[], Any],
        *,
        interval: float = FLUSH_INTERVAL,
        max_rows: int = MAX_QUEUED,
    ) -> None:
        self.ledger = ledger
        self.redis = redis
        self.interval = interval
        self.max_rows = max_rows
        self._queued: list[Exchange] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def __call__(self, exchange: Exchange) -> None:
        # The subject and the time are those of the caller now, not of the thread writing later.
        queued = replace(
            exchange, subject=exchange.subject or current_subject.get(), at=exchange.at or utcnow()
        )
        with self._lock:
            self._queued.append(queued)
            full = self._stopped or len(self._queued) >= self.max_rows
            if not self._stopped and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
                self._thread.start()
        if full:
            self.flush()

    def pending(self) -> int:
        with self._lock:
            return len(self._queued)

    def flush(self) -> None:
        """Write everything queued so far. Never raises (a lost audit row is logged)."""
        with self._flushing:
            with self._lock:
                batch, self._queued = self._queued, []
            if not batch:
                return
            self.ledger.record_exchanges(batch)
            try:
                client = self.redis()
            except Exception as exc:  # no Redis configured or reachable: count nothing
                log.warning("no Redis to count API calls in: %s", exc)
            else:
                count_exchanges(client, batch)

    def close(self) -> None:
        """Stop the background thread and write what is left. Later exchanges are written at once."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            with self._lock:
                stopped = self._stopped
            try:
                self.flush()
            except Exception:  # pragma: no cover - flush never raises; keep the thread alive anyway
                log.exception("the audit writer failed to flush")
            if stopped:
                return
