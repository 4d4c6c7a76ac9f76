"""The evidence pack of a period's close: one zip an auditor can keep.

:func:`build_evidence_pack` gathers, for every close run of one period on one connection:

- ``timeline.csv`` / ``timeline.json``: each run's audit trail (subject ``close:<id>``): notes and
  state changes with their text, API exchanges by method, URL and status only (never a body or a
  header);
- ``approvals.csv``: who started each run, and each approval or rejection with who, when and why;
- ``reconciliation.csv``: the reconcile step's table, Zuora = ledger = ERP per account and currency;
- ``exceptions.csv``: every stop of a run and every journal entry of the close that was parked or
  failed, with its reason, and who resolved it, when and how;
- ``mapping.<ext>``: the mapping file in force, byte for byte (its sha256 is in the README);
- ``configuration.json``: the connection and the settings that shape a close, without a secret;
- ``README.txt``: what each file is, the period, the connection, who generated the pack and when,
  the ledgerbridge version, and each file's sha256.

Nothing secret goes into the pack: ``configuration.json`` is built from allow-lists of fields
known to be harmless (never by removing the names of known secrets), URLs lose any user-info
and the values of credential-like query parameters, a webhook URL keeps only its scheme and host
(the path of a Slack webhook is its token), and exchanges keep no body or header.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlmodel import col, func, select

from shared.close.approval import approval_view
from shared.close.state import ApprovalState, ReconcileLine, ReconcileState, step_state, stored_state
from shared.connection_list import list_connections
from shared.exchange import REDACTED, SECRET_KEYS
from shared.ledger.models import AuditEvent, AuditKind, CloseRun, SyncRecord
from shared.ledger.repo import Ledger
from shared.settings import Settings


class NoCloseRun(ValueError):
    """The period has no close run on the connection: there is nothing to give evidence of."""


# -- what the pack holds --------------------------------------------------------------------------

FILE_DESCRIPTIONS: dict[str, str] = {
    "README.txt": "this file",
    "timeline.csv": (
        "every close run's audit trail (subject close:<id>), oldest first: notes and state changes with "
        "their text and actor, API exchanges by method, URL and HTTP status only (no body, no header)"
    ),
    "timeline.json": "the same timeline as JSON, one object per close run with its events",
    "approvals.csv": (
        "who started each close run, when its approval was asked for (with the fingerprint of what it "
        "would post), and each approval or rejection of it: who, when, on which attempt, their comment"
    ),
    "reconciliation.csv": (
        "the reconcile step's table per close run: debit and credit per ERP account and currency in "
        "Zuora, in the ledger (what was posted) and in the ERP (read back); difference is the largest "
        "gap between the three, 0.00 when they agree to the cent"
    ),
    "exceptions.csv": (
        "every stop of a close run and every journal entry of the close that was parked or failed: "
        "its reason, and who resolved it, when and how (empty resolution: not resolved yet)"
    ),
    "configuration.json": (
        "the connection and the settings that shape a close, from allow-lists: no password, client "
        "secret, token, key or HMAC secret (the secrets that are set are named, never shown)"
    ),
}
MAPPING_DESCRIPTION = "the mapping file in force when the pack was generated, byte for byte"

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


@dataclass(frozen=True)
class PackFile:
    name: str
    data: bytes
    description: str


# -- reading the ledger ---------------------------------------------------------------------------


def close_runs_of_period(ledger: Ledger, connection: str, period_name: str) -> list[CloseRun]:
    """Every close run (real and dry) of ``period_name`` on ``connection``, oldest first."""
    with ledger.reading() as session:
        query = (
            select(CloseRun)
            .where(CloseRun.connection == connection, CloseRun.period_name == period_name)
            .order_by(col(CloseRun.id))
        )
        return list(session.exec(query).all())


def _known_periods(ledger: Ledger, connection: str) -> list[str]:
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


def _iso(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).isoformat() if value is not None else ""


def _csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: "" if row.get(name) is None else row.get(name) for name in columns})
    return buffer.getvalue().encode("utf-8")


def _json(value: Any) -> bytes:
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
        "at": _iso(event.at),
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
        "created_at": _iso(run.created_at),
        "finished_at": _iso(run.finished_at),
    }


def _timeline(ledger: Ledger, runs: Sequence[CloseRun]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
                "at": _iso(run.created_at),
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
                "raised_at": _iso(event.at),
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
            open_row["resolved_at"] = _iso(event.at)
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
                "raised_at": _iso(event.at),
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
            open_row["resolved_at"] = _iso(event.at)
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


# -- configuration --------------------------------------------------------------------------------

# The settings shown as they are: none of them can hold a credential.
PLAIN_SETTINGS = (
    "connection",
    "queue",
    "erp",
    "gl_export_dir",
    "mapping_file",
    "acumatica_endpoint",
    "zuora_requests_per_minute",
    "zuora_max_concurrent",
    "zuora_timeout_seconds",
    "acumatica_requests_per_minute",
    "acumatica_max_concurrent",
    "acumatica_max_sessions",
    "item_release",
    "close_stale_seconds",
    "pull_interval_seconds",
    "pull_overlap_seconds",
    "sweep_interval_seconds",
    "audit_retention_days",
    "notify_retry_base_seconds",
    "notify_retry_max_seconds",
    "approval",
)
# Settings that hold a secret: only whether each is set is shown.
SECRET_SETTINGS = (
    "secret_key",
    "zuora_client_secret",
    "acumatica_password",
    "acumatica_client_secret",
    "acumatica_refresh_token",
    "callout_hmac_secret",
    "callout_hmac_previous_secret",
    "metrics_token",
    "console_secret",
)
# A connection's fields shown as they are (``shared.connection_list`` shapes them).
CONNECTION_FIELDS = (
    "name",
    "source",
    "zuora_client_id",
    "zuora_entity_id",
    "zuora_requests_per_minute",
    "zuora_max_concurrent",
    "erp",
    "export_dir",
    "approval",
)
CONNECTION_URL_FIELDS = ("zuora_base_url",)
ACUMATICA_FIELDS = (
    "endpoint",
    "username",
    "tenant",
    "branch",
    "client_id",
    "requests_per_minute",
    "max_concurrent",
    "max_sessions",
)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _without_password(url: str) -> str:
    """A database or Redis URL with any password removed (the user name stays)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _connection_configuration(ledger: Ledger, settings: Settings, connection: str) -> dict[str, Any]:
    listed = list_connections(ledger, settings)
    found = next((row for row in listed.rows if row.get("name") == connection), None)
    if found is None:
        return {"name": connection, "found": False, "note": listed.environment_problem or "not configured"}
    shown: dict[str, Any] = {"found": True}
    for name in CONNECTION_FIELDS:
        if name in found:
            shown[name] = _plain(found[name])
    for name in CONNECTION_URL_FIELDS:
        if found.get(name):
            shown[name] = bare_url(str(found[name]))
    acumatica = found.get("acumatica")
    if isinstance(acumatica, Mapping):
        shown["acumatica"] = {k: _plain(acumatica[k]) for k in ACUMATICA_FIELDS if k in acumatica}
        if acumatica.get("url"):
            shown["acumatica"]["url"] = bare_url(str(acumatica["url"]))
    return shown


