"""Encryption at rest for the ledger's secrets, with the cipher of :mod:`shared.cipher`.

``LEDGERBRIDGE_SECRET_KEY`` holds one Fernet key, or several separated by commas during a
rotation: the first encrypts, every key decrypts. To rotate, put the new key first, run
``ledgerbridge secrets rotate`` (``Ledger.rotate_secrets`` and ``Ledger.rotate_refresh_tokens``
re-encrypt every row with the new key), then drop the old key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.cipher import HOW_TO_MAKE_A_KEY, MalformedSecretKey, cipher_from_keys, listed_keys
from shared.ledger.errors import SecretKeyError


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text)."""
    return Fernet.generate_key().decode("ascii")


class SecretBox:
    """Encrypts and decrypts JSON dicts of secrets with a list of Fernet keys."""

    def __init__(self, keys: Sequence[str]) -> None:
        try:
            cipher = cipher_from_keys(keys)
        except MalformedSecretKey as exc:
            raise SecretKeyError(f"LEDGERBRIDGE_SECRET_KEY {exc}") from None
        if cipher is None:
            raise SecretKeyError(
                f"no encryption key for connection secrets: set LEDGERBRIDGE_SECRET_KEY ({HOW_TO_MAKE_A_KEY})"
            )
        self._fernet = cipher

    @property
    def cipher(self) -> MultiFernet:
        """The box's keys as one cipher (the first encrypts, each decrypts)."""
        return self._fernet

    @classmethod
    def from_setting(cls, value: str | None) -> SecretBox:
        """A box from the ``LEDGERBRIDGE_SECRET_KEY`` text: one key, or comma-separated keys."""
        return cls(listed_keys(value))

    def encrypt_json(self, secrets: Mapping[str, Any]) -> str:
        """A Fernet token (text) of ``secrets`` as JSON, encrypted with the first key."""
        return self._fernet.encrypt(json.dumps(dict(secrets), sort_keys=True).encode("utf-8")).decode("ascii")

    def decrypt_json(self, token: str) -> dict[str, Any]:
        """The dict inside ``token``; :class:`SecretKeyError` if no key opens it."""
        try:
            data = self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise SecretKeyError(
                "cannot decrypt: wrong LEDGERBRIDGE_SECRET_KEY (the stored secrets were encrypted with "
                "another key; during a rotation list the old key after the new one, comma-separated)"
            ) from None
        value = json.loads(data)
        if not isinstance(value, dict):
            raise SecretKeyError("cannot decrypt: the stored secrets are not a JSON object")
        return value

    def rotate(self, token: str) -> str:
        """``token`` re-encrypted with the first key (any listed key may have made it)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeEncodeError):
            raise SecretKeyError(
                "cannot decrypt: wrong LEDGERBRIDGE_SECRET_KEY (no listed key opens these secrets, "
                "so they cannot be rotated)"
            ) from None
