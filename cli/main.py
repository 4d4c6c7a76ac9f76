"""The ``ledgerbridge`` command.

Exit codes: 0 done, 1 something needs a person (the message says what), 2 bad usage or
configuration (the message says which variable or argument to fix).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.settings import SettingsError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Move Zuora Billing accounting data into an ERP."
)
db_app = typer.Typer(no_args_is_help=True, help="The ledger database.")
sandbox_app = typer.Typer(
    no_args_is_help=True, help="Local Zuora and Acumatica sandboxes (real HTTP servers)."
)
secrets_app = typer.Typer(no_args_is_help=True, help="Encryption of secrets at rest.")
period_app = typer.Typer(no_args_is_help=True, help="Zuora accounting periods.")
app.add_typer(db_app, name="db")
app.add_typer(sandbox_app, name="sandbox")
app.add_typer(secrets_app, name="secrets")
app.add_typer(period_app, name="period")

console = Console()
err = Console(stderr=True)

ConnectionOpt = Annotated[
    str | None, typer.Option("--connection", "-c", help="Connection name (default: LEDGERBRIDGE_CONNECTION).")
]


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return typer.Exit(code)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the ledger's migrations to LEDGERBRIDGE_DATABASE_URL."""
    from shared import ports
    from shared.ledger.migrate import current_revision, upgrade

    url = ports.settings().database_url
    upgrade(url)
    console.print(f"ledger at revision {current_revision(url)}")


@db_app.command("current")
def db_current() -> None:
    """Print the ledger's migration revision."""
    from shared import ports
    from shared.ledger.migrate import current_revision

    console.print(current_revision(ports.settings().database_url) or "empty (run `ledgerbridge db upgrade`)")


@secrets_app.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new Fernet key for LEDGERBRIDGE_SECRET_KEY."""
    from cryptography.fernet import Fernet

    console.print(Fernet.generate_key().decode(), highlight=False)


@sandbox_app.command("zuora")
def sandbox_zuora(
    port: Annotated[int, typer.Option(help="Port to listen on (loopback).")] = 8081,
    seed: Annotated[int, typer.Option(help="Seed for the generated data.")] = 1,
    client_id: Annotated[str | None, typer.Option(help="The only OAuth client id accepted.")] = None,
    client_secret: Annotated[str | None, typer.Option(help="The only OAuth client secret accepted.")] = None,
) -> None:
    """Serve the Zuora sandbox until interrupted."""
    from sandbox.zuora import app as zuora_sandbox

    zuora_sandbox.run(port=port, seed=seed, client_id=client_id, client_secret=client_secret)


@sandbox_app.command("acumatica")
def sandbox_acumatica(
    port: Annotated[int, typer.Option(help="Port to listen on (loopback).")] = 8082,
    endpoint: Annotated[str, typer.Option(help="The only endpoint version served.")] = "Default/24.200.001",
    username: Annotated[str | None, typer.Option(help="The only user accepted.")] = None,
    password: Annotated[str | None, typer.Option(help="That user's password.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant name.")] = None,
) -> None:
    """Serve the Acumatica sandbox until interrupted."""
    from sandbox.acumatica import app as acumatica_sandbox

    credentials = {"username": username, "password": password, "tenant": tenant}
    acumatica_sandbox.run(
        port=port, endpoint=endpoint, **{k: v for k, v in credentials.items() if v is not None}
    )


def _period_table(period: dict[str, Any]) -> Table:
    """Two columns, the fields Finance reads on GET /v1/accounting-periods/{id}."""
    table = Table(show_header=False, box=None)
    for key in (
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
    ):
        value = period.get(key)
        table.add_row(f"[bold]{key}[/]", "-" if value is None else str(value))
    return table


@period_app.command("show")
def period_show(
    name: Annotated[str, typer.Argument(help='Accounting period name, e.g. "December 2024" or "Dec\'16".')],
    connection: ConnectionOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Look an accounting period up by name in Zuora and print it."""
    from shared import ports

    conn = ports.connection(connection)
    period = ports.zuora(conn).periods.find_by_name(name)
    if period is None:
        raise _fail(f"no accounting period named {name!r} in Zuora ({conn.zuora.base_url})", 1)
    if as_json:
        console.print_json(json.dumps(dict(period.raw), default=str))
    else:
        console.print(_period_table(dict(period.raw)))


# -- the summary-GL close ------------------------------------------------------------------------

journal_entry_app = typer.Typer(no_args_is_help=True, help="Manual summary journal entries in Zuora.")
app.add_typer(journal_entry_app, name="journal-entry")

