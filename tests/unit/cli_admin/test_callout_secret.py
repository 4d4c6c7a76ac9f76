"""``ledgerbridge connection callout-secret``: each stored connection's own callout secret, rotated
with the previous one accepted until the rotation is finished."""

from __future__ import annotations

import re

from tests.unit.cli_admin.test_connection_commands import ZUORA_SECRET, add_file_connection


def _stored(cli, name: str) -> tuple[str, ...]:
    return cli.ledger().get_connection(name, cli.box()).callout_secrets


def test_a_new_secret_is_generated_printed_once_and_stored_encrypted(cli, tmp_path):
    assert add_file_connection(cli, "acme", tmp_path / "gl").exit_code == 0

    result = cli("connection", "callout-secret", "acme")

    assert result.exit_code == 0, result.output
    (secret,) = re.findall(r"new callout secret \(shown once\): (\S+)", result.output)
    assert len(secret) >= 40
    assert _stored(cli, "acme") == (secret,)
    assert secret.encode() not in cli.db_path.read_bytes()  # encrypted with the connection's secrets
    assert (
        _stored(cli, "acme")
        and cli.ledger().get_connection("acme", cli.box()).zuora.client_secret == ZUORA_SECRET
    )


def test_a_rotation_keeps_the_previous_secret_until_it_is_finished(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path / "gl")
    cli("connection", "callout-secret", "acme", "--value", "first-secret-0123456789")

    rotated = cli("connection", "callout-secret", "acme", "--value", "second-secret-0123456789")
    during = _stored(cli, "acme")
    finished = cli("connection", "callout-secret", "acme", "--finish")

    assert rotated.exit_code == 0 and "previous secret is still accepted" in rotated.output
    assert during == ("second-secret-0123456789", "first-secret-0123456789")
    assert finished.exit_code == 0
    assert _stored(cli, "acme") == ("second-secret-0123456789",)


def test_bad_input_exits_2_and_changes_nothing(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path / "gl")

    short = cli("connection", "callout-secret", "acme", "--value", "short")
    unknown = cli("connection", "callout-secret", "nobody")
    both = cli("connection", "callout-secret", "acme", "--value", "x" * 20, "--finish")

    assert (short.exit_code, unknown.exit_code, both.exit_code) == (2, 2, 2)
    assert "at least 16 characters" in short.output
    assert "nobody" in unknown.output
    assert _stored(cli, "acme") == ()
