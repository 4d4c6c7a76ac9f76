"""What the console's pages show, read from the ledger (read-only sessions): per connection the
streams' marks and lag, records by state and source, the last runs, the open closes and the
undelivered notices; the close runs; the parked and failed records; a period's reconciliation.
Plain values, no HTML: the templates render them and the JSON endpoints send them."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from shared.close.attempts import run_attempt
from shared.close.state import ApprovalState, ReconcileLine, ReconcileState, stored_state
from shared.item_level.status import sync_status
from shared.item_level.streams import STREAMS, for_object_type
from shared.ledger import states
from shared.ledger.models import CloseRun, CloseStatus, ObjectType, SyncRecord
from shared.ledger.repo import Ledger
from shared.metrics import format_lag, known_connections, lag_seconds

FINISHED = (CloseStatus.DONE.value, CloseStatus.FAILED.value, CloseStatus.DRY_RUN.value)
STATUS_WORDS = {
    CloseStatus.RUNNING.value: "running",
    CloseStatus.AWAITING_APPROVAL.value: "awaiting approval",
    CloseStatus.DONE.value: "done",
    CloseStatus.NEEDS_ATTENTION.value: "needs attention",
    CloseStatus.FAILED.value: "failed",
    CloseStatus.DRY_RUN.value: "dry run finished",
}
STATE_WORDS = {
    states.PARKED: "parked: waiting for a person to fix the cause",
    states.FAILED: "failed: the ERP refused it or could not be reached; retried with backoff",
}
JE = ObjectType.JOURNAL_ENTRY.value


def when(value: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` as stored (UTC); empty for None."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def status_words(status: str) -> str:
    return STATUS_WORDS.get(status, status)


# -- the overview ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """Per hour of the last day: records posted, and the median time from Zuora's change to the
    ERP posting (seconds; None for an hour with nothing posted)."""

    start: datetime
    posted: list[int]
    lag: list[float | None]


def run_summary(run: CloseRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "connection": run.connection,
        "period": run.period_name,
        "kind": "dry run" if run.dry_run else "close",
        "status": run.status,
        "status_words": status_words(run.status),
        "attempt": run_attempt(run),
        "step": run.step,
        "journal_run": run.journal_run_number or "",
        "started": when(run.created_at),
        "updated": when(run.updated_at),
        "finished": when(run.finished_at),
        "error": run.error or "",
    }


def _by_source(ledger: Ledger, connection: str) -> dict[str, dict[str, int]]:
    """``{object_type: {source: n}}`` of the connection's item-level records."""
    with ledger.reading() as session:
        rows = session.exec(
            select(SyncRecord.object_type, SyncRecord.source, sa.func.count())
            .where(SyncRecord.connection == connection, SyncRecord.object_type != JE)
            .group_by(col(SyncRecord.object_type), col(SyncRecord.source))
        ).all()
    found: dict[str, dict[str, int]] = {}
    for object_type, source, n in rows:
        found.setdefault(object_type, {})[source] = int(n)
    return found


