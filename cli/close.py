"""``ledgerbridge close`` and ``ledgerbridge close-status``: the summary-GL close of a period.

The close runs in the workers (``worker.tasks.close``); these commands start it and show a close
run's steps, progress and outcome. Exit codes: 0 done, 1 needs a person, 2 bad usage.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cli.common import ApproverOpt, ConnectionOpt
from cli.output import err, fail, out, stored_time, table


def register(app: typer.Typer) -> None:
    """Add ``close`` and ``close-status`` to the ``ledgerbridge`` command."""
    app.command("close")(close)
    app.command("close-status")(close_status)
    app.command("close-approve")(close_approve)
    app.command("close-reject")(close_reject)


STATE_MARKS = {
    "done": "[green]✓[/]",
    "skipped": "[dim]-[/]",
    "running": "[yellow]…[/]",
    "stopped": "[bold red]✗[/]",
    "pending": "[dim]·[/]",
    "awaiting": "[bold yellow]?[/]",
}


def _attempt_label(run: Any, following: int | None) -> str:
    """What the step list's title says about the run's attempt: nothing for a first attempt, and
    when the followed attempt has not begun, that the status shown is an earlier attempt's."""
    from shared.close.attempts import run_attempt

    attempt = run_attempt(run)
    if following is not None and attempt < following:
        return f" (attempt {attempt}); attempt {following} has not started yet"
    return f", attempt {attempt}" if attempt > 1 else ""


def _close_table(run: Any, following: int | None = None) -> Table:
    """The step list of a close run with each step's state and progress (``following``: the
    attempt a waiting command follows)."""
    from shared import ports
    from shared.close.step_lines import step_lines

    kind = "dry run" if run.dry_run else "close"
    title = f"{kind} {run.id}: {run.period_name} ({run.connection}) - {run.status}"
    steps_table = Table(title=escape(title + _attempt_label(run, following)), title_justify="left")
    steps_table.add_column("", width=1)
    steps_table.add_column("step")
    steps_table.add_column("detail")
    for line in step_lines(ports.ledger(), run):
        # The reason of a stop is printed whole below the table.
        detail = "stopped (see below)" if line.detail.startswith("stopped: ") else line.detail
        if line.state == "awaiting":
            detail += "; waiting for approval (see below)"
        steps_table.add_row(STATE_MARKS[line.state], escape(line.title), escape(detail))
    return steps_table


def _preview_table(run: Any) -> Table:
    """The journal-entry lines a dry run would post."""
    check = dict(run.details.get("check") or {})
    preview = table(
        "would be posted",
        ("entry", "currency", "account", "subaccount", "debit", "credit", "line"),
        right=("debit", "credit"),
    )
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
            preview.add_row(*(escape(str(c)) for c in cells))
    return preview


def _show_outcome(run: Any, following: int | None = None) -> int:
    """Print how a close run ended; returns the exit code (0 done, 1 needs a person). With
    ``following`` (the attempt a waiting command follows), an earlier attempt's outcome is not
    reported as the run's: the command says the attempt has not started."""
    from shared.close.attempts import run_attempt

    console, errors = out(), err()
    attempt = run_attempt(run)
    if following is not None and attempt < following:
        errors.print(
            f"close run {run.id}: attempt {following} has not started yet (no worker has taken the resume); "
            f"attempt {attempt} is {run.status}",
            highlight=True,
        )
        return 1
    label = f" (attempt {attempt})" if attempt > 1 else ""
    if run.status == "done":
        console.print(
            f"[green]done:[/] close run {run.id} of {escape(repr(run.period_name))} posted, marked and "
            f"reconciled{label}",
            highlight=True,
        )
        return 0
    if run.status == "dry_run":
        check = dict(run.details.get("check") or {})
        console.print(_preview_table(run))
        for currency, totals in sorted((check.get("totals") or {}).items()):
            console.print(f"total {currency}: debit {totals['debit']}  credit {totals['credit']}")
        skipped = check.get("skipped") or {}
        for number, reason in sorted(skipped.items()):
            console.print(escape(f"skipped {number}: {reason}"))
        bad = check.get("bad") or {}
        for number, reasons in sorted(bad.items()):
            errors.print(f"[bold red]would be parked:[/] {escape(number + ': ' + ' / '.join(reasons))}")
        console.print(
            f"dry run {run.id}: nothing was posted or marked; the dry run's journal run was cancelled",
            highlight=True,
        )
        return 1 if bad else 0
    if run.status == "awaiting_approval":
        _show_approval(run.id)
        return 1
    if run.status in ("needs_attention", "failed"):
        errors.print(f"[bold red]needs attention{label}:[/] {escape(str(run.error))}")
        differences = dict(run.details.get("reconcile") or {}).get("differences") or []
        if differences:
            shown = table("differences", differences[0])
            for line in differences:
                shown.add_row(*(escape(str(v)) for v in line.values()))
            errors.print(shown)
        return 1
    errors.print(f"close run {run.id}{label} is still {run.status} at step {run.step}", highlight=True)
    return 1


