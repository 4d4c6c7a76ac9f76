from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from shared.connections import default_connection
from shared.settings import DEFAULT_JOURNAL_TRANSACTION_TYPES, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("LEDGERBRIDGE_"):
            monkeypatch.delenv(key)


def test_settings_defaults_when_environment_is_empty():
    settings = load_settings()
    assert settings.database_url == "sqlite:///ledgerbridge.db"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.transaction_types == DEFAULT_JOURNAL_TRANSACTION_TYPES


def test_settings_error_names_each_wrong_variable(monkeypatch):
    monkeypatch.setenv("LEDGERBRIDGE_DATABASE_URL", "mysql://x")
    monkeypatch.setenv("LEDGERBRIDGE_SECRET_KEY", "not-a-key")
    monkeypatch.setenv("LEDGERBRIDGE_ACUMATICA_ENDPOINT", "Default/26.200.001")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "LEDGERBRIDGE_DATABASE_URL: must start with sqlite:// or postgresql+psycopg://" in text
    assert "LEDGERBRIDGE_SECRET_KEY: must be a Fernet key" in text
    assert "LEDGERBRIDGE_ACUMATICA_ENDPOINT: must be one of the contract-version-4 endpoints" in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("eu-production", "https://rest.eu.zuora.com"),
        ("US-Sandbox", "https://rest.sandbox.na.zuora.com"),
        ("http://127.0.0.1:8081/", "http://127.0.0.1:8081"),
    ],
)
def test_zuora_base_url_accepts_data_centre_names_and_urls(monkeypatch, value, expected):
    monkeypatch.setenv("LEDGERBRIDGE_ZUORA_BASE_URL", value)
    assert load_settings().zuora_base_url == expected


def test_zuora_base_url_rejects_unknown_name_listing_choices(monkeypatch):
    monkeypatch.setenv("LEDGERBRIDGE_ZUORA_BASE_URL", "mars-production")
    with pytest.raises(
        SettingsError,
        match=r"LEDGERBRIDGE_ZUORA_BASE_URL: must be an http\(s\) URL or one of: .*eu-production",
    ):
        load_settings()


def test_journal_transaction_types_parsed_from_comma_list(monkeypatch):
    monkeypatch.setenv("LEDGERBRIDGE_JOURNAL_TRANSACTION_TYPES", "Invoice Item, Taxation Item")
    assert load_settings().transaction_types == ("Invoice Item", "Taxation Item")


def test_default_connection_requires_zuora_credentials():
    with pytest.raises(SettingsError) as info:
        default_connection(load_settings())
    assert str(info.value) == (
        "missing configuration: set LEDGERBRIDGE_ZUORA_BASE_URL, LEDGERBRIDGE_ZUORA_CLIENT_ID, "
        "LEDGERBRIDGE_ZUORA_CLIENT_SECRET"
    )


def test_default_connection_acumatica_requires_url_and_login(monkeypatch):
    monkeypatch.setenv("LEDGERBRIDGE_ZUORA_BASE_URL", "us-sandbox")
    monkeypatch.setenv("LEDGERBRIDGE_ZUORA_CLIENT_ID", "id")
    monkeypatch.setenv("LEDGERBRIDGE_ZUORA_CLIENT_SECRET", "secret")
    monkeypatch.setenv("LEDGERBRIDGE_ERP", "acumatica")
    monkeypatch.setenv("LEDGERBRIDGE_ACUMATICA_URL", "https://erp.example.com/AcumaticaERP")
    with pytest.raises(
        SettingsError, match="LEDGERBRIDGE_ACUMATICA_USERNAME, LEDGERBRIDGE_ACUMATICA_PASSWORD"
    ):
        default_connection(load_settings())


def test_default_connection_keeps_secrets_out_of_repr(monkeypatch):
    monkeypatch.setenv("LEDGERBRIDGE_ZUORA_BASE_URL", "us-sandbox")
    monkeypatch.setenv("LEDGERBRIDGE_ZUORA_CLIENT_ID", "id")
    monkeypatch.setenv("LEDGERBRIDGE_ZUORA_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("LEDGERBRIDGE_SECRET_KEY", Fernet.generate_key().decode())
    conn = default_connection(load_settings())
    assert conn.zuora.client_secret == "s3cret-value"
    assert "s3cret-value" not in repr(conn)
    assert conn.erp_kind == "file"
