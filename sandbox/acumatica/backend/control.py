"""What only the control plane (``/_sandbox``) asks of the instance: the clock, records for
assertions, and the status of a financial period."""

from __future__ import annotations

from typing import Any

from sandbox.acumatica.entities import ENTITIES, EntitySpec
from sandbox.acumatica.records import Row, plain

from .state import InstanceState, normalize_period, period_text


class Control(InstanceState):
    """``/_sandbox/clock``, ``/_sandbox/state`` and ``/_sandbox/period-status``."""

    def advance_clock(self, seconds: float) -> None:
        """Move the sandbox's clock forward: sessions, tokens and timed actions age at once."""
        with self._lock:
            self._offset += seconds

    def state(self, entity: str) -> list[dict[str, Any]]:
        """Every record of ``entity``, unwrapped, with all details (for assertions)."""
        spec = ENTITIES[entity]
        with self._lock:
            self._advance_operations()
            return [self._plain(spec, row) for row in self._rows(spec)]

    def state_one(self, entity: str, keys: list[str]) -> dict[str, Any] | None:
        """One record of ``entity`` by its URL keys, unwrapped (None when there is none)."""
        spec = ENTITIES[entity]
        with self._lock:
            row = self._find(spec, keys)
            return None if row is None else self._plain(spec, row)

    def _plain(self, spec: EntitySpec, row: Row) -> dict[str, Any]:
        out = plain(spec.obj, row, self.config.tz)
        if spec.table == "ar_documents":
            out["Released"] = bool(row.values.get("released"))
        return out

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
                raise ValueError(f"period {period_text(normalized)} is not in the financial calendar")
            line.values["Status"] = status
            closed = status in ("Closed", "Locked") if closed_in_ar is None else closed_in_ar
            for flag in ("ClosedInAR", "ClosedInAP", "ClosedInCA", "ClosedInFA", "ClosedInIN"):
                line.values[flag] = closed
            return plain(ENTITIES["FinancialPeriod"].obj.collections[0].item, line, self.config.tz)
