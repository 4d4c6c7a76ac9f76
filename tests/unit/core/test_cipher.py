"""The one cipher of LEDGERBRIDGE_SECRET_KEY: the first key seals, every listed key opens."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from shared.cipher import MalformedSecretKey, cipher_from_keys, cipher_from_setting, listed_keys
from shared.settings import SettingsError, load_settings


def test_the_first_key_seals_and_every_listed_key_opens():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_before = cipher_from_setting(old).encrypt(b"jar")

    rotating = cipher_from_setting(SecretStr(f"{new}, {old}"))

    assert rotating.decrypt(sealed_before) == b"jar"
    sealed_now = rotating.encrypt(b"jar")
    assert Fernet(new.encode()).decrypt(sealed_now) == b"jar"
    with pytest.raises(InvalidToken):
        Fernet(old.encode()).decrypt(sealed_now)


@pytest.mark.parametrize("value", [None, "", " , "])
def test_no_listed_key_is_no_cipher(value):
    assert cipher_from_setting(value) is None


def test_a_malformed_key_is_named_by_its_position():
    with pytest.raises(MalformedSecretKey, match=r"key #2 is not a Fernet key") as info:
        cipher_from_keys([Fernet.generate_key().decode(), "not-a-key"])

    assert info.value.position == 2
    assert "ledgerbridge secrets generate-key" in str(info.value)


def test_listed_keys_are_stripped_in_order_without_blanks():
    assert listed_keys(SecretStr(" a ,, b ,")) == ["a", "b"]


def test_settings_name_the_malformed_key_of_a_rotation(monkeypatch):
    monkeypatch.setenv("LEDGERBRIDGE_SECRET_KEY", f"{Fernet.generate_key().decode()},not-a-key")

    with pytest.raises(
        SettingsError, match=r"LEDGERBRIDGE_SECRET_KEY: must be a Fernet key .*key #2 is not one"
    ):
        load_settings()


def test_settings_refuse_a_secret_key_of_commas_alone(monkeypatch):
    monkeypatch.setenv("LEDGERBRIDGE_SECRET_KEY", " , ")

    with pytest.raises(SettingsError, match=r"LEDGERBRIDGE_SECRET_KEY: must be a Fernet key"):
        load_settings()
