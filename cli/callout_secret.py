"""``ledgerbridge connection callout-secret NAME``: a stored connection's callout HMAC secret."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from cli.common import ledger_at_head
from cli.output import err, fail, out, usage_errors


def callout_secret(
    name: Annotated[str, typer.Argument(help="The stored connection.")],
    value: Annotated[
        str | None,
        typer.Option("--value", help="Use this secret (at least 16 characters) instead of a generated one."),
    ] = None,
    finish: Annotated[
        bool,
        typer.Option("--finish", help="End a rotation: stop accepting the previous secret."),
    ] = False,
) -> None:
    """Give a stored connection a new callout secret (generated unless --value), printed once. The
    previous one is still accepted until --finish, so callouts keep arriving while the secret is
    changed in the connection's Zuora callout template (HMAC secret). Each connection has its own:
    one tenant's secret cannot sign another connection's callouts."""
    from shared import ports
    from shared.callouts import finish_callout_rotation, new_callout_secret, rotate_callout_secret

    if finish and value is not None:
        raise fail("give --value or --finish, not both", 2)
    with usage_errors():
        box = ports.secret_box()
        ledger = ledger_at_head()
        if finish:
            finish_callout_rotation(ledger, box, name)
            out().print(escape(f"connection {name}: only the current callout secret is accepted now"))
            return
        secret = value or new_callout_secret()
        try:
            conn = rotate_callout_secret(ledger, box, name, secret)
        except ValueError as exc:
            raise fail(f"--value: {exc}", 2) from None
    out().print(escape(f"connection {name}: new callout secret (shown once): {secret}"))
    if len(conn.callout_secrets) > 1:
        err().print(
            "[yellow]note:[/] the previous secret is still accepted: once the Zuora callout template "
            f"signs with the new one, run `ledgerbridge connection callout-secret {escape(name)} --finish`"
        )
