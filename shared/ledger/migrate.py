"""Schema migrations for the ledger (alembic), runnable from the installed package.

``ledgerbridge db upgrade`` calls :func:`upgrade`; processes that use the ledger call
:func:`check_up_to_date` at start-up so a stale schema fails loudly instead of half-working.
The scripts live in ``shared/ledger/migrations`` and are located from this file, not the cwd.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from shared.ledger.db import BEGIN_OPTION, Begin, make_engine
from shared.ledger.errors import SchemaOutOfDate

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# alembic's ``context``/``op`` are module-level proxies: one migration at a time per process.
# Across processes, env.py serialises upgrades with a database lock.
_ALEMBIC_LOCK = threading.Lock()


def alembic_config(database_url: str | None = None, connection: sa.Connection | None = None) -> Config:
    """An alembic Config for the packaged migrations (URL or open connection in ``attributes``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url is not None:
        config.attributes["database_url"] = database_url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision this release's schema is at."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - a packaging error
        raise SchemaOutOfDate(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; a no-op when already there. Safe to run twice and
    concurrently: threads take a process lock, processes a database lock (PostgreSQL advisory
    lock, SQLite ``BEGIN IMMEDIATE``), and a late runner finds nothing to do."""
    engine = make_engine(database_url)
    try:
        with _ALEMBIC_LOCK, engine.connect() as conn:
            # env.py begins the SQLite transaction itself, after turning foreign keys off (which
            # SQLite ignores inside a transaction); the engine must not begin one first.
            conn.execution_options(**{BEGIN_OPTION: Begin.CALLER})
            command.upgrade(alembic_config(connection=conn), revision)
            conn.commit()
    finally:
        engine.dispose()  # its connection may still have foreign keys off


def current_revision(database_url: str) -> str | None:
    """The revision the database is at; ``None`` for a database never migrated."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{BEGIN_OPTION: Begin.READ})
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def check_up_to_date(database_url: str) -> None:
    """Raise :class:`SchemaOutOfDate` unless the database is at this release's head revision."""
    current = current_revision(database_url)
    head = head_revision()
    if current == head:
        return
    where = sa.make_url(database_url).render_as_string(hide_password=True)
    if current is None:
        raise SchemaOutOfDate(f"the ledger database {where} has no schema yet: run `ledgerbridge db upgrade`")
    known = {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current not in known:
        raise SchemaOutOfDate(
            f"the ledger database {where} is at revision {current}, newer than this release of "
            f"ledgerbridge knows (head {head}): upgrade ledgerbridge"
        )
    raise SchemaOutOfDate(
        f"the ledger database {where} is at revision {current} but this release needs {head}: "
        "run `ledgerbridge db upgrade`"
    )
