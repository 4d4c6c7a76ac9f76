"""What ``shared.ports`` hands the Acumatica session: the cipher of every listed key."""

from __future__ import annotations

from cryptography.fernet import Fernet

from shared import ports
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


def test_without_a_secret_key_there_is_no_cipher(ports_on_sqlite, monkeypatch):
    monkeypatch.delenv("LEDGERBRIDGE_SECRET_KEY", raising=False)
    get_settings.cache_clear()

    assert ports.cipher() is None
