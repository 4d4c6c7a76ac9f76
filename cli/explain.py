"""``ledgerbridge explain``: a record, close run or audit subject and its whole timeline.

The ledger query is :func:`shared.explain.explain`; this module prints its answer, as tables and
a timeline or as JSON (``--json``, bodies never cut).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from cli.common import ConnectionOpt, ledger_at_head
from cli.output import fail, field_table, out, print_json, table, usage_errors, utc_time

if TYPE_CHECKING:
    from shared.explain import Explanation
    from shared.ledger.models import AuditEvent, CloseRun, SyncRecord

# Bodies in the rich timeline are cut here unless --full (the JSON output is never cut).
BODY_PREVIEW_CHARS = 300


def register(app: typer.Typer) -> None:
    """Add ``explain`` to the ``ledgerbridge`` command."""
    app.command("explain")(explain)


def explain(
    number_or_id: Annotated[
        str,
        typer.Argument(
            help="A Zuora id or number (INV00001234, JE-00000012), an ERP reference, close:<run id>, "
            "or an audit subject such as invoice:<zuora id>."
        ),
    ],
    connection: ConnectionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (bodies never cut).")] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Show whole request/response bodies, headers and payloads.")
    ] = False,
) -> None:
    """Explain a record: where it is (state, attempts, last error, ERP reference, when it was
    posted and marked) and its whole timeline from the audit trail - every state change and every
    HTTP attempt with status, duration, request id and the (redacted) bodies.
    Exit code 1 when the ledger knows nothing about it."""
    from shared import ports
    from shared.explain import explain as explain_query

    with usage_errors():
        name = connection or ports.settings().connection
        found = explain_query(ledger_at_head(), name, number_or_id)
    if found.empty:
        raise fail(
            f"nothing in the ledger for {number_or_id!r} on connection {name} (tried Zuora id, number, ERP "
            "reference; a close run is close:<id>)",
            1,
        )
    if as_json:
        print_json(_explanation_json(found, full))
    else:
        _print_explanation(out(), found, full)


def _explanation_json(found: Explanation, full: bool) -> dict[str, Any]:
    return {
        "query": found.query,
        "connection": found.connection,
        "records": [
            {
                **_record_json(item.record, full),
                "links": item.links,
                "timeline": [_event_json(e) for e in item.timeline],
            }
            for item in found.records
        ],
        "close_runs": [
            {
                **_close_json(item.run),
                "records": [_record_json(r, full) for r in item.records],
                "timeline": [_event_json(e) for e in item.timeline],
            }
            for item in found.close_runs
        ],
        "subjects": [
            {"subject": item.subject, "timeline": [_event_json(e) for e in item.timeline]}
            for item in found.subjects
        ],
    }


def _print_explanation(console: Console, found: Explanation, full: bool) -> None:
    for history in found.records:
        record = history.record
        console.print(
            field_table(
                [*_record_rows(record), *(("linked", link) for link in history.links)],
                title=escape(f"{record.object_type} {record.zuora_number or record.zuora_id}"),
            )
        )
        if full and record.posted_payload is not None:
            console.print(
                Text(f"  sent to the ERP: {json.dumps(record.posted_payload, default=str)}", style="dim")
            )
        console.print("[bold]timeline[/]")
        render_timeline(console, history.timeline, full)
        console.print()
    for close in found.close_runs:
        run = close.run
        console.print(field_table(_close_rows(run), title=escape(f"close run {run.id} ({run.connection})")))
        if close.records:
            entries = table(
                "journal entries", ("number", "state", "erp ref", "attempts", "last error"), overflow=True
            )
            for r in close.records:
                entries.add_row(
                    escape(r.zuora_number or r.zuora_id),
                    r.state,
                    escape(r.erp_ref or ""),
                    str(r.attempts),
                    escape(r.last_error or ""),
                )
            console.print(entries)
        console.print("[bold]timeline[/]")
        render_timeline(console, close.timeline, full)
        console.print()
    for subject in found.subjects:
        console.print(f"[bold]timeline of {escape(subject.subject)}[/]")
        render_timeline(console, subject.timeline, full)
        console.print()


def _record_json(record: SyncRecord, full: bool) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    if not full:
        data.pop("payload", None)
        data.pop("posted_payload", None)
    data["subject"] = record.subject
    return data


def _close_json(run: CloseRun) -> dict[str, Any]:
    from shared.close.attempts import run_attempt

    data = run.model_dump(mode="json")
    data["subject"] = f"close:{run.id}"
    data["attempt"] = run_attempt(run)
    return data


def _event_json(event: AuditEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


def _preview(text: str | None, full: bool) -> str:
    if text is None:
        return ""
    if full or len(text) <= BODY_PREVIEW_CHARS:
        return text
    return text[:BODY_PREVIEW_CHARS] + f"... [{len(text) - BODY_PREVIEW_CHARS} more chars; --full shows all]"


def _transition_style(message: str) -> str:
    target = message.split(":", 1)[0].rsplit("->", maxsplit=1)[-1].strip().split(" ")[0]
    return {
        "failed": "bold red",
        "parked": "bold yellow",
        "posted": "green",
        "marked": "bold green",
        "posting": "cyan",
    }.get(target, "")


def render_timeline(console: Console, events: list[AuditEvent], full: bool) -> None:
    """Print a timeline: transitions, notes and HTTP attempts, oldest first."""
    if not events:
        console.print(
            "  (no audit events; they may have been pruned after LEDGERBRIDGE_AUDIT_RETENTION_DAYS)"
        )
        return
    for event in events:
        at = event.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        line = Text(f"  {at}  ")
        if event.kind == "http":
            status = str(event.status) if event.status is not None else "no response"
            ok = event.status is not None and event.status < 400
            line.append(f"{event.api or 'http'} ", style="bold")
            line.append(f"{event.method} {event.url} -> ")
            line.append(status, style="green" if ok else "bold red")
            duration = f" {event.duration_ms:.0f} ms" if event.duration_ms is not None else ""
            extras = [f"attempt {event.attempt}"] if event.attempt else []
            if event.request_id:
                extras.append(f"request id {event.request_id}")
            line.append(f"{duration}" + (f" ({', '.join(extras)})" if extras else ""))
            console.print(line)
            if event.message:
                console.print(Text(f"      error: {event.message}", style="red"))
            if event.request_body:
                console.print(Text(f"      request:  {_preview(event.request_body, full)}", style="dim"))
            if event.response_body:
                console.print(Text(f"      response: {_preview(event.response_body, full)}", style="dim"))
            if full and event.response_headers:
                console.print(
                    Text(f"      response headers: {json.dumps(event.response_headers)}", style="dim")
                )
        elif event.kind == "transition":
            line.append("state ", style="bold")
            line.append(event.message or "", style=_transition_style(event.message or ""))
            console.print(line)
        else:
            line.append("note ", style="bold")
            line.append(event.message or "")
            console.print(line)


def _record_rows(record: SyncRecord) -> list[tuple[str, str]]:
    rows = [
        ("type", record.object_type),
        ("zuora id", record.zuora_id),
        ("number", record.zuora_number or ""),
        ("state", record.state),
        ("attempts", str(record.attempts)),
        ("last error", record.last_error or ""),
        (
            "erp ref",
            (record.erp_ref or "") + (" (released)" if record.erp_ref and record.erp_released else ""),
        ),
        ("posted at", utc_time(record.posted_at)),
        ("marked at", utc_time(record.marked_at)),
        ("period", record.period_name or ""),
        ("next attempt", utc_time(record.next_attempt_at)),
        ("source", record.source),
        ("account", record.account_id or ""),
        ("close run", str(record.close_run_id) if record.close_run_id is not None else ""),
        ("zuora updated", utc_time(record.zuora_updated)),
        ("first seen", utc_time(record.created_at)),
        (
            "changed in zuora",
            f"{utc_time(record.changed_at)} (being carried to the ERP)" if record.changed_at else "",
        ),
        ("needs a person", record.change_note or ""),
    ]
    return [(k, v) for k, v in rows if v != "" or k in ("state", "attempts", "erp ref", "last error")]


def _close_rows(run: CloseRun) -> list[tuple[str, str]]:
    from shared.close.attempts import run_attempt

    return [
        ("period", run.period_name),
        ("kind", "dry run" if run.dry_run else "close"),
        ("status", run.status),
        ("attempt", str(run_attempt(run))),
        ("step", run.step),
        ("period id", run.period_id or ""),
        ("journal run", run.journal_run_number or ""),
        ("error", run.error or ""),
        ("started", utc_time(run.created_at)),
        ("finished", utc_time(run.finished_at)),
    ]
