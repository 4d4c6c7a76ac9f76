"""The newest OAuth refresh token of each connection's ERP, kept in the ledger.

Acumatica's refresh tokens rotate: each refresh answers with a new one and the one it was given
stops working (acumatica-api.md section 2.2). The fleet's working copy is in Redis, which is
volatile; without a durable copy, a Redis restart leaves only the configured token, long spent,
and a deployment that signs in with a refresh token alone is signed out. The Acumatica session
manager (:mod:`shared.erp.acumatica_session`) writes each new token here first, in one committed
transaction, before Redis and before using the access token that came with it; its module
docstring gives the order and the crash window.

Why a table of its own, one row per connection, and not ``Connection.secrets``:

* the default connection is built from the environment and has no ``connection`` row to hold it;
* ``Connection.secrets`` is one encrypted blob of every secret of a connection, rewritten by
  ``ledgerbridge connection add --replace`` and ``connection callout-secret``; rewriting it on
  every rotation (about hourly, from whichever worker refreshes) would be a read-modify-write
  racing those edits, losing either the new token or the engineer's change;
* the configured token (``LEDGERBRIDGE_ACUMATICA_REFRESH_TOKEN`` or the stored connection's
  ``acumatica_refresh_token``) stays what the engineer configured: the chain's first link, and
  the token tried when the stored one is refused (so configuring a freshly issued token repairs a
  broken chain without touching this table).

A row's ``version`` counts the rotations stored and ``updated_at`` says when the last one was.
The token is encrypted with the connections' :class:`~shared.ledger.secrets.SecretBox` (the
cipher of ``LEDGERBRIDGE_SECRET_KEY``) and re-encrypted by ``ledgerbridge secrets rotate``.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import select

from shared.ledger.db import session_scope
from shared.ledger.errors import SecretKeyError
from shared.ledger.models import ErpRefreshToken, metadata, utcnow
from shared.ledger.secrets import SecretBox

log = logging.getLogger("ledgerbridge.ledger.refresh_tokens")

_FIELD = "refresh_token"


class RefreshTokenStore:
    """The refresh tokens' part of :class:`~shared.ledger.repo.Ledger` (one transaction a method)."""

    engine: Engine

    def save_refresh_token(self, connection: str, token: str, box: SecretBox) -> int:
        """Store ``token`` as ``connection``'s newest, encrypted by ``box``, and commit; returns the
        row's version (1 for the first token stored)."""
        table = metadata.tables[ErpRefreshToken.__tablename__]
        values = {
            "connection": connection,
            "token": box.encrypt_json({_FIELD: token}),
            "updated_at": utcnow(),
        }
        with session_scope(self.engine) as session:
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = insert(table).values(version=1, **values)
            statement = statement.on_conflict_do_update(
                index_elements=["connection"],
                set_={
                    "token": statement.excluded.token,
                    "updated_at": statement.excluded.updated_at,
                    "version": table.c.version + 1,
                },
            )
            version = session.execute(statement.returning(table.c.version)).scalar_one()
        return int(version)

    def load_refresh_token(self, connection: str, box: SecretBox) -> str | None:
        """``connection``'s newest stored token, or None; :class:`SecretKeyError` when no key of
        ``box`` opens it."""
        with session_scope(self.engine, read_only=True) as session:
            row = session.get(ErpRefreshToken, connection)
        if row is None:
            return None
        token = box.decrypt_json(row.token).get(_FIELD)
        return str(token) if token else None

    def refresh_token_versions(self) -> dict[str, int]:
        """``connection -> version`` of every stored token (the tokens stay encrypted)."""
        with session_scope(self.engine, read_only=True) as session:
            return {row.connection: row.version for row in session.exec(select(ErpRefreshToken)).all()}

    def forget_refresh_token(self, connection: str) -> bool:
        """Delete ``connection``'s stored token; False if there was none."""
        with session_scope(self.engine) as session:
            row = session.get(ErpRefreshToken, connection)
            if row is None:
                return False
            session.delete(row)
            return True

    def rotate_refresh_tokens(self, box: SecretBox) -> int:
        """Re-encrypt every stored token with ``box``'s first key, all or nothing; returns how many.

        A worker may store a newer token meanwhile (SQLite has no ``FOR UPDATE``): each row is
        written only if its version is still the one read, else read again, so a rotation never
        puts back a token that was already replaced. The version stays: the token is the same."""
        table = metadata.tables[ErpRefreshToken.__tablename__]
        with session_scope(self.engine) as session:
            rows = session.execute(
                sa.select(table.c.connection, table.c.token, table.c.version).with_for_update()
            ).all()
            for connection, token, version in rows:
                current: tuple[str, int] | None = (token, version)
                while current is not None:
                    written = session.connection().execute(
                        sa.update(table)
                        .where(table.c.connection == connection, table.c.version == current[1])
                        .values(token=box.rotate(current[0]))
                    )
                    if written.rowcount:
                        break
                    # A worker committed a newer token since our read: rotate that one instead.
                    again = session.execute(
                        sa.select(table.c.token, table.c.version).where(table.c.connection == connection)
                    ).first()
                    current = None if again is None else (again[0], again[1])
            return len(rows)


class LedgerRefreshToken:
    """One connection's refresh token in the ledger: the durable copy the Acumatica session keeps
    (:class:`shared.erp.acumatica_session.DurableRefreshToken`; ``shared.ports`` wires it)."""

    def __init__(self, store: RefreshTokenStore, connection: str, box: SecretBox) -> None:
        self._store = store
        self._connection = connection
        self._box = box

    def load(self) -> str | None:
        """The stored token; None when there is none or no listed key opens it (logged: the old
        key was dropped before ``ledgerbridge secrets rotate`` ran), so the configured token and
        then the password grant are tried instead."""
        try:
            return self._store.load_refresh_token(self._connection, self._box)
        except SecretKeyError as exc:
            log.error("the stored Acumatica refresh token of %s is unreadable: %s", self._connection, exc)
            return None

    def save(self, token: str) -> None:
        """Store ``token`` as the newest; returns once committed."""
        version = self._store.save_refresh_token(self._connection, token, self._box)
        log.info("stored Acumatica refresh token #%d of %s", version, self._connection)
