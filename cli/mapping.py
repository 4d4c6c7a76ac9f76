"""``ledgerbridge mapping check``: the mapping file, checked against the connection's ERP."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from cli.common import ConnectionOpt
from cli.output import err, fail, out


def register(app: typer.Typer) -> None:
    """Add the ``mapping`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(no_args_is_help=True, help="The mapping file (LEDGERBRIDGE_MAPPING_FILE).")
    group.command("check")(mapping_check)
    app.add_typer(group, name="mapping")


def mapping_check(
    connection: ConnectionOpt = None,
    period: Annotated[
        str | None, typer.Option(help="The posting period that must be open, YYYY-MM (default: this month).")
    ] = None,
) -> None:
    """Validate LEDGERBRIDGE_MAPPING_FILE, then ask the connection's ERP that every account and
    currency it names exists and is active, and that the period is open. Prints every problem at
    once. Exit codes: 0 ready, 1 problems in the ERP, 2 no or invalid mapping file or configuration."""
    import datetime as dt

    from shared import ports
    from shared.erp.base import period_of
    from shared.errors import ApiError, AuthFailed
    from shared.mapping import MappingFileError, check_mapping, load_mapping

    settings = ports.settings()
    if settings.mapping_file is None:
        raise fail("LEDGERBRIDGE_MAPPING_FILE is not set: there is no mapping file to check", 2)
    try:
        mapping = load_mapping(settings.mapping_file)
        checked = period_of(period) if period is not None else period_of(dt.date.today())
    except MappingFileError as exc:
        raise fail(str(exc), 2) from None
    except ValueError as exc:
        raise fail(f"--period: {exc}", 2) from None
    conn = ports.connection(connection)
    try:
        problems = check_mapping(mapping, ports.erp(conn), checked)
    except AuthFailed as exc:
        raise fail(str(exc), 2) from None
    except ApiError as exc:
        raise fail(f"could not ask the ERP: {exc}", 1) from None
    finally:
        ports.close_all()  # logs out of the ERP session this command signed in (pitfall 10)
    where = f"{conn.erp_kind} ({conn.name})"
    if problems:
        errors = err()
        errors.print(
            f"[bold red]{escape(str(settings.mapping_file))}: {len(problems)} problem(s) in {where}:[/]"
        )
        for problem in problems:
            errors.print(f"  - {escape(problem)}")
        raise typer.Exit(1)
    out().print(
        escape(
            f"{settings.mapping_file} is valid; {where} reports no problem with its "
            f"{len(mapping.erp_accounts())} accounts, {len(mapping.erp_currencies())} currencies "
            f"and period {checked}"
        )
    )
