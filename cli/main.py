"""The ``ledgerbridge`` command: the root app, each command group registered in help order, and
the console-script entry point.

Every module of this package registers its commands the same way, ``register(app)``; the work
is in ``shared/`` (and ``worker/`` for what the workers run), the modules here parse and print.
Exit codes: 0 done, 1 something needs a person (the message says what), 2 bad usage or
configuration (the message says which variable or argument to fix).
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from cli import (
    close,
    connection,
    db,
    demo,
    evidence,
    explain,
    journal_entry,
    mapping,
    period,
    replay,
    sandbox,
    secrets,
    sync,
    user,
)
from cli.output import err
from shared.settings import SettingsError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Move Zuora Billing accounting data into an ERP."
)
# Registration order is help order: typer lists the plain commands first, then the groups, each
# in the order they were registered.
COMMANDS = (
    db,
    sandbox,
    secrets,
    period,
    close,
    evidence,
    journal_entry,
    mapping,
    sync,
    demo,
    explain,
    connection,
    replay,
    user,
)
for commands in COMMANDS:
    commands.register(app)


# ``ledgerbridge close approve 7`` is ``ledgerbridge close-approve 7`` (and so on): ``close`` itself
# takes a period name, and no accounting period is called approve, reject, status or evidence.
CLOSE_SUBCOMMANDS = ("approve", "reject", "status", "evidence")


def with_close_subcommands(argv: list[str]) -> list[str]:
    """``argv`` with ``close <sub>`` written as the command ``close-<sub>``."""
    for index, word in enumerate(argv):
        if word.startswith("-"):
            continue  # a global option before the command
        if word == "close" and index + 1 < len(argv) and argv[index + 1] in CLOSE_SUBCOMMANDS:
            return [*argv[:index], f"close-{argv[index + 1]}", *argv[index + 2 :]]
        return argv
    return argv


def main() -> None:
    """Console-script entry point: configuration problems exit 2 with the variable to fix; an API
    error no command handled exits 1 with its message."""
    from shared.errors import ApiError

    try:
        app(args=with_close_subcommands(sys.argv[1:]))
    except SettingsError as exc:
        err().print(f"[bold red]configuration error:[/] {escape(str(exc))}")
        sys.exit(2)
    except ApiError as exc:
        err().print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(1)


if __name__ == "__main__":
    main()
