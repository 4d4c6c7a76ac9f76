"""``ledgerbridge period show``: a Zuora accounting period as Finance reads it."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from cli.common import ConnectionOpt
from cli.output import fail, field_table, out, print_json

# The fields Finance reads on GET /v1/accounting-periods/{id}, in this order.
PERIOD_FIELDS = (
    "name",
    "id",
    "startDate",
    "endDate",
    "status",
    "fiscalYear",
    "runTrialBalanceStatus",
    "runTrialBalanceStart",
    "runTrialBalanceEnd",
    "runTrialBalanceErrorMessage",
)


def register(app: typer.Typer) -> None:
    """Add the ``period`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(no_args_is_help=True, help="Zuora accounting periods.")
    group.command("show")(period_show)
    app.add_typer(group, name="period")


def period_table(period: dict[str, Any]) -> Table:
    """Two columns, the fields Finance reads, ``-`` for those Zuora left out."""
    return field_table((key, "-" if period.get(key) is None else str(period[key])) for key in PERIOD_FIELDS)


def period_show(
    name: Annotated[str, typer.Argument(help='Accounting period name, e.g. "December 2024" or "Dec\'16".')],
    connection: ConnectionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Look an accounting period up by name in Zuora and print it."""
    from shared import ports

    conn = ports.connection(connection)
    try:
        period = ports.zuora(conn).periods.find_by_name(name)
    except ValueError as exc:  # a name no query can carry (bytes that are not UTF-8)
        raise fail(str(exc), 2) from None
    if period is None:
        raise fail(f"no accounting period named {name!r} in Zuora ({conn.zuora.base_url})", 1)
    if as_json:
        print_json(dict(period.raw))
    else:
        out().print(period_table(dict(period.raw)))
