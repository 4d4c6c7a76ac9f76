"""Licence accounting: the calls counted by entity and verb and the session, token and action
events, beside the licence's own counters (``licence.Licence``), as ``GET /_sandbox/requests``
reports them."""

from __future__ import annotations

from typing import Any

from sandbox.acumatica.entities import ENTITIES

from .state import InstanceState


class Counters(InstanceState):
    """``count_call`` for every request the handlers serve; ``counts`` and ``reset_counts``."""

    def count_call(self, name: str) -> None:
        """Count one call under ``name`` (``"PUT Invoice"``, ``"GET Customer/key"``, ...)."""
        with self._lock:
            self.calls[name] += 1

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
        """Zero the licence counters, the calls, the events and the injected-fault counts."""
        with self._lock:
            self.licence.reset_counts()
            self.calls.clear()
            self.events.clear()
            self.faults.injected.clear()

    def note_drop(self) -> None:
        """Count one connection dropped by an injected fault."""
        with self._lock:
            self.events["dropped_connections"] += 1
