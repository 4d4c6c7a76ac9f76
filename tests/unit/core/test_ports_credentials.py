"""What ``shared.ports`` hands the Acumatica session: the cipher of every listed key and the
ledger row that keeps the connection's rotating refresh token."""

from __future__ import annotations

import logging

from cryptography.fernet import Fernet

from shared import ports
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox
from shared.settings import get_settings


def configure(monkeypatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def test_the_cipher_opens_what_the_old_key_sealed_and_seals_with_the_new_one(ports_on_sqlite, monkeypatch):
    old, new = Fernet.generate_key(), Fernet.generate_key()
    configure(monkeypatch, LEDGERBRIDGE_SECRET_KEY=f"{new.decode()},{old.decode()}")

    cipher = ports.cipher()

    assert cipher is not None
    assert cipher.decrypt(Fernet(old).encrypt(b"jar")) == b"jar"
    assert Fernet(new).decrypt(cipher.encrypt(b"jar")) == b"jar"


def test_the_refresh_token_store_keeps_the_connection_token_encrypted_in_the_ledger(
    ports_on_sqlite, monkeypatch
):
    key = Fernet.generate_key().decode()
    configure(monkeypatch, LEDGERBRIDGE_SECRET_KEY=key)

    store = ports.refresh_token_store("acme")
    assert store is not None
    store.save("rt1")

    ledger = Ledger.from_url(ports_on_sqlite)
    assert ledger.load_refresh_token("acme", SecretBox([key])) == "rt1"
    assert ports.refresh_token_store("acme").load() == "rt1"
    ledger.dispose()


def test_without_a_secret_key_no_refresh_token_is_stored_and_the_log_says_so(
    ports_on_sqlite, monkeypatch, caplog
):
    monkeypatch.delenv("LEDGERBRIDGE_SECRET_KEY", raising=False)
    get_settings.cache_clear()

    with caplog.at_level(logging.WARNING, logger="ledgerbridge.ports"):
        assert ports.refresh_token_store("acme") is None
    assert ports.cipher() is None
    assert "kept in Redis only" in caplog.text