def configuration(ledger: Ledger, settings: Settings, connection: str) -> dict[str, Any]:
    """The connection and the settings that shape a close, built from allow-lists only."""
    values: dict[str, Any] = {}
    for name in PLAIN_SETTINGS:
        if hasattr(settings, name):
            values[name] = _plain(getattr(settings, name))
    values["journal_transaction_types"] = list(settings.transaction_types)
    values["database_url"] = _without_password(settings.database_url)
    values["redis_url"] = _without_password(settings.redis_url)
    values["notify_webhook"] = origin_only(settings.notify_webhook_url)
    secrets_set = sorted(
        f"LEDGERBRIDGE_{name.upper()}" for name in SECRET_SETTINGS if getattr(settings, name, None)
    )
    return {
        "connection": _connection_configuration(ledger, settings, connection),
        "settings": values,
        "secrets_set": secrets_set,
    }


# -- the pack -------------------------------------------------------------------------------------


def ledgerbridge_version() -> str:
    try:
        return metadata.version("ledgerbridge")
    except metadata.PackageNotFoundError:
        return "unknown"


def _mapping_file(settings: Settings) -> tuple[PackFile | None, str]:
    path = settings.mapping_file
    if path is None:
        return None, "no mapping file is configured (LEDGERBRIDGE_MAPPING_FILE is not set)"
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"the mapping file {path} could not be read: {exc.strerror or exc}"
    name = "mapping" + (Path(path).suffix or ".toml")
    digest = hashlib.sha256(data).hexdigest()
    return PackFile(name, data, MAPPING_DESCRIPTION), f"{path} (sha256 {digest}, {len(data)} bytes)"


