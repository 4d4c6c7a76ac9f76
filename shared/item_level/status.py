"""``ledgerbridge status``: per stream, its mark, its last run, its rows by state and the two
"missed" counters (records the push missed, found by a pull; records the marks missed, found by
the mark audit - both should stay low, the second at 0)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from shared.item_level.queries import callout_counts, mark_failures
from shared.item_level.streams import STREAMS
from shared.ledger.applications import counts as application_counts
from shared.ledger.repo import Ledger
from shared.ledger.states import STATES, SYNC_RECORDS


@dataclass(frozen=True)
class StreamStatus:
    stream: str
    mark: datetime | None
    run_started_at: datetime | None
    run_finished_at: datetime | None
    last_status: str | None
    last_error: str | None
    pulled_total: int
    missed_by_push: int
    missed_by_mark: int
    counts: dict[str, int] = field(default_factory=dict)
    mark_failures: int = 0  # posted rows Zuora refused to mark (retried; see their last_error)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("mark", "run_started_at", "run_finished_at"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        return out


@dataclass(frozen=True)
class SyncStatus:
    connection: str
    streams: list[StreamStatus]
    callouts: dict[str, int]
    # Applications made after their document, by state (waiting, applying, applied).
    applications: dict[str, int] = field(default_factory=dict)
    # Posted records changed in Zuora: being carried to the ERP, and noted for a person.
    changes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "streams": [s.as_dict() for s in self.streams],
            "callouts": self.callouts,
            "applications": self.applications,
            "changes": self.changes,
        }


def change_counts(ledger: Ledger, connection: str) -> dict[str, int]:
    """``{"being_carried": n, "needs_a_person": m}`` over the connection's posted records."""
    c = SYNC_RECORDS.c
    with ledger.reading() as session:
        # count(column) counts the rows where it is set.
        carried, noted = session.execute(
            sa.select(sa.func.count(c.changed_at), sa.func.count(c.change_note)).where(
                c.connection == connection
            )
        ).one()
    return {"being_carried": int(carried), "needs_a_person": int(noted)}


def sync_status(ledger: Ledger, connection: str) -> SyncStatus:
    marks = {m.stream: m for m in ledger.list_streams(connection)}
    counts = ledger.counts_by_state(connection)
    failures = mark_failures(ledger, connection)
    rows = []
    for name, stream in STREAMS.items():
        mark = marks.get(name)
        by_state = {state: counts.get((stream.object_type, state), 0) for state in STATES}
        rows.append(
            StreamStatus(
                stream=name,
                mark=mark.mark if mark else None,
                run_started_at=mark.run_started_at if mark else None,
                run_finished_at=mark.run_finished_at if mark else None,
                last_status=mark.last_status if mark else None,
                last_error=mark.last_error if mark else None,
                pulled_total=mark.pulled_total if mark else 0,
                missed_by_push=mark.missed_by_push if mark else 0,
                missed_by_mark=mark.missed_by_mark if mark else 0,
                counts=by_state,
                mark_failures=failures.get(stream.object_type, 0),
            )
        )
    with ledger.reading() as session:
        applications = application_counts(session, connection)
    return SyncStatus(
        connection=connection,
        streams=rows,
        callouts=callout_counts(ledger, connection),
        applications=applications,
        changes=change_counts(ledger, connection),
    )
