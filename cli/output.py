"""What every ``ledgerbridge`` command prints with: the consoles, errors and their exit codes, JSON
and the tables that repeat.

Exit codes, for every command: 0 done, 1 something needs a person (the message says what), 2 bad
usage or configuration (the message says which variable or argument to fix).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from shared.ledger.errors import LedgerError
from shared.settings import SettingsError


def out(*, highlight: bool = False) -> Console:
    """A console on the current stdout. Built per call, so COLUMNS and a replaced stdout (a pipe, a
    test runner) are honoured. ``highlight`` lets rich colour the numbers, paths and URLs it
    recognises in plain strings (on a terminal only)."""
    return Console(highlight=highlight)


def err(*, highlight: bool = False) -> Console:
    """A console on the current stderr, as :func:`out`."""
    return Console(stderr=True, highlight=highlight)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: <message>`` on stderr and return the exit to raise: ``raise fail(...)``."""
    err().print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


@contextmanager
def usage_errors() -> Iterator[None]:
    """Configuration and ledger errors become their message and exit code 2 (the message says what
    to fix); nothing else is caught."""
    try:
        yield
    except (SettingsError, LedgerError) as exc:
        raise fail(str(exc), 2) from None


def print_json(data: Any, console: Console | None = None) -> None:
    """``data`` as indented JSON on ``console`` (default: stdout); values JSON does not know (dates,
    decimals) as strings."""
    (console or out()).print_json(json.dumps(data, default=str))


def table(
    title: str, columns: Iterable[str], *, overflow: bool = False, right: Collection[str] = ()
) -> Table:
    """A table titled at its left: ``overflow`` folds long cells onto more lines instead of cutting
    them; the columns named in ``right`` are right-justified (amounts, counts). ``title`` is
    markup: escape what came from outside."""
    made = Table(title=title, title_justify="left")
    for column in columns:
        made.add_column(
            column,
            justify="right" if column in right else "left",
            overflow="fold" if overflow else "ellipsis",
        )
    return made


def field_table(rows: Iterable[tuple[str, str]], *, title: str | None = None, centred: bool = False) -> Table:
    """Two columns, bold field names and their values (escaped, folded when long), no header and no
    box: one thing's fields. ``title`` is markup; it sits at the left unless ``centred``."""
    made = Table(title=title, title_justify="center" if centred else "left", show_header=False, box=None)
    made.add_column("field", style="bold")
    made.add_column("value", overflow="fold")
    for key, value in rows:
        made.add_row(key, escape(value))
    return made


def utc_time(value: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC; empty for None."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def stored_time(value: datetime | None) -> str:
    """``YYYY-MM-DD HH:MM:SS`` as the ledger stored it (no conversion); empty for None."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