def _follow(run_id: int, attempt: int, timeout: float) -> Any:
    """Show the step list live until the run's ``attempt`` (or a later one) has an outcome (or
    ``timeout`` seconds, 0 = none). Until the attempt begins, the run's status is an earlier
    attempt's, so it is waited out, not reported."""
    import time

    from rich.live import Live

    from shared import ports
    from shared.close.attempts import settled

    console = out()
    ledger = ports.ledger()
    run = ledger.get_close_run(run_id)
    started = time.monotonic()
    with Live(_close_table(run, attempt), console=console, refresh_per_second=4, transient=False) as live:
        while not settled(run, attempt):
            if timeout and time.monotonic() - started > timeout:
                break
            time.sleep(0.5)
            run = ledger.get_close_run(run_id)
            live.update(_close_table(run, attempt))
    if not console.is_terminal:
        console.line()  # Live leaves no newline after its last render when output is not a terminal
    return run


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
    as_user: Annotated[
        str | None,
        typer.Option(
            "--as",
            help="Who starts the close (kept on the run; that person may not approve it). "
            "Default: LEDGERBRIDGE_USER, else the login name.",
        ),
    ] = None,
) -> None:
    """Close a Zuora accounting period end to end: trial balance, close, journal run, post each
    summary journal entry to the ERP once, mark it transferred, verify and reconcile.

    Prints the close run id. A close of a period that is already being closed attaches to it; a
    close of a period whose run needs attention resumes that run as its next attempt, and --wait
    follows that attempt to its end. On a connection with approval on, the close stops after its
    check until an approver approves (`ledgerbridge close-approve RUN`). Exit codes with --wait (or
    --dry-run, which always waits): 0 done, 1 needs a person (or an approval)."""
    from shared import ports
    from worker.tasks.close import start_close

    if not period.strip():
        raise fail("the period name must not be empty", 2)
    conn = ports.connection(connection)
    started = start_close(
        conn.name, period, allow_closed=allow_closed, dry_run=dry_run, started_by=as_user or login_name()
    )
    kind = "dry run" if dry_run else "close run"
    attempt = f" as attempt {started.attempt}" if started.attempt > 1 else ""
    action = started.action.replace("_", " ")
    out().print(escape(f"{kind} {started.run.id} {action} for {period!r} on {conn.name}{attempt}"))
    if started.action == "awaiting_approval":
        _show_approval(started.run.id or 0)
        raise typer.Exit(1)
    if not (wait or dry_run):
        return
    run = _follow(started.run.id or 0, started.attempt, timeout)
    raise typer.Exit(_show_outcome(run, started.attempt))


def close_status(
    run_id: Annotated[int | None, typer.Argument(help="A close run id; without it, the latest runs.")] = None,
    connection: ConnectionOpt = None,
) -> None:
    """Show a close run (its steps, progress, problems), or list the connection's latest runs.
    Exit code 1 when the run needs a person."""
    from shared import ports
    from shared.close.attempts import run_attempt
    from shared.ledger.errors import RecordNotFound

    ledger = ports.ledger()
    if run_id is None:
        name = connection or ports.settings().connection
        runs = table(
            f"close runs of {name}",
            ("id", "period", "kind", "status", "attempt", "step", "journal run", "started", "finished"),
        )
        for run in ledger.latest_close_runs(name):
            runs.add_row(
                str(run.id),
                escape(run.period_name),
                "dry run" if run.dry_run else "close",
                run.status,
                str(run_attempt(run)),
                run.step,
                run.journal_run_number or "",
                stored_time(run.created_at),
                stored_time(run.finished_at),
            )
        out().print(runs)
        return
    try:
        run = ledger.get_close_run(run_id)
    except RecordNotFound:
        raise fail(f"there is no close run {run_id}", 2) from None
    out().print(_close_table(run))
    if run.status == "running":
        return
    raise typer.Exit(_show_outcome(run))


