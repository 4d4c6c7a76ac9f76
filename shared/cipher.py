"""The cipher for secrets at rest: every key of ``LEDGERBRIDGE_SECRET_KEY`` as one MultiFernet.

The variable holds one Fernet key, or several separated by commas during a rotation. The first
key encrypts; every listed key decrypts. This module is the one place that turns the variable into
a cipher. Everything ledgerbridge seals goes through it: the connections' secrets and the
persisted OAuth refresh tokens in the ledger (``shared.ledger.secrets``), the shared Acumatica
session and refresh token in Redis (``shared.erp.acumatica_session``). So putting a new key in
front of the old one never makes a stored value unreadable, and ``ledgerbridge secrets rotate``
moves the ledger's values to the new key before the old one is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, MultiFernet
from pydantic import SecretStr

HOW_TO_MAKE_A_KEY = "make one with `ledgerbridge secrets generate-key`"


class MalformedSecretKey(ValueError):
    """A listed key is not a Fernet key; ``position`` counts the listed keys from 1."""

    def __init__(self, position: int) -> None:
        self.position = position
        super().__init__(
            f"key #{position} is not a Fernet key (32 url-safe base64-encoded bytes); {HOW_TO_MAKE_A_KEY}"
        )


def listed_keys(value: str | SecretStr | None) -> list[str]:
    """The keys of the variable's text, in order, blanks dropped."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    return [key.strip() for key in (text or "").split(",") if key.strip()]


def cipher_from_keys(keys: Sequence[str]) -> MultiFernet | None:
    """The cipher of ``keys`` (the first encrypts, each decrypts); None when no key is given
    (blanks do not count). :class:`MalformedSecretKey` names the first key that is not one."""
    fernets = []
    for position, key in enumerate((k.strip() for k in keys if k and k.strip()), start=1):
        try:
            fernets.append(Fernet(key.encode("ascii")))
        except (ValueError, TypeError, UnicodeEncodeError):
            raise MalformedSecretKey(position) from None
    return MultiFernet(fernets) if fernets else None


def cipher_from_setting(value: str | SecretStr | None) -> MultiFernet | None:
    """The cipher of ``LEDGERBRIDGE_SECRET_KEY``'s text (see :func:`cipher_from_keys`)."""
    return cipher_from_keys(listed_keys(value))
