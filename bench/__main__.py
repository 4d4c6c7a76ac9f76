"""``python -m bench [SCENARIO ...] [--size tiny|full] ...`` (what ``scripts/bench`` runs)."""

from __future__ import annotations

import typer
from rich.console import Console

from bench.scenarios import register

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False)
register(app, Console(), Console(stderr=True))

if __name__ == "__main__":
    app()
