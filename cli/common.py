"""What several ``ledgerbridge`` commands share besides their output: the ``--connection`` option
and the ledger they read and write."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from shared.ledger.repo import Ledger

ConnectionOpt = Annotated[
    str | None, typer.Option("--connection", "-c", help="Connection name (default: LEDGERBRIDGE_CONNECTION).")
]
# Who decides on something waiting for approval (a close, a manual journal entry).
ApproverOpt = Annotated[
    str, typer.Option("--as", help="The approver deciding (a ledgerbridge user, approver or admin).")
]


def ledger_at_head() -> Ledger:
    """The ledger, after checking its schema is at this release's head (``SchemaOutOfDate``, a
    ``LedgerError``, otherwise: :func:`cli.output.usage_errors` turns it into exit code 2)."""
    from shared import ports
    from shared.ledger.migrate import check_up_to_date

    check_up_to_date(ports.settings().database_url)
    return ports.ledger()