def _readme(
    *,
    period_name: str,
    connection: str,
    generated_by: str,
    generated_at: dt.datetime,
    runs: Sequence[CloseRun],
    files: Sequence[PackFile],
    mapping_line: str,
) -> bytes:
    lines = [
        f"ledgerbridge evidence pack: the close of {period_name!r} on connection {connection!r}",
        "",
        f"period:        {period_name}",
        f"connection:    {connection}",
        f"generated by:  {generated_by}",
        f"generated at:  {generated_at.isoformat()}",
        f"ledgerbridge:  {ledgerbridge_version()}",
        f"mapping file:  {mapping_line}",
        "",
        "close runs of the period on this connection:",
    ]
    for run in runs:
        kind = "dry run" if run.dry_run else "close"
        finished = f", finished {_iso(run.finished_at)}" if run.finished_at else ""
        lines.append(
            f"  run {run.id} ({kind}): {run.status} at step {run.step}, started {_iso(run.created_at)}{finished}"
        )
    lines += ["", "files:"]
    lines.append(f"  README.txt\n      {FILE_DESCRIPTIONS['README.txt']}")
    for item in files:
        lines.append(f"  {item.name}\n      {item.description}")
        lines.append(f"      sha256 {hashlib.sha256(item.data).hexdigest()}")
    lines += [
        "",
        "Times are UTC (ISO 8601). Amounts are exact decimals as the ledger keeps them.",
        "Nothing secret is in this pack: API exchanges are listed without bodies or headers, URLs",
        "without user-info or credential-like query values, and the configuration is built from",
        "allow-lists of harmless fields.",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def build_evidence_pack(
    ledger: Ledger,
    settings: Settings,
    connection: str,
    period_name: str,
    *,
    generated_by: str,
    now: dt.datetime | None = None,
) -> bytes:
    """The evidence pack (zip bytes) of ``period_name``'s close on ``connection``;
    :class:`NoCloseRun` when the period has no close run there."""
    runs = close_runs_of_period(ledger, connection, period_name)
    if not runs:
        known = _known_periods(ledger, connection)
        hint = (
            f"periods closed on {connection!r}: {', '.join(known[:12])}"
            if known
            else (f"no period has a close run on {connection!r} yet")
        )
        raise NoCloseRun(
            f"{period_name!r} has no close run on connection {connection!r}, so there is no evidence to "
            f"pack: check the period's name and the connection (--connection), or close the period first "
            f"(`ledgerbridge close {period_name!r}`); {hint}"
        )
    generated_at = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    timeline_rows, timeline_doc = _timeline(ledger, runs)
    approvals: list[dict[str, Any]] = []
    reconciliation: list[dict[str, Any]] = []
    exceptions: list[dict[str, Any]] = []
    for run in runs:
        approvals += approval_rows(ledger, run)
        reconciliation += reconciliation_rows(run)
        exceptions += exception_rows(ledger, run, ledger.timeline(f"close:{run.id}"))
    files = [
        PackFile("timeline.csv", _csv(TIMELINE_COLUMNS, timeline_rows), FILE_DESCRIPTIONS["timeline.csv"]),
        PackFile("timeline.json", _json(timeline_doc), FILE_DESCRIPTIONS["timeline.json"]),
        PackFile("approvals.csv", _csv(APPROVAL_COLUMNS, approvals), FILE_DESCRIPTIONS["approvals.csv"]),
        PackFile(
            "reconciliation.csv",
            _csv(RECONCILIATION_COLUMNS, reconciliation),
            FILE_DESCRIPTIONS["reconciliation.csv"],
        ),
        PackFile("exceptions.csv", _csv(EXCEPTION_COLUMNS, exceptions), FILE_DESCRIPTIONS["exceptions.csv"]),
    ]
    mapping_file, mapping_line = _mapping_file(settings)
    if mapping_file is not None:
        files.append(mapping_file)
    files.append(
        PackFile(
            "configuration.json",
            _json(configuration(ledger, settings, connection)),
            FILE_DESCRIPTIONS["configuration.json"],
        )
    )
    readme = _readme(
        period_name=period_name,
        connection=connection,
        generated_by=generated_by,
        generated_at=generated_at,
        runs=runs,
        files=files,
        mapping_line=mapping_line,
    )
    stamp = generated_at.timetuple()[:6]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for item in [PackFile("README.txt", readme, ""), *files]:
            info = zipfile.ZipInfo(item.name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, item.data)
    return buffer.getvalue()


def evidence_file_name(connection: str, period_name: str) -> str:
    """A file name for the pack: ``evidence-<connection>-<period>.zip`` in safe characters."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{connection}-{period_name}").strip("-").lower()
    return f"evidence-{slug}.zip"
