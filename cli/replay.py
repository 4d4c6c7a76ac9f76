"""``ledgerbridge replay``: re-drive a record, or every failed and parked one.

::

    ledgerbridge replay INV00000123 --dry-run      # the exact ERP request and a diff; changes nothing
    ledgerbridge replay INV00000123                # failed/parked -> pending -> posted (one ERP call)
    ledgerbridge replay INV00000123 --force        # posted: ask the ERP first, post only if missing
    ledgerbridge replay --failed [--stream invoices] [--dry-run]

The logic is :mod:`shared.replay`; this module parses, prints and picks the exit code: 0 done
(or, with ``--dry-run``, every record would post), 1 something needs a person (a record stays
parked or failed, is in doubt, is not in the ledger or in Zuora; a dry run that would park), 2 bad
usage or configuration. Posting happens in this process through the same posting path as the
workers; marking the posted records transferred is handed to the workers.
"""

from __future__ import annotations

import getpass
import socket
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.common import ConnectionOpt
from cli.output import fail, field_table, out, print_json, table, usage_errors
from shared.errors import ApiError

if TYPE_CHECKING:
    from shared.item_level.context import ItemContext
    from shared.ledger.models import SyncRecord
    from shared.replay import Preview, ReplayResult


def register(app: typer.Typer) -> None:
    """Add ``replay`` to the ``ledgerbridge`` command."""
    app.command("replay")(replay)


def who(reason: str | None = None) -> str:
    """The replay's note in each record's timeline: who ran it, from where, and why."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    text = f"ledgerbridge replay by {user}@{socket.gethostname()}"
    return f"{text}: {reason}" if reason else text


# -- printing -------------------------------------------------------------------------------------


def _diff_text(diff: str) -> Text:
    text = Text()
    for line in diff.splitlines():
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        text.append(line + "\n", style=style)
    return text


def print_preview(console: Console, item: Preview) -> None:
    """One record's dry run: where it is, the exact ERP request, the diff, what a replay would do."""
    rec = item.record
    fields = (
        ("zuora id", rec.zuora_id),
        ("state", rec.state),
        ("erp ref", rec.erp_ref or ""),
        ("last error", rec.last_error or ""),
        ("re-fetched", "yes, from Zuora" if item.fetched else "no (the ledger's copy)"),
    )
    console.print(
        field_table(
            fields, title=escape(f"{rec.object_type} {rec.zuora_number or rec.zuora_id}"), centred=True
        )
    )
    for note in item.notes:
        console.print(Text(f"note: {note}", style="yellow"))
    if item.problem:
        console.print(Text(f"would be parked: {item.problem}", style="bold red"))
    if item.request is not None:
        console.print(Text(f"ERP request ({item.request.target}): {item.request.operation}", style="bold"))
        console.print(Text(item.request.text()))
    if rec.posted_payload is None:
        console.print(Text("nothing was sent to the ERP before", style="dim"))
    elif item.diff:
        console.print(Text("difference from what was sent before:", style="bold"))
        console.print(_diff_text(item.diff))
    else:
        console.print(Text("no difference from what was sent before", style="green"))
    console.print(Text(f"a replay would: {item.would}", style="bold"))
    console.print()


def _results_table(results: Sequence[ReplayResult]) -> Table:
    report = table("replay", ("record", "before", "after", "outcome", "erp ref", "detail"), overflow=True)
    for r in results:
        style = "" if r.ok else "bold red"
        report.add_row(
            escape(r.label),
            r.before,
            r.after,
            Text(r.action, style=style),
            escape(r.erp_ref or ""),
            escape(r.detail or ""),
        )
    return report


def print_results(console: Console, results: Sequence[ReplayResult]) -> None:
    if len(results) == 1:
        r = results[0]
        line = Text(f"{r.label}: {r.before} -> {r.after}: ")
        line.append(r.detail or r.action, style="" if r.ok else "bold red")
        console.print(line)
        return
    console.print(_results_table(results))
    counts = Counter(r.action for r in results)
    console.print(", ".join(f"{n} {action}" for action, n in sorted(counts.items())))


# -- running --------------------------------------------------------------------------------------


def run_previews(
    ctx: ItemContext, records: Sequence[SyncRecord], console: Console, *, force: bool, as_json: bool
) -> int:
    """Print the dry run of ``records``; 1 when one of them would be parked."""
    from shared.replay import preview_many

    previews = preview_many(ctx, records, force=force)
    if as_json:
        print_json(
            {"connection": ctx.connection, "dry_run": True, "records": [p.as_dict() for p in previews]},
            console,
        )
    else:
        for item in previews:
            print_preview(console, item)
        if len(previews) > 1:
            parked = sum(1 for p in previews if p.problem)
            changed = sum(1 for p in previews if p.changed)
            console.print(
                f"{len(previews)} records: {parked} would be parked, {changed} differ from what was sent; "
                "nothing was changed (--dry-run)"
            )
    return 1 if any(p.problem for p in previews) else 0