STEP_TITLES = {
    "lookup": "look up the period",
    "trial_balance": "trial balance",
    "close_period": "close the period",
    "journal_run": "journal run",
    "fetch": "fetch journal entries",
    "check": "check entries",
    "post": "post to the ERP",
    "mark": "mark transferred",
    "verify": "verify",
    "reconcile": "reconcile",
    "discard": "cancel the dry run's journal run",
}
STATE_MARKS = {
    "done": "[green]✓[/]",
    "skipped": "[dim]-[/]",
    "running": "[yellow]…[/]",
    "stopped": "[bold red]✗[/]",
    "pending": "[dim]·[/]",
}


def _step_detail(step: str, st: dict[str, Any], run: Any, prog: Any) -> str:
    """One line about a step of a close run, from what the step recorded."""
    polls = f" ({st['polls']} polls)" if st.get("polls") else ""
    if st.get("stopped"):
        return "stopped (see below)"
    if step == "lookup":
        return f"{st['period_id']} ({st.get('status')})" if st.get("period_id") else ""
    if step in ("trial_balance", "close_period"):
        if st.get("skipped"):
            return str(st["skipped"])
        if st.get("done_at"):
            if step == "close_period":
                return "closed, trial balance completed"
            return "completed" + polls if st.get("ours") else "already completed before this close"
        return f"waiting{polls}" if st.get("requested") or st.get("polls") else ""
    if step == "journal_run":
        number = st.get("number") or ""
        return f"{number} {st.get('status') or ('waiting' + polls if number else '')}".strip()
    if step == "fetch":
        return f"{st['count']} entries in {st['pages']} page(s)" if "count" in st else ""
    if step == "check" and "entries" in st:
        bad, skipped = len(st.get("bad") or {}), len(st.get("skipped") or {})
        return f"{st['entries'] - bad - skipped} ok, {skipped} skipped, {bad} with problems"
    if step == "post" and prog.entries:
        doubt = f", {prog.in_doubt} in doubt" if prog.in_doubt else ""
        return f"{prog.posted}/{prog.entries} posted{doubt}"
    if step == "mark" and prog.entries:
        return f"{prog.marked}/{prog.entries} marked transferredToAccounting=Yes"
    if step == "verify" and st.get("done_at"):
        return f"{st.get('entries', 0)} entries Yes in Zuora, each with an ERP reference"
    if step == "reconcile" and st.get("done_at"):
        return f"{len(st.get('lines') or [])} account lines match to the cent"
    if step == "discard" and st.get("done_at"):
        return f"journal run {st.get('cancelled')} cancelled" if st.get("cancelled") else "nothing to cancel"
    return ""


def _close_table(run: Any) -> Table:
    """The step list of a close run with each step's state and progress."""
    from shared import ports, summary_gl

    prog = summary_gl.progress(ports.ledger(), run)
    steps = summary_gl.steps_of(run)
    current = steps.index(run.step) if run.step in steps else len(steps)
    kind = "dry run" if run.dry_run else "close"
    table = Table(
        title=escape(f"{kind} {run.id}: {run.period_name} ({run.connection}) - {run.status}"),
        title_justify="left",
    )
    table.add_column("", width=1)
    table.add_column("step")
    table.add_column("detail")
    for index, step in enumerate(steps):
        st = dict(run.details.get(step) or {})
        if index < current:
            state = "done" if st.get("done_at") else "skipped"
        elif index == current:
            state = "stopped" if run.status in ("needs_attention", "failed") else "running"
        else:
            state = "pending"
        table.add_row(
            STATE_MARKS[state], STEP_TITLES.get(step, step), escape(_step_detail(step, st, run, prog))
        )
    return table


def _preview_table(run: Any) -> Table:
    check = dict(run.details.get("check") or {})
    table = Table(title="would be posted", title_justify="left")
    for column in ("entry", "currency", "account", "subaccount", "debit", "credit", "line"):
        table.add_column(column, justify="right" if column in ("debit", "credit") else "left")
    for item in check.get("preview") or []:
        for line in item["lines"]:
            cells = (
                item["number"],
                item["currency"],
                line["account"],
                line.get("subaccount") or "",
                str(line["debit"]) if line["debit"] else "",
                str(line["credit"]) if line["credit"] else "",
                line.get("description") or "",
            )
            table.add_row(*(escape(str(c)) for c in cells))
    return table


