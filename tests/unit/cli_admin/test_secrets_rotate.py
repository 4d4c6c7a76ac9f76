"""`ledgerbridge secrets rotate`: re-encrypt every stored connection with the new key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from shared.ledger.errors import SecretKeyError
from tests.unit.cli_admin.test_connection_commands import ZUORA_SECRET, add_file_connection


def test_secrets_rotate_reencrypts_every_connection_so_the_old_key_can_go(cli, tmp_path):
    old_key, new_key = cli.key, Fernet.generate_key().decode()
    add_file_connection(cli, "acme", tmp_path / "a")
    add_file_connection(cli, "beta", tmp_path / "b", secret="beta-secret")
    before = cli.raw_connection_rows()

    result = cli("secrets", "rotate", LEDGERBRIDGE_SECRET_KEY=f"{new_key},{old_key}")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "re-encrypted the secrets of 2 connection(s) with the first key of LEDGERBRIDGE_SECRET_KEY",
        "re-encrypted 0 stored ERP refresh token(s) with it",
        "now drop the 1 old key(s): set LEDGERBRIDGE_SECRET_KEY to the first key alone everywhere and "
        "restart the processes",
    ]
    after = cli.raw_connection_rows()
    assert after != before
    ledger = cli.ledger()
    assert ledger.get_connection("acme", cli.box(new_key)).zuora.client_secret == ZUORA_SECRET
    assert ledger.get_connection("beta", cli.box(new_key)).zuora.client_secret == "beta-secret"
    with pytest.raises(SecretKeyError):
        ledger.get_connection("acme", cli.box(old_key))
    listed = cli("connection", "list", "--json", LEDGERBRIDGE_SECRET_KEY=new_key)
    assert listed.exit_code == 0 and '"acme"' in listed.output


def test_secrets_rotate_with_a_key_that_opens_nothing_exits_2_and_changes_nothing(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path)
    before = cli.raw_connection_rows()
    stranger = Fernet.generate_key().decode()

    result = cli("secrets", "rotate", LEDGERBRIDGE_SECRET_KEY=stranger)

    assert result.exit_code == 2
    assert "cannot decrypt: wrong LEDGERBRIDGE_SECRET_KEY" in result.output
    assert cli.raw_connection_rows() == before


def test_secrets_rotate_with_a_single_key_explains_how_to_rotate(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path)

    result = cli("secrets", "rotate")

    assert result.exit_code == 0
    assert "LEDGERBRIDGE_SECRET_KEY holds a single key" in result.output
    assert cli.ledger().get_connection("acme", cli.box()).zuora.client_secret == ZUORA_SECRET


def test_secrets_rotate_help_states_the_procedure(cli):
    result = cli("secrets", "rotate", "--help")

    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert 'LEDGERBRIDGE_SECRET_KEY="NEWKEY,OLDKEY"' in text
    assert "ledgerbridge secrets generate-key" in text
    assert 'Set LEDGERBRIDGE_SECRET_KEY="NEWKEY" everywhere and restart' in text


def test_secrets_rotate_reencrypts_the_stored_erp_refresh_tokens_too(cli, tmp_path):
    old_key, new_key = cli.key, Fernet.generate_key().decode()
    ledger = cli.ledger()
    ledger.save_refresh_token("default", "rt-of-the-environment-connection", cli.box())
    ledger.dispose()

    result = cli("secrets", "rotate", LEDGERBRIDGE_SECRET_KEY=f"{new_key},{old_key}")

    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 stored ERP refresh token(s) with it" in result.output.splitlines()
    ledger = cli.ledger()
    assert ledger.load_refresh_token("default", cli.box(new_key)) == "rt-of-the-environment-connection"
    with pytest.raises(SecretKeyError):
        ledger.load_refresh_token("default", cli.box(old_key))
    ledger.dispose()
