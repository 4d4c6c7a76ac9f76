"""``ledgerbridge db upgrade|current``: the ledger database's schema."""

from __future__ import annotations

import typer

from cli.output import out


def register(app: typer.Typer) -> None:
    """Add the ``db`` group to the ``ledgerbridge`` command."""
    group = typer.Typer(no_args_is_help=True, help="The ledger database.")
    group.command("upgrade")(db_upgrade)
    group.command("current")(db_current)
    app.add_typer(group, name="db")


def db_upgrade() -> None:
    """Apply the ledger's migrations to LEDGERBRIDGE_DATABASE_URL."""
    from shared import ports
    from shared.ledger.migrate import current_revision, upgrade

    url = ports.settings().database_url
    upgrade(url)
    out(highlight=True).print(f"ledger at revision {current_revision(url)}")


def db_current() -> None:
    """Print the ledger's migration revision."""
    from shared import ports
    from shared.ledger.migrate import current_revision

    revision = current_revision(ports.settings().database_url)
    out(highlight=True).print(revision or "empty (run `ledgerbridge db upgrade`)")
