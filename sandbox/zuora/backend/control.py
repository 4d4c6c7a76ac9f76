"""The control plane's knobs and views of the whole tenant: configuration, the clock, the event
feed (``subscribe``/``events_since``, read by the callout sender) and the record counts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sandbox.zuora.config import SandboxConfig

from .state import SandboxEvent, TenantState


class Control(TenantState):
    """``/_sandbox/config``, ``/_sandbox/clock``, ``/_sandbox/events``, the counts in ``/_sandbox/health``."""

    def configure(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """Apply config changes (raises ``ValueError`` on a bad key or value)."""
        with self._lock:
            self._config = self._config.with_changes(changes)
            return self._config

    def advance_clock(self, seconds: float) -> float:
        """Move the sandbox clock ``seconds`` ahead (jobs and tokens age at once); returns the new now."""
        with self._lock:
            self._offset += seconds
            return self.now()

    def subscribe(self, listener: Callable[[SandboxEvent], None]) -> None:
        """Call ``listener`` (under the lock, so keep it quick) for every new event."""
        with self._lock:
            self._listeners.append(listener)

    def events_since(self, seq: int = 0) -> list[SandboxEvent]:
        """Events with a sequence number above ``seq``, oldest first (a consumer keeps its last seq)."""
        with self._lock:
            return [e for e in self._events if e.seq > seq]

    def counts(self) -> dict[str, int]:
        """Rows per table, plus journal runs, journal entries and live tokens."""
        with self._lock:
            counts = {name: len(t) for name, t in self._tables.items()}
            counts.update(
                JournalRun=len(self._runs), JournalEntry=len(self._entries), Token=len(self._tokens)
            )
            return counts