def login_name() -> str | None:
    """Who runs this command: LEDGERBRIDGE_USER, else the login name."""
    import getpass
    import os

    try:
        return os.environ.get("LEDGERBRIDGE_USER") or getpass.getuser()
    except (KeyError, OSError):
        return None


def _show_approval(run_id: int | None) -> None:
    """What a run awaiting approval will post, with the previous period's figures, and how to
    decide on it."""
    from shared import ports
    from shared.close.approval import approval_view

    view = approval_view(ports.ledger(), run_id or 0)
    console = out()
    previous = (
        f" (previous: {view.previous_period}, close run {view.previous_run_id})"
        if view.previous_period
        else ""
    )
    totals = table(
        f"close run {view.run_id} will post{previous}",
        ("account", "currency", "debit", "credit", "previous net", "change"),
        right=("debit", "credit", "previous net", "change"),
    )
    for line in view.totals:
        previous_net = (
            ""
            if line.previous_debit is None or line.previous_credit is None
            else str(line.previous_debit - line.previous_credit)
        )
        change = "" if line.change is None else f"{line.change:+}"
        totals.add_row(
            *(
                escape(str(c))
                for c in (line.account, line.currency, line.debit, line.credit, previous_net, change)
            )
        )
    console.print(totals)
    for decision in view.decisions:
        console.print(
            escape(
                f"{decision.at[:19]} attempt {decision.attempt}: {decision.decision} by {decision.user}: {decision.comment}"
            )
        )
    if view.awaiting:
        by = f", started by {view.started_by}" if view.started_by else ""
        err().print(
            f"[bold yellow]awaiting approval:[/] {len(view.entries)} journal entries{escape(by)}. An approver who "
            f"did not start it runs `ledgerbridge close-approve {view.run_id} --as NAME --comment TEXT` "
            f"(or `close-reject`), or decides in the console."
        )


def approver(ledger: Any, user: str) -> None:
    """Exit 2 unless ``user`` is an active ledgerbridge user with the approver or admin role."""
    from shared.ledger.models import UserRole

    account = ledger.get_user(user)
    if account is None or account.disabled:
        raise fail(
            f"{user!r} is not an active ledgerbridge user; add approvers with "
            "`ledgerbridge user add NAME --role approver`",
            2,
        )
    if not UserRole(account.role).at_least(UserRole.APPROVER):
        raise fail(f"{user} is a {account.role}; deciding needs the approver or admin role", 2)


def _decide(run_id: int, user: str, comment: str, *, approve: bool) -> None:
    from shared import ports
    from shared.close.approval import ApprovalRefused
    from shared.ledger.errors import RecordNotFound
    from worker.approvals import decide_and_resume

    ledger = ports.ledger()
    approver(ledger, user)
    try:
        run = decide_and_resume(ledger, run_id, user=user, approve=approve, comment=comment)
    except RecordNotFound:
        raise fail(f"there is no close run {run_id}", 2) from None
    except ApprovalRefused as exc:
        raise fail(str(exc), 1) from None
    if approve:
        out().print(escape(f"close run {run_id} approved by {user}; it goes on to post ({run.status})"))
    else:
        out().print(escape(f"close run {run_id} rejected by {user}; it needs a person: {run.error}"))


RunArg = Annotated[int, typer.Argument(help="The close run id (ledgerbridge close-status lists them).")]


def close_approve(
    run_id: RunArg,
    as_user: ApproverOpt,
    comment: Annotated[
        str, typer.Option("--comment", help="Why it may be posted (kept with the decision).")
    ] = "",
) -> None:
    """Approve what a close awaiting approval will post; the close goes on to post it. The person
    who started the close cannot approve it. Exit codes: 0 approved, 1 refused, 2 bad usage."""
    _decide(run_id, as_user, comment, approve=True)


def close_reject(
    run_id: RunArg,
    as_user: ApproverOpt,
    comment: Annotated[str, typer.Option("--comment", help="What to fix (required).")],
) -> None:
    """Reject what a close awaiting approval would post; the run then needs a person, and running
    the close again re-checks and asks for approval again."""
    _decide(run_id, as_user, comment, approve=False)
