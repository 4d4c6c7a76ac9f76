"""``ledgerbridge demo``: the whole system against the two sandboxes on this machine.

Starts Redis (if none answers and ``redis-server`` is installed), both sandboxes, Celery
workers, beat and the callout receiver as child processes, seeds a realistic month, runs the
item-level sync and a full period close, and prints a report (:mod:`cli.demo_run`). Every child
process is stopped on exit or Ctrl-C. The run's modules are imported inside the command: the
sandboxes are not part of the product, and the other commands start without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.output import fail, out
from cli.sandbox import require_sandbox

# The seeded month's sizes that --scale multiplies (the rest are shapes: item counts, names).
SCALED = ("accounts", "invoices", "payments", "refunds", "credit_memos", "debit_memos", "tie_count")


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``ledgerbridge`` command."""
    app.command("demo")(demo)


def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the demo's ledger and process logs.")] = Path(
        ".ledgerbridge/demo"
    ),
    scale: Annotated[
        float,
        typer.Option(
            min=0.01, max=10.0, help="Multiply the seeded month's sizes (1 = 300 accounts, ~3,200 documents)."
        ),
    ] = 1.0,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Celery worker processes.")] = 2,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="After the report, keep everything up for the Finance console until Ctrl-C."
        ),
    ] = False,
    approval: Annotated[
        str,
        typer.Option(
            help="The demo connection's approval rule: none, or close (the close waits for the demo's "
            "approver to approve it in the console; use with --serve)."
        ),
    ] = "none",
) -> None:
    """Run the main job end to end against the sandboxes and print a report.

    Starts both sandboxes, Celery workers, beat and the callout receiver; seeds a month; runs the
    item-level sync, fires callouts, runs the period close; prints the Finance console's address
    and its users' passwords (made for the run); stops everything on exit or Ctrl-C (with --serve,
    only on Ctrl-C). Exit code 0 when every document and journal entry is posted once, marked and
    reconciled.
    """
    require_sandbox()
    from cli.demo_run import run_demo
    from cli.demo_stack import DEMO_SIZES, DemoError, DemoOptions
    from shared import ports

    if approval not in ("none", "close"):
        raise fail(f"--approval must be none or close, not {approval!r}", 2)
    sizes = {k: max(1, round(v * scale)) if k in SCALED else v for k, v in DEMO_SIZES.items()}
    opts = DemoOptions(
        workdir=workdir.resolve(),
        redis_url=ports.settings().redis_url,
        sizes=sizes,
        workers=workers,
        serve=serve,
        approval=approval,
    )
    try:
        code = run_demo(opts, out(highlight=True))
    except DemoError as exc:
        raise fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise fail("interrupted; every demo process was stopped", 130) from None
    raise typer.Exit(code)
