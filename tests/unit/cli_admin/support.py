"""A CliRunner harness for the admin commands (connection, secrets, explain) as the ``ledgerbridge``
command serves them: a migrated SQLite ledger, an encryption key and a clean ``LEDGERBRIDGE_*``
environment per test, and the process-wide clients reset around every invocation (each one builds
its settings from the environment it is given)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from click.testing import Result
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from cli.main import app
from shared import ports
from shared.ledger.migrate import upgrade
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox


@dataclass
class Cli:
    db_path: Path
    key: str
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def env(self, **overrides: str | None) -> dict[str, str | None]:
        # Blank every LEDGERBRIDGE_* variable of the test process, so only what a test sets counts.
        env: dict[str, str | None] = {
            k: None
            for k in os.environ
            if k.startswith("LEDGERBRIDGE_") and not k.startswith("LEDGERBRIDGE_TEST_")
        }
        env.update(
            LEDGERBRIDGE_DATABASE_URL=self.database_url,
            LEDGERBRIDGE_SECRET_KEY=self.key,
            COLUMNS="1000",
        )
        env.update(self.extra)
        env.update(overrides)
        return env

    def __call__(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        ports.reset_for_tests()
        try:
            return CliRunner().invoke(app, list(args), input=input, env=self.env(**env))
        finally:
            ports.reset_for_tests()

    def ledger(self) -> Ledger:
        return Ledger.from_url(self.database_url)

    def box(self, key: str | None = None) -> SecretBox:
        return SecretBox.from_setting(key or self.key)

    def raw_connection_rows(self) -> list[tuple[object, ...]]:
        """The connection table as stored, read with plain sqlite3 (no decryption)."""
        with sqlite3.connect(self.db_path) as db:
            return list(db.execute("SELECT * FROM connection ORDER BY name"))


def make_cli(directory: Path) -> Cli:
    db_path = directory / "ledger.db"
    upgrade(f"sqlite:///{db_path}")
    return Cli(db_path=db_path, key=Fernet.generate_key().decode())
