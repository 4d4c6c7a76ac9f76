"""``ledgerbridge sync`` and ``ledgerbridge status``: the item-level sync from a shell.

``sync`` pulls in this process, under the same per-(connection, stream) Redis lock the beat's
pulls take, and hands posting and marking to the workers - so a manual sync and a scheduled one
never run the same pull at once. ``--since`` reads from a date instead of the mark (a backfill,
with a progress bar over the time range); ``--wait`` then waits until the workers have posted and
marked everything. ``status`` prints, per stream, the mark and how far it lags, the last run
and its error, the rows by state and the two "missed" counters, then the open close runs with
the step each is at (``--json`` for scripts).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.common import ConnectionOpt
from cli.output import fail, out, print_json, stored_time, table
from shared.ledger.states import FAILED, PARKED, PENDING, POSTED, POSTING, STATES
from shared.metrics import format_lag, lag_seconds

if TYPE_CHECKING:
    from shared.item_level.pull import PageProgress


def register(app: typer.Typer) -> None:
    """Add ``sync`` and ``status`` to the ``ledgerbridge`` command."""
    app.command("sync")(sync)
    app.command("status")(status)


def parse_since(text: str) -> datetime:
    """An ISO-8601 date or datetime; without an offset it is UTC."""
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def close_run_json(run: Any) -> dict[str, Any]:
    """An open close run as ``status --json`` prints it."""
    return {
        "id": run.id,
        "period": run.period_name,
        "dry_run": run.dry_run,
        "status": run.status,
        "step": run.step,
        "journal_run": run.journal_run_number,
        "started_at": run.created_at.isoformat(),
        "updated_at": run.updated_at.isoformat(),
        "error": run.error,
    }


def sync(
    streams: Annotated[
        list[str] | None,
        typer.Argument(
            help="Streams to pull (accounts, invoices, payments, refunds, credit_memos, "
            "debit_memos); none = all."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Backfill: read from this ISO date/datetime, not the mark."),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait for a running pull's lock, then until everything is marked."),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 900.0,
    connection: ConnectionOpt = None,
) -> None:
    """Pull streams now (workers post and mark what is pulled)."""
    from shared import item_level
    from shared.item_level.pull import PullResult
    from shared.item_level.queries import in_doubt_count, unfinished_count
    from worker.wiring import item_context, stream_lock

    try:
        chosen = item_level.select_streams(streams)
        since_at = parse_since(since) if since else None
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    console = out()
    ctx = item_context(connection)
    deadline = time.monotonic() + timeout
    pulled: list[PullResult] = []
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.fields[rows]:>8} rows {task.fields[new]:>7} new"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        for stream in chosen:
            lock = stream_lock(ctx.connection, stream.name)
            if not lock.acquire(wait=max(0.0, deadline - time.monotonic()) if wait else 0.0):
                progress.console.print(f"{stream.name}: another pull is running (try --wait)")
                continue
            bar = progress.add_task(stream.name, total=None, rows=0, new=0)
            try:
                pulled.append(_pull_all(item_level, ctx, stream, since_at, lock, progress, bar))
            finally:
                lock.release()
    for result in pulled:
        console.print(
            f"{result.stream}: {result.rows} rows read, {result.new} new, mark "
            f"{result.mark.isoformat() if result.mark else '-'}"
            + (f" ({result.stopped})" if result.stopped else "")
        )
    if not wait:
        return
    types = [s.object_type for s in chosen]
    total = max(1, unfinished_count(ctx.ledger, ctx.connection, types, STATES))
    with Progress(
        TextColumn("posting and marking"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}{task.fields[doubt]}"),
        console=console,
    ) as progress:
        bar = progress.add_task("settle", total=total, doubt="")
        while True:
            open_rows = unfinished_count(ctx.ledger, ctx.connection, types, [PENDING, POSTING, POSTED])
            # Records whose ERP answer was lost: being looked up in the ERP, said so while waited for.
            doubt = in_doubt_count(ctx.ledger, ctx.connection, types) if open_rows else 0
            progress.update(
                bar,
                completed=total - open_rows,
                doubt=f" ({doubt} in doubt, being looked up)" if doubt else "",
            )
            if open_rows == 0:
                break
            if time.monotonic() >= deadline:
                raise fail(
                    f"{open_rows} records are not marked after {timeout:.0f}s"
                    + (
                        f" ({doubt} in doubt: the ERP's answer was lost; they are being looked up)"
                        if doubt
                        else ""
                    )
                    + "; see `ledgerbridge status`",
                    1,
                )
            time.sleep(1.0)
    stuck = unfinished_count(ctx.ledger, ctx.connection, types, [FAILED, PARKED])
    if stuck:
        raise fail(f"{stuck} records failed or are parked; see `ledgerbridge status`", 1)
    console.print("everything pulled is posted and marked")


def _pull_all(  # noqa: PLR0917 - a private helper of sync
    item_level: Any,
    ctx: Any,
    stream: Any,
    since: datetime | None,
    lock: Any,
    progress: Progress,
    bar: TaskID,
) -> Any:
    def show(page: PageProgress) -> None:
        start = page.window_start
        if start is not None and page.last_updated is not None and page.run_started > start:
            span = (page.run_started - start).total_seconds()
            done = min(span, max(0.0, (page.last_updated - start).total_seconds()))
            progress.update(bar, total=span, completed=done, rows=page.rows, new=page.new)
        else:
            progress.update(bar, rows=page.rows, new=page.new)

    result = item_level.pull_stream(ctx, stream, since=since, heartbeat=lock.extend, progress=show)
    while result.resume is not None and result.stopped is None:
        more = item_level.pull_stream(ctx, stream, resume=result.resume, heartbeat=lock.extend, progress=show)
        more.rows += result.rows
        more.new += result.new
        more.pages += result.pages
        result = more
    total = progress.tasks[bar].total
    progress.update(bar, completed=total if total is not None else 1, total=total or 1)
    return result


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    connection: ConnectionOpt = None,
) -> None:
    """Per stream: the mark and its lag, the last run, rows by state, records missed by the push
    and by the mark, the last error; then the open close runs with their step, and the notices
    for Finance not yet delivered (how many, since when, the last error)."""
    from shared import ports
    from shared.item_level.status import sync_status
    from shared.metrics import open_close_runs

    name = connection or ports.settings().connection
    report = sync_status(ports.ledger(), name)
    runs = open_close_runs(ports.ledger(), name)
    notices = ports.ledger().undelivered_notices(name)
    now = datetime.now(UTC)
    lags = {row.stream: lag_seconds(row.mark, now) for row in report.streams}
    if as_json:
        data = report.as_dict()
        for stream_row in data["streams"]:
            stream_row["lag_seconds"] = lags[stream_row["stream"]]
        data["close_runs"] = [close_run_json(run) for run in runs]
        data["undelivered_notices"] = notices.as_dict()
        print_json(data)
        return
    console = out()
    # Centred title, unlike the other tables: it heads the whole report.
    streams = Table(title=f"item-level sync of connection {name}")
    for column in ("stream", "mark", "lag", "last run", *STATES, "missed by push", "missed by mark"):
        streams.add_column(
            column, justify="right" if column not in ("stream", "mark", "last run") else "left"
        )
    for row in report.streams:
        last = "-"
        if row.run_started_at is not None:
            when = stored_time(row.run_finished_at or row.run_started_at)
            last = f"{when} {row.last_status or ''}".strip()
        streams.add_row(
            row.stream,
            stored_time(row.mark) or "-",
            format_lag(lags[row.stream]),
            escape(last),
            *(str(row.counts.get(state, 0)) for state in STATES),
            str(row.missed_by_push),
            str(row.missed_by_mark),
        )
    # A squeezed table is unreadable: never narrower than the table needs.
    _print_wide(console, streams)
    if report.callouts:
        console.print(
            "callouts: " + ", ".join(f"{n} {state}" for state, n in sorted(report.callouts.items()))
        )
    if runs:
        closes = table(
            f"open close runs of connection {name}",
            ("id", "period", "kind", "status", "step", "journal run", "started", "error"),
            overflow=True,
        )
        for run in runs:
            closes.add_row(
                str(run.id),
                escape(run.period_name),
                "dry run" if run.dry_run else "close",
                run.status,
                run.step,
                escape(run.journal_run_number or ""),
                stored_time(run.created_at),
                escape(run.error or ""),
            )
        _print_wide(console, closes)
    else:
        console.print("no open close runs")
    if notices.count:
        console.print(
            f"[yellow]notices[/]: {notices.count} undelivered, the oldest from {stored_time(notices.oldest)}"
            + (f"; last error: {escape(notices.last_error)}" if notices.last_error else "")
        )
    else:
        console.print("notices: all delivered")
    applications = report.applications
    if applications:
        console.print(
            "applications made after their document: "
            + ", ".join(
                f"{applications.get(k, 0)} {k}"
                for k in ("applied", "applying", "waiting")
                if applications.get(k)
            )
        )
    if report.changes.get("being_carried"):
        console.print(
            f"changed in Zuora after posting: {report.changes['being_carried']} being carried to the ERP"
        )
    if report.changes.get("needs_a_person"):
        console.print(
            f"[yellow]changed after posting[/]: {report.changes['needs_a_person']} record(s) need a person "
            "(`ledgerbridge explain NUMBER` says what changed)"
        )
    for row in report.streams:
        if row.last_error:
            console.print(f"[yellow]{row.stream}[/]: last run: {escape(row.last_error)}")
        if row.mark_failures:
            console.print(
                f"[yellow]{row.stream}[/]: {row.mark_failures} posted but not yet marked in Zuora "
                "(retried; `ledgerbridge status --json` and the records' last error say why)"
            )


def _print_wide(console: Console, report: Table) -> None:
    # A squeezed table is unreadable: never narrower than the table needs.
    Console(file=console.file, width=max(console.width, 160)).print(report)
