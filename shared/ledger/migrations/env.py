"""Alembic environment for the ledger.

Run through ``shared.ledger.migrate`` (``ledgerbridge db upgrade``), which passes the database
URL - or an open connection - in ``config.attributes``, never through the ini file (a URL may
hold ``%`` characters that configparser would try to interpolate).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from shared.ledger.db import make_engine
from shared.ledger.models import metadata

# An arbitrary constant: the PostgreSQL advisory-lock key that serialises concurrent upgrades.
_UPGRADE_LOCK_KEY = 0x1ED6E7B7

config = context.config


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: call shared.ledger.migrate.upgrade(database_url)")
    return str(url)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch migrations copy and drop tables; with foreign keys on, dropping a referenced table
        # would fire its ON DELETE actions. Off while migrating, checked before the commit.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        # SQLite runs DDL inside a transaction; IMMEDIATE takes the write lock up front, so a
        # concurrent upgrade waits (busy_timeout) and then finds nothing left to do.
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two processes upgrading at once: the second waits here, then finds nothing to do.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK_KEY})")
        context.run_migrations()
    if sqlite:
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"migration left rows violating foreign keys: {broken[:10]}")


def run_migrations_offline() -> None:
    url = _database_url()
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)  # the caller owns this connection and commits
        return
    engine = make_engine(_database_url())
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
            if conn.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
