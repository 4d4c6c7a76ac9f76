"""The ledger's errors: each says what went wrong and what to do about it."""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error raised by ``shared.ledger``."""


class IllegalTransition(LedgerError):
    """A state change the transition table does not allow (a bug in the caller or a stale row)."""


class TransitionConflict(LedgerError):
    """Another worker changed the row between our read and our write; roll back and reload."""


class RecordNotFound(LedgerError, LookupError):
    """No ledger row with that id / key."""


class UnknownConnection(LedgerError, LookupError):
    """No connection of that name in the ledger."""


class ConnectionExists(LedgerError):
    """A connection of that name is already in the ledger."""


class SchemaOutOfDate(LedgerError):
    """The database schema is not at this release's migration head."""


class SecretKeyError(LedgerError):
    """The encryption key is missing, malformed or does not match the stored secrets."""
