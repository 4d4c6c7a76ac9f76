"""``ledgerbridge close-evidence``: the evidence pack of a period's close, as one zip.

The pack (``shared.evidence``) holds the close runs' timeline, the approvals, the reconciliation,
every exception and who resolved it, the mapping file in force and the configuration without
secrets. Exit codes: 0 written, 2 bad usage (no close run of that period on the connection, a
file that cannot be written).
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.common import ConnectionOpt, ledger_at_head
from cli.output import fail, out, usage_errors


def register(app: typer.Typer) -> None:
    """Add ``close-evidence`` to the ``ledgerbridge`` command."""
    app.command("close-evidence")(close_evidence)


def _login_name() -> str:
    try:
        return os.environ.get("LEDGERBRIDGE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def close_evidence(
    period: Annotated[str, typer.Argument(help='Accounting period name, e.g. "December 2024".')],
    out_file: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the zip (its folder is created).")
    ],
    connection: ConnectionOpt = None,
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Who generates the pack (named in it). Default: LEDGERBRIDGE_USER, else the login name.",
        ),
    ] = None,
) -> None:
    """Write the evidence pack of PERIOD's close: every close run's timeline, approvals with who
    and when, the reconciliation (CSV), every exception and who resolved it, the mapping file in
    force and the configuration without secrets."""
    from shared import ports
    from shared.evidence import NoCloseRun, build_evidence_pack

    with usage_errors():
        settings = ports.settings()
        ledger = ledger_at_head()
    name = connection or settings.connection
    generated_by = as_user or _login_name()
    try:
        data = build_evidence_pack(ledger, settings, name, period, generated_by=generated_by)
    except NoCloseRun as exc:
        raise fail(str(exc), 2) from None
    target = out_file.expanduser()
    partial = target.with_name(f".{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise fail(f"cannot write {target}: {exc.strerror or exc}", 2) from None
    out().print(escape(f"evidence pack of {period!r} on {name}: {target} ({len(data):,} bytes)"))
