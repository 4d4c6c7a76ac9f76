"""``ledgerbridge journal-entry create``: a manual summary journal entry, checked, then created in
Zuora once (its Idempotency-Key is derived from its content)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import ApproverOpt, ConnectionOpt
from cli.output import err, fail, out


def register(app: typer.Typer) -> None:
    """Add the ``journal-entry`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(no_args_is_help=True, help="Manual summary journal entries in Zuora.")
    group.command("create")(journal_entry_create)
    group.command("requests")(journal_entry_requests)
    group.command("approve")(journal_entry_approve)
    group.command("reject")(journal_entry_reject)
    app.add_typer(group, name="journal-entry")


def journal_entry_create(
    file: Annotated[Path, typer.Argument(help="The entry as JSON (the body of POST /v1/journal-entries).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; create nothing.")] = False,
    home_currency_amounts: Annotated[
        bool,
        typer.Option(
            "--home-currency-amounts",
            help="The tenant converts to a home currency: every item needs homeCurrencyAmount.",
        ),
    ] = False,
    connection: ConnectionOpt = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Who asks (on a connection with approval all). Default: LEDGERBRIDGE_USER or the login.",
        ),
    ] = None,
) -> None:
    """Validate a manual summary journal entry (listing every problem), then create it in Zuora
    with an Idempotency-Key derived from its content; prints the new JE number. On a connection
    with approval all, the valid entry waits for an approver instead (`journal-entry approve`).
    Exit codes: 0 created or recorded for approval (or valid with --dry-run), 1 invalid, 2
    unreadable file or configuration."""
    from shared import journal_entry, ports
    from shared.mapping import MappingFileError, load_mapping

    try:
        entry = journal_entry.read_entry_file(file)
    except journal_entry.EntryFileError as exc:
        raise fail(str(exc), 2) from None
    settings = ports.settings()
    if settings.mapping_file is None:
        raise fail(
            "LEDGERBRIDGE_MAPPING_FILE is not set: the entry's currency and codes are checked against it", 2
        )
    try:
        mapping = load_mapping(settings.mapping_file)
    except MappingFileError as exc:
        raise fail(str(exc), 2) from None
    conn = ports.connection(connection)
    zuora = ports.zuora(conn)
    problems = journal_entry.check_entry(
        zuora, entry, mapping=mapping, home_currency_amounts=home_currency_amounts
    )
    if problems:
        errors = err()
        errors.print(
            f"[bold red]{escape(str(file))} is not a valid journal entry ({len(problems)} problems):[/]"
        )
        for problem in problems:
            errors.print(f"  - {escape(problem)}")
        raise typer.Exit(1)
    if dry_run:
        out().print(escape(f"{file} is valid; nothing was created (--dry-run)"))
        return
    if conn.approval == "all":
        from cli.close import login_name
        from shared.journal_requests import RequestRefused, request_entry

        try:
            request = request_entry(ports.ledger(), conn.name, entry, user=as_user or login_name() or "")
        except RequestRefused as exc:
            raise fail(str(exc), 2) from None
        from worker.wiring import deliver_notices_now

        deliver_notices_now()
        out().print(
            escape(
                f"journal entry request {request.id} waits for approval (connection {conn.name} has approval all): "
                f"an approver other than {request.requested_by} runs "
                f"`ledgerbridge journal-entry approve {request.id} --as NAME`"
            )
        )
        return
    number = zuora.journal_entries.create(dict(entry), idempotency_key=journal_entry.idempotency_parts(entry))
    out().print(number)


def journal_entry_requests(
    connection: ConnectionOpt = None,
    status: Annotated[
        str | None, typer.Option("--status", help="Only these: awaiting_approval, created ...")
    ] = None,
) -> None:
    """List the manual journal entries asked for on a connection with approval all, newest first."""
    from cli.output import stored_time, table
    from shared import ports

    name = connection or ports.settings().connection
    shown = table(
        f"journal entry requests of {name}",
        ("id", "status", "period", "currency", "items", "asked by", "asked", "decided by", "JE", "problem"),
    )
    for row in ports.ledger().list_journal_requests(name, status=status):
        entry = row.entry
        cells = (
            row.id,
            row.status,
            entry.get("accountingPeriodName", ""),
            entry.get("currency", ""),
            len(entry.get("journalEntryItems") or []),
            row.requested_by,
            stored_time(row.requested_at),
            row.decided_by or "",
            row.zuora_number or "",
            row.error or "",
        )
        shown.add_row(*(escape(str(c)) for c in cells))
    out().print(shown)


def _decide(request_id: int, user: str, comment: str, *, approve: bool) -> None:
    from cli.close import approver
    from shared import ports
    from shared.journal_requests import CREATED, RequestRefused
    from shared.ledger.errors import RecordNotFound
    from worker.approvals import decide_journal_request

    ledger = ports.ledger()
    approver(ledger, user)
    try:
        row = decide_journal_request(ledger, request_id, user=user, approve=approve, comment=comment)
    except RecordNotFound as exc:
        raise fail(str(exc), 2) from None
    except RequestRefused as exc:
        raise fail(str(exc), 1) from None
    if row.status == CREATED:
        out().print(
            escape(
                f"journal entry request {request_id} approved by {user}: created in Zuora as {row.zuora_number}"
            )
        )
        out().print(row.zuora_number or "")
        return
    if approve:
        err().print(escape(f"journal entry request {request_id} was approved but not created: {row.error}"))
        raise typer.Exit(1)
    out().print(escape(f"journal entry request {request_id} rejected by {user}"))


RequestArg = Annotated[int, typer.Argument(help="The request id (journal-entry requests lists them).")]


def journal_entry_approve(
    request_id: RequestArg,
    as_user: ApproverOpt,
    comment: Annotated[str, typer.Option("--comment", help="Kept with the decision.")] = "",
) -> None:
    """Approve a manual journal entry waiting for approval: it is checked again and created in
    Zuora; prints the JE number. The person who asked for it cannot approve it.
    Exit codes: 0 created, 1 refused or no longer valid, 2 bad usage."""
    _decide(request_id, as_user, comment, approve=True)


def journal_entry_reject(
    request_id: RequestArg,
    as_user: ApproverOpt,
    comment: Annotated[str, typer.Option("--comment", help="What to fix (required).")],
) -> None:
    """Reject a manual journal entry waiting for approval; nothing is created."""
    _decide(request_id, as_user, comment, approve=False)
