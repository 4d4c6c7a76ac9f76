"""The evidence pack's tables, read from the ledger: the close runs of a period, their timeline,
approvals, reconciliation and exceptions, and the CSV/JSON writers and URL scrubbers they use."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlmodel import col, func, select

from shared.close.approval import approval_view
from shared.close.state import ApprovalState, ReconcileLine, ReconcileState, step_state, stored_state
from shared.exchange import REDACTED, SECRET_KEYS
from shared.ledger.models import AuditEvent, AuditKind, CloseRun, SyncRecord
from shared.ledger.repo import Ledger

# -- reading the ledger ---------------------------------------------------------------------------


TIMELINE_COLUMNS = ("close_run", "at", "kind", "actor", "api", "method", "url", "status", "message")
APPROVAL_COLUMNS = ("close_run", "attempt", "event", "by", "at", "comment")
RECONCILIATION_COLUMNS = (
    "close_run",
    "account",
    "currency",
    "zuora_debit",
    "zuora_credit",
    "ledger_debit",
    "ledger_credit",
    "erp_debit",
    "erp_credit",
    "difference",
)
EXCEPTION_COLUMNS = (
    "close_run",
    "subject",
    "number",
    "raised_at",
    "raised_by",
    "where",
    "reason",
    "resolved_at",
    "resolved_by",
    "resolution",
    "state_now",
)


def close_runs_of_period(ledger: Ledger, connection: str, period_name: str) -> list[CloseRun]:
    """Every close run (real and dry) of ``period_name`` on ``connection``, oldest first."""
    with ledger.reading() as session:
        query = (
            select(CloseRun)
            .where(CloseRun.connection == connection, CloseRun.period_name == period_name)
            .order_by(col(CloseRun.id))
        )
        return list(session.exec(query).all())


def known_periods(ledger: Ledger, connection: str) -> list[str]:
    with ledger.reading() as session:
        query = (
            select(CloseRun.period_name)
            .where(CloseRun.connection == connection)
            .group_by(col(CloseRun.period_name))
            .order_by(func.max(CloseRun.id).desc())
        )
        return [str(name) for name in session.exec(query).all()]


def actor_of(event: AuditEvent) -> str:
    """The console user who caused an audit event (``audit_event.actor``); '' for the system's own."""
    return event.actor or ""


# -- files ----------------------------------------------------------------------------------------


def iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value is not None else ""


def csv_bytes(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: "" if row.get(name) is None else row.get(name) for name in columns})
    return buffer.getvalue().encode("utf-8")


def json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")


_CREDENTIAL_PARAM = re.compile(r"(secret|token|password|passwd|key|signature|auth|sig)", re.IGNORECASE)


def bare_url(url: str | None) -> str:
    """``url`` without user-info and with the value of any credential-like query parameter
    replaced by ``***``."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [
                (k, REDACTED if k.lower() in SECRET_KEYS or _CREDENTIAL_PARAM.search(k) else v)
                for k, v in pairs
            ]
        )
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def origin_only(url: str | None) -> str | None:
    """Scheme and host of ``url`` (a webhook's path is often its secret)."""
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}"


def _event_row(run_id: int, event: AuditEvent) -> dict[str, Any]:
    http = event.kind == AuditKind.HTTP.value
    return {
        "close_run": run_id,
        "at": iso(event.at),
        "kind": event.kind,
        "actor": actor_of(event),
        "api": event.api or "" if http else "",
        "method": event.method or "" if http else "",
        "url": bare_url(event.url) if http else "",
        "status": event.status if http and event.status is not None else "",
        # An exchange's message is its transport error, which may quote an answer: left out.
        "message": "" if http else (event.message or ""),
    }


def _run_summary(run: CloseRun) -> dict[str, Any]:
    return {
        "close_run": run.id,
        "period": run.period_name,
        "connection": run.connection,
        "dry_run": run.dry_run,
        "status": run.status,
        "step": run.step,
        "journal_run": run.journal_run_number,
        "error": run.error,
        "created_at": iso(run.created_at),
        "finished_at": iso(run.finished_at),
    }