def run_replay(
    ctx: ItemContext,
    records: Sequence[SyncRecord],
    console: Console,
    *,
    force: bool,
    as_json: bool,
    reason: str,
) -> int:
    """Replay ``records`` and print what happened; 1 when one of them needs a person."""
    from shared.replay import replay_records

    results = replay_records(ctx, records, force=force, reason=reason)
    if as_json:
        print_json(
            {"connection": ctx.connection, "dry_run": False, "results": [r.as_dict() for r in results]},
            console,
        )
    else:
        print_results(console, results)
    return 0 if all(r.ok for r in results) else 1


def select_records(
    ctx: ItemContext, record: str | None, failed: bool, streams: Sequence[str] | None
) -> list[SyncRecord]:
    """The records the arguments name; raises typer.Exit(1|2) with the reason."""
    from shared.item_level.streams import UnknownStream, get_stream
    from shared.replay import failed_records, resolve

    if failed:
        try:
            chosen = [get_stream(s) for s in streams] if streams else None
        except UnknownStream as exc:
            raise fail(str(exc), 2) from None
        return failed_records(ctx.ledger, ctx.connection, chosen)
    assert record is not None
    found = resolve(ctx.ledger, ctx.connection, record)
    if not found:
        raise fail(
            f"nothing in the ledger for {record!r} on connection {ctx.connection} (tried Zuora id, number, "
            "ERP reference and <object_type>:<zuora id>)",
            1,
        )
    if len(found) > 1:
        names = ", ".join(f"{r.subject} ({r.state})" for r in found)
        raise fail(
            f"{record!r} matches {len(found)} records: {names}; name one as <object_type>:<zuora id>", 2
        )
    return found


def replay(  # noqa: PLR0917 - typer turns each parameter into an argument or option
    record: Annotated[
        str | None,
        typer.Argument(
            help="A Zuora id or number (INV00001234, JE-00000012), an ERP reference, or "
            "<object_type>:<zuora id> as `explain` shows it."
        ),
    ] = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Every failed and parked record of the connection.")
    ] = False,
    stream: Annotated[
        list[str] | None,
        typer.Option("--stream", "-s", help="With --failed: only this stream (repeatable)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show the exact ERP request and a diff against what was sent before; change nothing.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="For a posted record: ask the ERP by natural key and post again only if it is missing.",
        ),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (goes into each record's timeline).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    connection: ConnectionOpt = None,
) -> None:
    """Re-drive a record through the posting path: re-fetched from Zuora, mapped with the current
    mapping file, posted once.

    A failed or parked record goes back to pending and is posted; a pending one is posted now; a
    posted or marked one is left alone unless --force, which first asks the ERP by natural key and
    posts again only if the ERP does not have it. --failed does this for every failed and parked
    record (journal entries excepted: re-run their close). --dry-run prints the exact ERP request
    and its diff against what was sent before, and changes nothing.
    Exit codes: 0 done, 1 a record needs a person, 2 bad usage or configuration."""
    from shared import ports
    from shared.ledger.migrate import check_up_to_date
    from worker.wiring import item_context

    if (record is None) == (not failed):
        raise fail("give a RECORD or --failed (not both)", 2)
    if stream and not failed:
        raise fail("--stream goes with --failed", 2)
    if force and failed:
        raise fail("--force re-posts posted records one at a time: name the RECORD", 2)
    console = out()
    try:
        with usage_errors():
            check_up_to_date(ports.settings().database_url)
            ctx = item_context(connection)
            records = select_records(ctx, record, failed, stream)
            if failed and not records:
                console.print(f"no failed or parked records on connection {ctx.connection}")
                _hint_journal_entries(ctx, console)
                raise typer.Exit(0)
            if dry_run:
                code = run_previews(ctx, records, console, force=force, as_json=as_json)
            else:
                code = run_replay(ctx, records, console, force=force, as_json=as_json, reason=who(reason))
            if failed and not as_json:
                _hint_journal_entries(ctx, console)
    except ApiError as exc:
        raise fail(str(exc), 1) from None
    finally:
        ports.close_all()  # logs out of the ERP session this command signed in
    raise typer.Exit(code)


def _hint_journal_entries(ctx: Any, console: Console) -> None:
    from shared.replay import failed_journal_entries

    entries = failed_journal_entries(ctx.ledger, ctx.connection)
    periods = sorted({e.period_name or "?" for e in entries})
    if entries:
        console.print(
            f"{len(entries)} journal entries are failed or parked; re-run their close to re-drive them: "
            + ", ".join(f'`ledgerbridge close "{p}"`' for p in periods)
        )
