"""``ledgerbridge journal-entry create``: a manual summary journal entry, checked, then created in
Zuora once (its Idempotency-Key is derived from its content)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import ConnectionOpt
from cli.output import err, fail, out


def register(app: typer.Typer) -> None:
    """Add the ``journal-entry`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(no_args_is_help=True, help="Manual summary journal entries in Zuora.")
    group.command("create")(journal_entry_create)
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
) -> None:
    """Validate a manual summary journal entry (listing every problem), then create it in Zuora
    with an Idempotency-Key derived from its content; prints the new JE number.
    Exit codes: 0 created (or valid with --dry-run), 1 invalid, 2 unreadable file or configuration."""
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
    zuora = ports.zuora(ports.connection(connection))
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
    number = zuora.journal_entries.create(dict(entry), idempotency_key=journal_entry.idempotency_parts(entry))
    out().print(number)