def chart(ledger: Ledger, connection: str, now: datetime, *, hours: int = 24) -> Chart:
    """The last ``hours`` hours' throughput and sync lag of the connection's item-level records."""
    start = (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    posted = [0] * hours
    lags: list[list[float]] = [[] for _ in range(hours)]
    with ledger.reading() as session:
        rows = session.exec(
            select(SyncRecord.posted_at, SyncRecord.zuora_updated)
            .where(
                SyncRecord.connection == connection,
                SyncRecord.object_type != JE,
                col(SyncRecord.posted_at) >= start,
            )
            .limit(200_000)
        ).all()
    for posted_at, updated in rows:
        if posted_at is None:
            continue
        slot = int((posted_at - start).total_seconds() // 3600)
        if 0 <= slot < hours:
            posted[slot] += 1
            if updated is not None:
                lags[slot].append(max(0.0, (posted_at - updated).total_seconds()))
    median = [sorted(values)[len(values) // 2] if values else None for values in lags]
    return Chart(start=start, posted=posted, lag=median)


def connection_overview(ledger: Ledger, connection: str, now: datetime) -> dict[str, Any]:
    """Everything the overview shows of one connection (JSON-ready)."""
    report = sync_status(ledger, connection)
    sources = _by_source(ledger, connection)
    streams: list[dict[str, Any]] = []
    for row in report.streams:
        object_type = STREAMS[row.stream].object_type
        lag = lag_seconds(row.mark, now)
        by_source = sources.get(object_type, {})
        streams.append(
            {
                "stream": row.stream,
                "mark": when(row.mark) or "-",
                "lag": format_lag(lag),
                "lag_seconds": lag,
                "last_run": (
                    f"{when(row.run_finished_at or row.run_started_at)} {row.last_status or ''}".strip()
                    if row.run_started_at
                    else "-"
                ),
                "last_error": row.last_error or "",
                "counts": {state: row.counts.get(state, 0) for state in states.STATES},
                "pulled": by_source.get("pull", 0),
                "pushed": by_source.get("push", 0),
                "replayed": by_source.get("replay", 0),
                "missed_by_push": row.missed_by_push,
                "missed_by_mark": row.missed_by_mark,
                "mark_failures": row.mark_failures,
            }
        )
    runs = ledger.latest_close_runs(connection, limit=5)
    with ledger.reading() as session:
        open_runs = list(
            session.exec(
                select(CloseRun)
                .where(CloseRun.connection == connection, col(CloseRun.status).not_in(FINISHED))
                .order_by(col(CloseRun.id))
            ).all()
        )
    notices = ledger.undelivered_notices(connection)
    return {
        "name": connection,
        "streams": streams,
        "totals": {state: sum(s["counts"][state] for s in streams) for state in states.STATES},
        "pulled": sum(s["pulled"] for s in streams),
        "pushed": sum(s["pushed"] for s in streams),
        "missed_by_push": sum(s["missed_by_push"] for s in streams),
        "missed_by_mark": sum(s["missed_by_mark"] for s in streams),
        "callouts": report.callouts,
        "last_runs": [run_summary(r) for r in runs],
        "open_runs": [run_summary(r) for r in open_runs],
        "notices": {
            "count": notices.count,
            "oldest": when(notices.oldest),
            "last_error": notices.last_error or "",
        },
    }


def connections(ledger: Ledger, default: str) -> list[str]:
    return known_connections(ledger, also=[default])


def overview(ledger: Ledger, default: str, now: datetime) -> list[dict[str, Any]]:
    return [connection_overview(ledger, name, now) for name in connections(ledger, default)]


def live_values(data: list[dict[str, Any]]) -> dict[str, str]:
    """The overview's changing figures keyed as the page marks them (``data-live``)."""
    values: dict[str, str] = {}
    for conn in data:
        name = conn["name"]
        for row in conn["streams"]:
            key = f"{name}.{row['stream']}"
            values[f"{key}.mark"] = row["mark"]
            values[f"{key}.lag"] = row["lag"]
            values[f"{key}.last_run"] = row["last_run"]
            values[f"{key}.pulled"] = str(row["pulled"])
            values[f"{key}.pushed"] = str(row["pushed"])
            for state, n in row["counts"].items():
                values[f"{key}.{state}"] = str(n)
        for state, n in conn["totals"].items():
            values[f"{name}.total.{state}"] = str(n)
        values[f"{name}.pulled"] = str(conn["pulled"])
        values[f"{name}.pushed"] = str(conn["pushed"])
        values[f"{name}.missed_by_push"] = str(conn["missed_by_push"])
        values[f"{name}.missed_by_mark"] = str(conn["missed_by_mark"])
        values[f"{name}.notices"] = str(conn["notices"]["count"])
        values[f"{name}.open_runs"] = str(len(conn["open_runs"]))
    return values


# -- close runs -----------------------------------------------------------------------------------


def close_runs(ledger: Ledger, connection: str | None, limit: int = 100) -> list[dict[str, Any]]:
    """Close runs, newest first (of one connection, or all)."""
    with ledger.reading() as session:
        query = select(CloseRun).order_by(col(CloseRun.id).desc()).limit(limit)
        if connection:
            query = query.where(CloseRun.connection == connection)
        return [run_summary(r) for r in session.exec(query).all()]


def transfer_status(record: SyncRecord) -> str:
    """What Zuora's ``transferredToAccounting`` is for a journal entry, as the ledger knows it."""
    if record.state == states.MARKED:
        return "Yes"
    if record.state in (states.POSTED, states.POSTING):
        return "Processing"
    return "No"


def close_entries(ledger: Ledger, run: CloseRun) -> list[dict[str, Any]]:
    """The run's journal entries: lines (as posted, else as the check previewed them), ERP batch,
    Zuora transfer status and ledger state."""
    approval = stored_state(run, ApprovalState)
    previewed = {e.number: e for e in approval.entries} if approval is not None else {}
    entries = []
    rows = ledger.records_for_close_run(run.id or 0) if not run.dry_run else []
    for rec in rows:
        number = rec.zuora_number or rec.zuora_id
        payload = rec.posted_payload or {}
        lines: list[dict[str, Any]] = [dict(line) for line in payload.get("lines") or []]
        if not lines and number in previewed:
            lines = [line.model_dump() for line in previewed[number].lines]
        entries.append(
            {
                "number": number,
                "currency": payload.get("currency")
                or (previewed[number].currency if number in previewed else ""),
                "date": payload.get("date") or (previewed[number].date if number in previewed else ""),
                "state": rec.state,
                "erp_batch": rec.erp_ref or "",
                "transfer": transfer_status(rec),
                "last_error": rec.last_error or "",
                "lines": lines,
            }
        )
    return entries


# -- parked and failed records --------------------------------------------------------------------

_VOLATILE = re.compile(r"\b[0-9a-f]{16,}\b|\b[A-Z]{2,4}-?\d{5,}\b|\d+(\.\d+)?")


def reason_of(error: str | None) -> str:
    """A record's last error as a reason shared by records that failed the same way (numbers,
    ids and amounts left out), for the reason filter."""
    if not error:
        return "no reason recorded"
    text = _VOLATILE.sub("…", error.strip().splitlines()[0])
    return text[:160]


@dataclass
class RecordList:
    rows: list[dict[str, Any]]
    reasons: list[tuple[str, int]]
    streams: list[str]
    connections: list[str]
    total: int
    shown_limit: int
    filters: dict[str, str] = field(default_factory=dict)


def stuck_records(
    ledger: Ledger,
    default: str,
    *,
    connection: str | None = None,
    stream: str | None = None,
    reason: str | None = None,
    limit: int = 500,
) -> RecordList:
    """The parked and failed records, and the posted ones changed in Zuora that need a person
    (every connection unless ``connection``), filtered by stream and by reason (the
    :func:`reason_of` text), oldest first."""
    object_types = [STREAMS[stream].object_type] if stream in STREAMS else None
    with ledger.reading() as session:
        query = (
            select(SyncRecord)
            .where(
                col(SyncRecord.state).in_([states.PARKED, states.FAILED])
                | col(SyncRecord.change_note).is_not(None)
            )
            .order_by(col(SyncRecord.id))
            .limit(20_000)
        )
        if connection:
            query = query.where(SyncRecord.connection == connection)
        if stream == "journal_entries":
            query = query.where(SyncRecord.object_type == JE)
        elif object_types:
            query = query.where(col(SyncRecord.object_type).in_(object_types))
        found = list(session.exec(query).all())
    reasons = Counter(reason_of(_why(r)) for r in found)
    chosen = [r for r in found if not reason or reason_of(_why(r)) == reason]
    rows = []
    for rec in chosen[:limit]:
        item_stream = for_object_type(rec.object_type)
        rows.append(
            {
                "connection": rec.connection,
                "stream": item_stream.name if item_stream is not None else "journal_entries",
                "object_type": rec.object_type,
                "zuora_id": rec.zuora_id,
                "number": rec.zuora_number or rec.zuora_id,
                "state": rec.state,
                "state_words": "changed after posting"
                if rec.change_note and rec.state not in (states.PARKED, states.FAILED)
                else STATE_WORDS.get(rec.state, rec.state),
                "reason": _why(rec) or "no reason recorded",
                "attempts": rec.attempts,
                "updated": when(rec.updated_at),
                "period": rec.period_name or "",
            }
        )
    return RecordList(
        rows=rows,
        reasons=reasons.most_common(30),
        streams=[*STREAMS, "journal_entries"],
        connections=connections(ledger, default),
        total=len(chosen),
        shown_limit=limit,
        filters={"connection": connection or "", "stream": stream or "", "reason": reason or ""},
    )


def _why(rec: SyncRecord) -> str | None:
    """What a person must look at: a parked or failed record's last error, else its change note."""
    if rec.state in (states.PARKED, states.FAILED):
        return rec.last_error
    return rec.change_note


def stream_object_type(stream: str) -> str | None:
    """The object type of a stream name as the record URLs carry it (None: unknown)."""
    if stream == "journal_entries":
        return JE
    found = STREAMS.get(stream)
    return found.object_type if found is not None else None


def exchange_line(event: Any) -> dict[str, Any]:
    """One timeline event for the page: an API exchange shows only its method, URL path, status and
    duration (never headers or bodies); a transition or a note shows its message."""
    if event.kind == "http":
        url = str(event.url or "")
        path = url.split("?", 1)[0]
        return {
            "at": when(event.at),
            "kind": "API",
            "text": f"{event.api or ''} {event.method or ''} {path} -> {event.status if event.status is not None else 'no answer'}".strip(),
            "detail": f"{event.duration_ms:.0f} ms" if event.duration_ms is not None else "",
            "actor": event.actor or "",
        }
    return {
        "at": when(event.at),
        "kind": "change" if event.kind == "transition" else "note",
        "text": event.message or "",
        "detail": "",
        "actor": event.actor or "",
    }


# -- reconciliation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciliation:
    connection: str
    period_name: str
    run: CloseRun | None
    lines: list[ReconcileLine]
    differences: list[ReconcileLine]
    runs: list[dict[str, Any]]

    @property
    def totals(self) -> dict[str, dict[str, Decimal]]:
        """Per currency, the three sources' debit and credit."""
        sums: dict[str, dict[str, Decimal]] = {}
        for line in self.lines:
            into = sums.setdefault(line.currency, {})
            for name in (
                "zuora_debit",
                "zuora_credit",
                "ledger_debit",
                "ledger_credit",
                "erp_debit",
                "erp_credit",
            ):
                into[name] = into.get(name, Decimal(0)) + getattr(line, name)
        return sums


def matches(line: ReconcileLine) -> bool:
    return (
        line.zuora_debit == line.ledger_debit == line.erp_debit
        and line.zuora_credit == line.ledger_credit == line.erp_credit
    )


def reconciliation(ledger: Ledger, connection: str, period_name: str) -> Reconciliation:
    """The period's reconciliation: the latest real close run of it that reached ``reconcile``."""
    with ledger.reading() as session:
        runs = list(
            session.exec(
                select(CloseRun)
                .where(
                    CloseRun.connection == connection,
                    CloseRun.period_name == period_name,
                    col(CloseRun.dry_run).is_(False),
                )
                .order_by(col(CloseRun.id).desc())
            ).all()
        )
    for run in runs:
        state = stored_state(run, ReconcileState)
        if state is not None and (state.lines or state.differences):
            lines = state.lines or state.differences
            return Reconciliation(
                connection,
                period_name,
                run,
                list(lines),
                list(state.differences),
                [run_summary(r) for r in runs],
            )
    return Reconciliation(
        connection, period_name, runs[0] if runs else None, [], [], [run_summary(r) for r in runs]
    )


def money(value: object) -> str:
    """An amount as Finance reads it: thousands grouped, at least two decimals, never rounded
    (``9936`` -> ``9,936.00``, ``1460.145`` -> ``1,460.145``); anything else as it is."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not amount.is_finite():
        return str(value)
    places = max(2, -int(amount.as_tuple().exponent))
    return f"{amount:,.{places}f}"
