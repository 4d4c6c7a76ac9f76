"""`ledgerbridge connection add|list|remove` against a SQLite ledger (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from shared.connection_probe import Check, probe_export_dir
from shared.connections import AcumaticaTarget, Connection, FileTarget, ZuoraTarget
from shared.ledger.errors import SecretKeyError

ZUORA_SECRET = "zuora-Secret-9f3b1c"
ACUMATICA_PASSWORD = "acu-Password-77e2"
OAUTH_SECRET = "acu-oauth-Secret-41d0"


def add_file_connection(cli, name: str, export_dir: Path, *extra: str, secret: str = ZUORA_SECRET, **env):
    return cli(
        "connection",
        "add",
        name,
        "--zuora-url",
        "us-sandbox",
        "--zuora-client-id",
        f"client-{name}",
        "--zuora-client-secret",
        secret,
        "--erp",
        "file",
        "--export-dir",
        str(export_dir),
        *extra,
        **env,
    )


def add_acumatica_connection(cli, name: str, *extra: str, input: str | None = None):
    return cli(
        "connection",
        "add",
        name,
        "--zuora-url",
        "https://rest.eu.zuora.com/",
        "--zuora-client-id",
        "zc-1",
        "--erp",
        "acumatica",
        "--acumatica-url",
        "https://erp.example.com/AcumaticaERP/",
        "--acumatica-tenant",
        "Company",
        "--acumatica-username",
        "api-user",
        "--acumatica-branch",
        "HQ",
        *extra,
        input=input,
    )


# -- add -------------------------------------------------------------------------------------------


def test_connection_add_stores_secret_encrypted_in_the_raw_row(cli, tmp_path):
    result = add_file_connection(cli, "acme", tmp_path / "gl")

    assert result.exit_code == 0, result.output
    assert result.output == (
        f"connection acme added (https://rest.sandbox.na.zuora.com -> file {tmp_path / 'gl'})\n"
    )
    rows = cli.raw_connection_rows()
    assert len(rows) == 1
    assert ZUORA_SECRET not in repr(rows[0])
    assert ZUORA_SECRET.encode() not in cli.db_path.read_bytes()
    assert cli.ledger().get_connection("acme", cli.box()) == Connection(
        name="acme",
        zuora=ZuoraTarget(
            base_url="https://rest.sandbox.na.zuora.com", client_id="client-acme", client_secret=ZUORA_SECRET
        ),
        erp_kind="file",
        file=FileTarget(export_dir=(tmp_path / "gl").resolve()),
    )


def test_connection_add_prompts_for_missing_secrets_without_echoing_them(cli):
    result = add_acumatica_connection(cli, "acu", input=f"{ZUORA_SECRET}\n{ACUMATICA_PASSWORD}\n")

    assert result.exit_code == 0, result.output
    assert "Zuora client secret:" in result.output
    assert "Acumatica password for api-user:" in result.output
    assert ZUORA_SECRET not in result.output
    assert ACUMATICA_PASSWORD not in result.output
    raw = repr(cli.raw_connection_rows())
    assert ZUORA_SECRET not in raw and ACUMATICA_PASSWORD not in raw
    conn = cli.ledger().get_connection("acu", cli.box())
    assert conn.zuora.base_url == "https://rest.eu.zuora.com"
    assert conn.zuora.client_secret == ZUORA_SECRET
    assert conn.acumatica == AcumaticaTarget(
        url="https://erp.example.com/AcumaticaERP",
        endpoint="Default/24.200.001",
        username="api-user",
        password=ACUMATICA_PASSWORD,
        tenant="Company",
        branch="HQ",
    )


def test_connection_add_oauth_prompts_for_the_client_secret_only(cli):
    result = cli(
        "connection",
        "add",
        "oauth",
        "--zuora-url",
        "eu-production",
        "--zuora-client-id",
        "zc",
        "--zuora-client-secret",
        ZUORA_SECRET,
        "--erp",
        "acumatica",
        "--acumatica-url",
        "https://erp.example.com",
        "--acumatica-client-id",
        "6B3A1F6E@Company",
        "--acumatica-endpoint",
        "Default/23.200.001",
        "--acumatica-requests-per-minute",
        "50",
        "--acumatica-max-concurrent",
        "6",
        "--acumatica-max-sessions",
        "1",
        input=f"{OAUTH_SECRET}\n",
    )

    assert result.exit_code == 0, result.output
    assert "Acumatica OAuth client secret:" in result.output
    assert OAUTH_SECRET not in repr(cli.raw_connection_rows())
    conn = cli.ledger().get_connection("oauth", cli.box())
    assert conn.zuora.base_url == "https://rest.eu.zuora.com"
    assert conn.acumatica == AcumaticaTarget(
        url="https://erp.example.com",
        endpoint="Default/23.200.001",
        client_id="6B3A1F6E@Company",
        client_secret=OAUTH_SECRET,
        requests_per_minute=50,
        max_concurrent=6,
        max_sessions=1,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zuora-url", "narnia"], "--zuora-url must be an http(s) URL or one of: apac-developer"),
        (["--acumatica-endpoint", "Default/18.200.001"], "--acumatica-endpoint must be one of"),
        (["--acumatica-url", "erp.example.com"], "--acumatica-url must be an http(s) URL"),
    ],
)
def test_connection_add_bad_option_exits_2_before_prompting(cli, args, message):
    base = {
        "--zuora-url": "us-sandbox",
        "--acumatica-endpoint": "Default/24.200.001",
        "--acumatica-url": "https://erp.example.com",
    }
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [item for pair in base.items() for item in pair]

    result = cli(
        "connection",
        "add",
        "x",
        "--zuora-client-id",
        "c",
        "--erp",
        "acumatica",
        "--acumatica-username",
        "u",
        *flat,
        input="",
    )

    assert result.exit_code == 2
    assert message in result.output
    assert "secret:" not in result.output
    assert cli.raw_connection_rows() == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--erp", "file"], "--erp file needs --export-dir"),
        (["--erp", "acumatica"], "--erp acumatica needs --acumatica-url"),
        (
            ["--erp", "acumatica", "--acumatica-url", "https://e.example.com"],
            "--erp acumatica needs --acumatica-username (and a password) or --acumatica-client-id",
        ),
        (
            ["--erp", "file", "--export-dir", "d", "--acumatica-url", "https://e"],
            "--acumatica-* options need",
        ),
    ],
)
def test_connection_add_incomplete_erp_options_exit_2(cli, args, message):
    result = cli(
        "connection", "add", "x", "--zuora-url", "us-sandbox", "--zuora-client-id", "c", *args, input=""
    )

    assert result.exit_code == 2
    assert message in result.output


@pytest.mark.parametrize("name", ["bad name", ".x", "a" * 65, "a/b", "a:b"])
def test_connection_add_refuses_a_name_unfit_for_keys(cli, tmp_path, name):
    result = add_file_connection(cli, name, tmp_path)

    assert result.exit_code == 2
    assert f"connection name {name!r} must be 1-64 letters" in result.output


def test_connection_add_existing_name_exits_2_unless_replace(cli, tmp_path):
    assert add_file_connection(cli, "acme", tmp_path / "one").exit_code == 0

    refused = add_file_connection(cli, "acme", tmp_path / "two", secret="other")
    replaced = add_file_connection(cli, "acme", tmp_path / "two", "--replace", secret="other")

    assert refused.exit_code == 2
    assert "a connection named 'acme' already exists" in refused.output
    assert replaced.exit_code == 0, replaced.output
    assert replaced.output.startswith("connection acme replaced (")
    conn = cli.ledger().get_connection("acme", cli.box())
    assert (conn.zuora.client_secret, conn.file) == ("other", FileTarget((tmp_path / "two").resolve()))


def test_connection_add_without_secret_key_exits_2_naming_the_variable(cli, tmp_path):
    result = cli(
        "connection",
        "add",
        "acme",
        "--zuora-url",
        "us-sandbox",
        "--zuora-client-id",
        "c",
        "--zuora-client-secret",
        "s",
        "--erp",
        "file",
        "--export-dir",
        str(tmp_path),
        LEDGERBRIDGE_SECRET_KEY=None,
    )

    assert result.exit_code == 2
    assert "set LEDGERBRIDGE_SECRET_KEY" in result.output
    assert cli.raw_connection_rows() == []


def test_connection_add_on_an_unmigrated_ledger_says_to_upgrade(cli, tmp_path):
    result = add_file_connection(
        cli, "acme", tmp_path, LEDGERBRIDGE_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}"
    )

    assert result.exit_code == 2
    assert "run `ledgerbridge db upgrade`" in result.output


def test_connection_add_warns_when_the_environment_shadows_the_name(cli, tmp_path):
    result = add_file_connection(
        cli,
        "default",
        tmp_path,
        LEDGERBRIDGE_ZUORA_BASE_URL="us-sandbox",
        LEDGERBRIDGE_ZUORA_CLIENT_ID="env-client",
        LEDGERBRIDGE_ZUORA_CLIENT_SECRET="env-secret",
    )

    assert result.exit_code == 0
    assert "the environment wins" in result.output


# -- list ------------------------------------------------------------------------------------------


def test_connection_list_json_shows_every_connection_and_no_secret(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path / "gl")
    add_acumatica_connection(
        cli, "acu", "--acumatica-password", ACUMATICA_PASSWORD, input=f"{ZUORA_SECRET}\n"
    )

    result = cli("connection", "list", "--json")

    assert result.exit_code == 0, result.output
    assert ZUORA_SECRET not in result.output and ACUMATICA_PASSWORD not in result.output
    rows = json.loads(result.output)
    for row in rows:
        del row["created_at"], row["updated_at"]
    assert rows == [
        {
            "name": "acme",
            "source": "ledger",
            "zuora_base_url": "https://rest.sandbox.na.zuora.com",
            "zuora_client_id": "client-acme",
            "zuora_entity_id": None,
            "zuora_requests_per_minute": 2500,
            "zuora_max_concurrent": 20,
            "erp": "file",
            "acumatica": None,
            "export_dir": str((tmp_path / "gl").resolve()),
            "approval": "none",
        },
        {
            "name": "acu",
            "source": "ledger",
            "zuora_base_url": "https://rest.eu.zuora.com",
            "zuora_client_id": "zc-1",
            "zuora_entity_id": None,
            "zuora_requests_per_minute": 2500,
            "zuora_max_concurrent": 20,
            "erp": "acumatica",
            "acumatica": {
                "url": "https://erp.example.com/AcumaticaERP",
                "endpoint": "Default/24.200.001",
                "username": "api-user",
                "tenant": "Company",
                "branch": "HQ",
                "requests_per_minute": 150,
                "max_concurrent": 2,
                "max_sessions": 2,
                "closed_period": "park",
            },
            "export_dir": None,
            "approval": "none",
        },
    ]


def test_a_connection_posts_into_the_next_open_period_only_when_told_to(cli):
    refused = add_acumatica_connection(
        cli, "acu", "--acumatica-password", ACUMATICA_PASSWORD, "--acumatica-closed-period", "later",
        input=f"{ZUORA_SECRET}\n",
    )  # fmt: skip
    assert refused.exit_code == 2
    assert "--acumatica-closed-period must be park or next_open, not 'later'" in refused.output

    added = add_acumatica_connection(
        cli, "acu", "--acumatica-password", ACUMATICA_PASSWORD, "--acumatica-closed-period", "next_open",
        input=f"{ZUORA_SECRET}\n",
    )  # fmt: skip

    assert added.exit_code == 0, added.output
    (row,) = json.loads(cli("connection", "list", "--json").output)
    assert row["acumatica"]["closed_period"] == "next_open"


def test_connection_list_table_names_each_connection_and_no_secret(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path / "gl")

    result = cli("connection", "list")

    assert result.exit_code == 0
    assert "acme" in result.output and "https://rest.sandbox.na.zuora.com" in result.output
    assert "client-acme" in result.output
    assert ZUORA_SECRET not in result.output


def test_connection_list_includes_the_environment_connection(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path / "gl")

    result = cli(
        "connection",
        "list",
        "--json",
        LEDGERBRIDGE_CONNECTION="prod",
        LEDGERBRIDGE_ZUORA_BASE_URL="eu-sandbox",
        LEDGERBRIDGE_ZUORA_CLIENT_ID="env-client",
        LEDGERBRIDGE_ZUORA_CLIENT_SECRET="env-secret-value",
        LEDGERBRIDGE_GL_EXPORT_DIR=str(tmp_path / "env-gl"),
    )

    assert result.exit_code == 0, result.output
    assert "env-secret-value" not in result.output
    rows = json.loads(result.output)
    assert [(r["name"], r["source"], r["zuora_base_url"]) for r in rows] == [
        ("acme", "ledger", "https://rest.sandbox.na.zuora.com"),
        ("prod", "environment", "https://rest.sandbox.eu.zuora.com"),
    ]


def test_connection_list_empty_says_how_to_add_one(cli):
    result = cli("connection", "list")

    assert result.exit_code == 0
    assert result.output == "no connections: add one with `ledgerbridge connection add`\n"


# -- remove ----------------------------------------------------------------------------------------


def test_connection_remove_deletes_the_row_and_its_secrets(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path / "a")
    add_file_connection(cli, "other", tmp_path / "b")

    result = cli("connection", "remove", "acme", "--yes")

    assert result.exit_code == 0, result.output
    assert result.output == "connection acme removed (its records and audit trail are kept)\n"
    assert [row.name for row in cli.ledger().list_connections()] == ["other"]


def test_connection_remove_asks_first_and_keeps_the_row_on_no(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path)

    result = cli("connection", "remove", "acme", input="n\n")

    assert result.exit_code == 1  # click's Abort
    assert [row.name for row in cli.ledger().list_connections()] == ["acme"]


def test_connection_remove_unknown_name_exits_2(cli):
    result = cli("connection", "remove", "ghost", "--yes")

    assert result.exit_code == 2
    assert "no stored connection named 'ghost'" in result.output


# -- the file target's probe -------------------------------------------------------------------------


def test_probe_export_dir_creates_a_missing_directory(tmp_path):
    target = tmp_path / "new" / "gl"

    checks = probe_export_dir(FileTarget(target))

    assert checks == [Check("file", f"write to {target}", True, "the directory is writable")]
    assert target.is_dir() and list(target.iterdir()) == []


def test_probe_export_dir_reports_a_path_that_cannot_be_a_directory(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = blocker / "gl"

    [check] = probe_export_dir(FileTarget(target))

    assert (check.side, check.name, check.ok) == ("file", f"write to {target}", False)
    assert check.detail.endswith(f"({target})")


def test_stored_secrets_are_unreadable_with_another_key(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path)

    with pytest.raises(SecretKeyError):
        cli.ledger().get_connection("acme", cli.box(Fernet.generate_key().decode()))


def test_connection_approval_sets_the_rule_and_refuses_an_unknown_one(cli, tmp_path):
    add_file_connection(cli, "acme", tmp_path / "gl")

    result = cli("connection", "approval", "acme", "close")

    assert result.exit_code == 0, result.output
    assert "connection acme: approval close (was none)" in result.output
    listed = json.loads(cli("connection", "list", "--json").output)
    assert [row["approval"] for row in listed] == ["close"]
    bad = cli("connection", "approval", "acme", "sometimes")
    assert bad.exit_code == 2
    assert "approval must be one of none, close, all, not 'sometimes'" in bad.output
    assert json.loads(cli("connection", "list", "--json").output)[0]["approval"] == "close"