def _show_outcome(run: Any) -> int:
    """Print how a close run ended; returns the exit code (0 done, 1 needs a person)."""
    if run.status == "done":
        console.print(
            f"[green]done:[/] close run {run.id} of {escape(repr(run.period_name))} posted, marked and reconciled"
        )
        return 0
    if run.status == "dry_run":
        check = dict(run.details.get("check") or {})
        console.print(_preview_table(run))
        for currency, totals in sorted((check.get("totals") or {}).items()):
            console.print(
                f"total {currency}: debit {totals['debit']}  credit {totals['credit']}", highlight=False
            )
        skipped = check.get("skipped") or {}
        for number, reason in sorted(skipped.items()):
            console.print(escape(f"skipped {number}: {reason}"), highlight=False)
        bad = check.get("bad") or {}
        for number, reasons in sorted(bad.items()):
            err.print(
                f"[bold red]would be parked:[/] {escape(number + ': ' + ' / '.join(reasons))}",
                highlight=False,
            )
        console.print(
            f"dry run {run.id}: nothing was posted or marked; the dry run's journal run was cancelled"
        )
        return 1 if bad else 0
    if run.status in ("needs_attention", "failed"):
        err.print(f"[bold red]needs attention:[/] {escape(str(run.error))}", highlight=False)
        differences = dict(run.details.get("reconcile") or {}).get("differences") or []
        if differences:
            table = Table(title="differences", title_justify="left")
            for column in differences[0]:
                table.add_column(column)
            for line in differences:
                table.add_row(*(escape(str(v)) for v in line.values()))
            err.print(table)
        return 1
    err.print(f"close run {run.id} is still {run.status} at step {run.step}")
    return 1


def _follow(run_id: int, timeout: float) -> Any:
    """Show the step list live until the run stops running (or ``timeout`` seconds, 0 = none)."""
    import time

    from rich.live import Live

    from shared import ports

    ledger = ports.ledger()
    run = ledger.get_close_run(run_id)
    started = time.monotonic()
    with Live(_close_table(run), console=console, refresh_per_second=4, transient=False) as live:
        while run.status == "running":
            if timeout and time.monotonic() - started > timeout:
                break
            time.sleep(0.5)
            run = ledger.get_close_run(run_id)
            live.update(_close_table(run))
    if not console.is_terminal:
        console.line()  # Live leaves no newline after its last render when output is not a terminal
    return run


@app.command("close")
def close(  # noqa: PLR0917 - typer turns each parameter into an argument or option
    period: Annotated[str, typer.Argument(help='Accounting period name, e.g. "December 2024" or "Dec\'16".')],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the close live until it ends.")] = False,
    allow_closed: Annotated[
        bool, typer.Option("--allow-closed", help="Run the journal run even if the period is already Closed.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Stop after checking the entries and print what would be posted."),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up watching after this many seconds.")
    ] = 0.0,
    connection: ConnectionOpt = None,
) -> None:
    """Close a Zuora accounting period end to end: trial balance, close, journal run, post each
    summary journal entry to the ERP once, mark it transferred, verify and reconcile.

    Prints the close run id. A close of a period that is already being closed attaches to it.
    Exit codes with --wait (or --dry-run, which always waits): 0 done, 1 needs a person."""
    from shared import ports
    from worker.tasks.close import start_close

    if not period.strip():
        raise _fail("the period name must not be empty", 2)
    conn = ports.connection(connection)
    started = start_close(conn.name, period, allow_closed=allow_closed, dry_run=dry_run)
    kind = "dry run" if dry_run else "close run"
    console.print(
        escape(f"{kind} {started.run.id} {started.action} for {period!r} on {conn.name}"), highlight=False
    )
    if not (wait or dry_run):
        return
    run = _follow(started.run.id or 0, timeout)
    raise typer.Exit(_show_outcome(run))


@app.command("close-status")
def close_status(
    run_id: Annotated[int | None, typer.Argument(help="A close run id; without it, the latest runs.")] = None,
    connection: ConnectionOpt = None,
) -> None:
    """Show a close run (its steps, progress, problems), or list the connection's latest runs.
    Exit code 1 when the run needs a person."""
    from shared import ports
    from shared.ledger.errors import RecordNotFound

    ledger = ports.ledger()
    if run_id is None:
        name = connection or ports.settings().connection
        table = Table(title=f"close runs of {name}", title_justify="left")
        for column in ("id", "period", "kind", "status", "step", "journal run", "started", "finished"):
            table.add_column(column)
        for run in ledger.latest_close_runs(name):
            table.add_row(
                str(run.id),
                escape(run.period_name),
                "dry run" if run.dry_run else "close",
                run.status,
                run.step,
                run.journal_run_number or "",
                run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                run.finished_at.strftime("%Y-%m-%d %H:%M:%S") if run.finished_at else "",
            )
        console.print(table)
        return
    try:
        run = ledger.get_close_run(run_id)
    except RecordNotFound:
        raise _fail(f"there is no close run {run_id}", 2) from None
    console.print(_close_table(run))
    if run.status == "running":
        return
    raise typer.Exit(_show_outcome(run))