def timeline_rows(
    ledger: Ledger, runs: Sequence[CloseRun]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    document: list[dict[str, Any]] = []
    for run in runs:
        run_id = run.id or 0
        events = [_event_row(run_id, e) for e in ledger.timeline(f"close:{run_id}")]
        rows += events
        document.append(
            {
                **_run_summary(run),
                "events": [{k: v for k, v in e.items() if k != "close_run"} for e in events],
            }
        )
    return rows, document


# -- approvals ------------------------------------------------------------------------------------


def approval_rows(ledger: Ledger, run: CloseRun) -> list[dict[str, Any]]:
    """Who started the run, when its approval was asked for (with the fingerprint of what it
    would post), and every decision on it, as the approval module shows them
    (:func:`shared.close.approval.approval_view`)."""
    view = approval_view(ledger, run.id or 0)
    rows: list[dict[str, Any]] = []
    if view.started_by:
        rows.append(
            {
                "close_run": run.id,
                "attempt": 1,
                "event": "started",
                "by": view.started_by,
                "at": iso(run.created_at),
                "comment": "",
            }
        )
    if view.requested_at:
        rows.append(
            {
                "close_run": run.id,
                "attempt": step_state(run, ApprovalState).attempt or "",
                "event": "approval requested",
                "by": "",
                "at": view.requested_at,
                "comment": f"{len(view.entries)} journal entries, fingerprint {view.fingerprint}",
            }
        )
    rows += [
        {
            "close_run": run.id,
            "attempt": decision.attempt,
            "event": decision.decision,
            "by": decision.user,
            "at": decision.at,
            "comment": decision.comment,
        }
        for decision in view.decisions
    ]
    return sorted(rows, key=lambda row: str(row["at"]))


# -- reconciliation -------------------------------------------------------------------------------


def difference(line: ReconcileLine) -> Decimal:
    """The largest gap between Zuora, the ledger and the ERP on one line, debit or credit."""
    gaps = (
        abs(line.zuora_debit - line.ledger_debit),
        abs(line.zuora_debit - line.erp_debit),
        abs(line.ledger_debit - line.erp_debit),
        abs(line.zuora_credit - line.ledger_credit),
        abs(line.zuora_credit - line.erp_credit),
        abs(line.ledger_credit - line.erp_credit),
    )
    return max(gaps).quantize(Decimal("0.01"))


def reconciliation_rows(run: CloseRun) -> list[dict[str, Any]]:
    state = stored_state(run, ReconcileState)
    if state is None:
        return []
    return [
        {
            "close_run": run.id,
            **{name: getattr(line, name) for name in RECONCILIATION_COLUMNS[1:-1]},
            "difference": difference(line),
        }
        for line in state.lines
    ]


# -- exceptions -----------------------------------------------------------------------------------

_STOP_NOTE = re.compile(r"^(?:attempt \d+: )?stopped at (?P<step>[a-z_]+): (?P<reason>.*)$", re.DOTALL)
_RESUME_NOTE = re.compile(r"^attempt \d+ started: ")
_REJECTED_NOTE = re.compile(r"^(?:attempt \d+: )?(?P<text>rejected by .*)$", re.DOTALL)
# The reason a run stopped to wait for approval gives (shared.close.approval.awaiting_reason).
_AWAITING_APPROVAL = re.compile(r"^\d+ journal entries are checked and wait for approval")
_FINISHED_NOTE = re.compile(r"^(?:attempt \d+: )?close finished \((?P<status>[a-z_]+)\)$")
_PROBLEM_STATES = ("parked", "failed")
_TRANSITION = re.compile(r"^(?P<old>[a-z_]+) -> (?P<new>[a-z_]+)(?:: (?P<detail>.*))?$", re.DOTALL)


def _run_exceptions(run: CloseRun, events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    """Each stop of the run that needed a person, and each rejection of what it would post, resolved
    by the note of the attempt that resumed it (or by the run finishing). A stop to wait for
    approval is not an exception: ``approvals.csv`` has it."""
    rows: list[dict[str, Any]] = []
    open_row: dict[str, Any] | None = None
    for event in events:
        if event.kind != AuditKind.NOTE.value or not event.message:
            continue
        stop = _STOP_NOTE.match(event.message)
        rejected = _REJECTED_NOTE.match(event.message)
        if stop and _AWAITING_APPROVAL.search(stop["reason"]):
            continue
        if stop or rejected:
            open_row = {
                "close_run": run.id,
                "subject": f"close:{run.id}",
                "number": run.journal_run_number or "",
                "raised_at": iso(event.at),
                "raised_by": actor_of(event),
                "where": f"step {stop['step']}" if stop else "approval",
                "reason": stop["reason"] if stop else rejected["text"] if rejected else "",
                "resolved_at": "",
                "resolved_by": "",
                "resolution": "",
                "state_now": run.status,
            }
            rows.append(open_row)
            continue
        if open_row is not None and (
            _RESUME_NOTE.match(event.message) or _FINISHED_NOTE.match(event.message)
        ):
            open_row["resolved_at"] = iso(event.at)
            open_row["resolved_by"] = actor_of(event)
            open_row["resolution"] = event.message
            open_row = None
    return rows


def _record_exceptions(
    run: CloseRun, record: SyncRecord, events: Sequence[AuditEvent]
) -> list[dict[str, Any]]:
    """Each time the journal entry went to parked or failed, and what took it out again: the
    transition out, with the notes (a replay's, a retry's) written beside it."""
    rows: list[dict[str, Any]] = []
    open_row: dict[str, Any] | None = None
    notes: list[str] = []
    for event in events:
        message = event.message or ""
        if event.kind == AuditKind.NOTE.value and open_row is not None:
            notes.append(message)
            if not open_row["resolved_by"]:
                open_row["resolved_by"] = actor_of(event)
            continue
        if event.kind != AuditKind.TRANSITION.value:
            continue
        moved = _TRANSITION.match(message)
        if moved is None:
            continue
        if moved["new"] in _PROBLEM_STATES and (open_row is None or moved["old"] not in _PROBLEM_STATES):
            open_row = {
                "close_run": run.id,
                "subject": record.subject,
                "number": record.zuora_number or record.zuora_id,
                "raised_at": iso(event.at),
                "raised_by": actor_of(event),
                "where": moved["new"],
                "reason": moved["detail"] or "",
                "resolved_at": "",
                "resolved_by": "",
                "resolution": "",
                "state_now": record.state,
            }
            notes = []
            rows.append(open_row)
        elif open_row is not None and moved["old"] in _PROBLEM_STATES and moved["new"] not in _PROBLEM_STATES:
            open_row["resolved_at"] = iso(event.at)
            open_row["resolved_by"] = actor_of(event) or open_row["resolved_by"]
            open_row["resolution"] = "; ".join([message, *notes])
            open_row = None
            notes = []
    return rows


def exception_rows(ledger: Ledger, run: CloseRun, events: Sequence[AuditEvent]) -> list[dict[str, Any]]:
    rows = _run_exceptions(run, events)
    for record in ledger.records_for_close_run(run.id or 0):
        rows += _record_exceptions(run, record, ledger.timeline(record.subject))
    return sorted(rows, key=lambda r: (str(r["raised_at"]), str(r["subject"])))
