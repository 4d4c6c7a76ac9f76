"""Console passwords: argon2id hashes (argon2-cffi's :class:`PasswordHasher` defaults, RFC 9106's
low-memory profile). Only the hash is stored; a password is never logged or kept."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()

MIN_LENGTH = 12
MAX_LENGTH = 1024


class WeakPassword(ValueError):
    """The password is refused; the message says why."""


def check_strength(password: str) -> None:
    """Refuse a password that is too short or absurdly long (:class:`WeakPassword`)."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salted; a new hash each call)."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; False for a mismatch or an unreadable hash."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """Whether ``stored_hash`` was made with other parameters than today's (hash it again at the
    next successful sign-in)."""
    try:
        return _HASHER.check_needs_rehash(stored_hash)
    except (InvalidHashError, ValueError):
        return True


def dummy_verify(password: str) -> None:
    """Spend the time of one verification, for an unknown user: a sign-in takes as long whether the
    name exists or not."""
    verify_password(_dummy_hash(), password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _HASHER.hash("ledgerbridge console timing equaliser")