@journal_entry_app.command("create")
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
        raise _fail(str(exc), 2) from None
    settings = ports.settings()
    if settings.mapping_file is None:
        raise _fail(
            "LEDGERBRIDGE_MAPPING_FILE is not set: the entry's currency and codes are checked against it", 2
        )
    try:
        mapping = load_mapping(settings.mapping_file)
    except MappingFileError as exc:
        raise _fail(str(exc), 2) from None
    zuora = ports.zuora(ports.connection(connection))
    problems = journal_entry.check_entry(
        zuora, entry, mapping=mapping, home_currency_amounts=home_currency_amounts
    )
    if problems:
        err.print(
            f"[bold red]{escape(str(file))} is not a valid journal entry ({len(problems)} problems):[/]",
            highlight=False,
        )
        for problem in problems:
            err.print(f"  - {escape(problem)}", highlight=False)
        raise typer.Exit(1)
    if dry_run:
        console.print(escape(f"{file} is valid; nothing was created (--dry-run)"), highlight=False)
        return
    number = zuora.journal_entries.create(dict(entry), idempotency_key=journal_entry.idempotency_parts(entry))
    console.print(number, highlight=False)


# -- the mapping file: `ledgerbridge mapping check` ----------------------------------------------

mapping_app = typer.Typer(no_args_is_help=True, help="The mapping file (LEDGERBRIDGE_MAPPING_FILE).")
app.add_typer(mapping_app, name="mapping")


@mapping_app.command("check")
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
        raise _fail("LEDGERBRIDGE_MAPPING_FILE is not set: there is no mapping file to check", 2)
    try:
        mapping = load_mapping(settings.mapping_file)
        checked = period_of(period) if period is not None else period_of(dt.date.today())
    except MappingFileError as exc:
        raise _fail(str(exc), 2) from None
    except ValueError as exc:
        raise _fail(f"--period: {exc}", 2) from None
    conn = ports.connection(connection)
    try:
        problems = check_mapping(mapping, ports.erp(conn), checked)
    except AuthFailed as exc:
        raise _fail(str(exc), 2) from None
    except ApiError as exc:
        raise _fail(f"could not ask the ERP: {exc}", 1) from None
    finally:
        ports.close_all()  # logs out of the ERP session this command signed in (pitfall 10)
    where = f"{conn.erp_kind} ({conn.name})"
    if problems:
        err.print(
            f"[bold red]{escape(str(settings.mapping_file))}: {len(problems)} problem(s) in {where}:[/]",
            highlight=False,
        )
        for problem in problems:
            err.print(f"  - {escape(problem)}", highlight=False)
        raise typer.Exit(1)
    console.print(
        escape(
            f"{settings.mapping_file} is valid; {where} reports no problem with its "
            f"{len(mapping.erp_accounts())} accounts, {len(mapping.erp_currencies())} currencies "
            f"and period {checked}"
        ),
        highlight=False,
    )


# -- item-level sync: `ledgerbridge sync` and `ledgerbridge status` (cli/item_level.py) --
from cli import item_level as cli_item_level  # noqa: E402 - registered here, defined there

cli_item_level.register(app, console, err)


@app.command("demo")
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
) -> None:
    """Run the main job end to end against the sandboxes and print a report.

    Starts both sandboxes, Celery workers, beat and the callout receiver; seeds a month; runs the
    item-level sync, fires callouts, runs the period close; stops everything on exit or Ctrl-C.
    Exit code 0 when every document and journal entry is posted once, marked and reconciled.
    """
    from cli.demo import DEMO_SIZES, DemoError, DemoOptions, run_demo

    sizes = {k: max(1, round(v * scale)) if k in _SCALED else v for k, v in DEMO_SIZES.items()}
    opts = DemoOptions(
        workdir=workdir.resolve(), redis_url=_settings_redis_url(), sizes=sizes, workers=workers
    )
    try:
        code = run_demo(opts, console)
    except DemoError as exc:
        raise _fail(str(exc), 1) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; every demo process was stopped", 130) from None
    raise typer.Exit(code)


_SCALED = ("accounts", "invoices", "payments", "refunds", "credit_memos", "debit_memos", "tie_count")


def _settings_redis_url() -> str:
    from shared import ports

    return ports.settings().redis_url


from cli.admin import register as register_admin  # noqa: E402 - registered here, defined there

register_admin(app, secrets_app)

from cli.replay import register as register_replay  # noqa: E402 - registered here, defined there

register_replay(app)


def main() -> None:
    """Console-script entry point: configuration problems exit 2 with the variable to fix."""
    from shared.errors import ApiError

    try:
        app()
    except SettingsError as exc:
        err.print(f"[bold red]configuration error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except ApiError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
