"""`ledgerbridge connection test` against both sandboxes over loopback HTTP, with real Redis."""

from __future__ import annotations

import json
import socket
import types
import uuid
from collections.abc import Iterator

import pytest

from sandbox.acumatica import DEFAULT_CLIENT_ID as ACU_CLIENT_ID
from sandbox.acumatica import DEFAULT_CLIENT_SECRET as ACU_CLIENT_SECRET
from sandbox.acumatica import DEFAULT_PASSWORD, DEFAULT_TENANT, DEFAULT_USERNAME, AcumaticaBackend
from sandbox.acumatica import create_app as create_acumatica_app
from sandbox.server import ThreadedServer
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from shared import connection_probe
from shared.erp.acumatica_session import session_key
from shared.zuora.auth import token_key
from tests.unit.cli_admin.support import Cli, make_cli

pytestmark = pytest.mark.redis


@pytest.fixture
def acumatica() -> Iterator[tuple[ThreadedServer, AcumaticaBackend]]:
    backend = AcumaticaBackend()
    with ThreadedServer(create_acumatica_app(backend)) as server:
        yield server, backend


@pytest.fixture
def zuora(zuora_sandbox) -> ThreadedServer:
    return zuora_sandbox(seed=1)


@pytest.fixture
def cli(tmp_path, redis_url) -> Cli:
    made = make_cli(tmp_path)
    made.extra["LEDGERBRIDGE_REDIS_URL"] = redis_url
    return made


@pytest.fixture
def probe_namespace(monkeypatch) -> str:
    """Pin the probe's throwaway Redis namespace so the test can look for leftovers."""
    fixed = uuid.uuid4()
    monkeypatch.setattr(connection_probe, "uuid", types.SimpleNamespace(uuid4=lambda: fixed))
    return f"lbprobe-{fixed.hex}"


def add(cli: Cli, name: str, zuora_url: str, *erp: str, zuora_secret: str = DEFAULT_CLIENT_SECRET) -> None:
    result = cli(
        "connection",
        "add",
        name,
        "--zuora-url",
        zuora_url,
        "--zuora-client-id",
        DEFAULT_CLIENT_ID,
        "--zuora-client-secret",
        zuora_secret,
        *erp,
    )
    assert result.exit_code == 0, result.output


def acumatica_options(url: str, *, password: str = DEFAULT_PASSWORD, endpoint: str = "Default/24.200.001"):
    return (
        "--erp",
        "acumatica",
        "--acumatica-url",
        url,
        "--acumatica-endpoint",
        endpoint,
        "--acumatica-tenant",
        DEFAULT_TENANT,
        "--acumatica-username",
        DEFAULT_USERNAME,
        "--acumatica-password",
        password,
    )


def run_test(cli: Cli, name: str | None, **env: str | None) -> tuple[int, dict]:
    args = ["connection", "test", "--json"] + ([name] if name else [])
    result = cli(*args, **env)
    assert result.exit_code in (0, 1), result.output
    start = result.output.index("{")
    return result.exit_code, json.loads(result.output[start:])


def summary(report: dict) -> list[tuple[str, str, bool]]:
    return [(c["side"], c["name"], c["ok"]) for c in report["checks"]]


def test_connection_test_acumatica_connection_passes_every_check_and_leaves_nothing_behind(
    cli, zuora, acumatica, connection_name, real_redis, probe_namespace
):
    server, backend = acumatica
    add(cli, connection_name, zuora.url, *acumatica_options(server.url))

    code, report = run_test(cli, connection_name)

    assert code == 0, report
    assert summary(report) == [
        ("zuora", "OAuth token", True),
        ("zuora", "read accounting periods", True),
        ("acumatica", "sign in", True),
        ("acumatica", "endpoint Default/24.200.001", True),
        ("acumatica", "reference data", True),
    ]
    details = {c["name"]: c["detail"] for c in report["checks"]}
    assert details["sign in"] == f"signed in as user {DEFAULT_USERNAME} in tenant {DEFAULT_TENANT}"
    assert details["reference data"].startswith("3 active currencies readable (EUR, GBP, USD)")
    # The probe logged out of the session it opened and deleted its own keys; the fleet's token
    # and session were never touched.
    assert backend.sessions == {}
    assert list(real_redis.scan_iter(match=f"*{probe_namespace}*")) == []
    assert real_redis.exists(token_key(connection_name), session_key(connection_name)) == 0
    # Every probe exchange is in the audit trail under the real connection name.
    ledger = cli.ledger()
    events = ledger.timeline(f"connection:{connection_name}")
    ledger.dispose()
    assert {e.connection for e in events} == {connection_name}
    assert [(e.api, e.method, e.url.split("?")[0].rsplit("/", 1)[-1], e.status) for e in events] == [
        ("zuora", "POST", "token", 200),
        ("zuora", "GET", "accounting-periods", 200),
        ("acumatica", "POST", "login", 204),
        ("acumatica", "GET", "entity", 200),
        ("acumatica", "GET", "Currency", 200),
        ("acumatica", "POST", "logout", 204),
    ]


def test_connection_test_wrong_credentials_fail_each_side_with_the_reason(
    cli, zuora, acumatica, connection_name
):
    server, backend = acumatica
    add(
        cli, connection_name, zuora.url, *acumatica_options(server.url, password="wrong"), zuora_secret="nope"
    )

    code, report = run_test(cli, connection_name)

    assert code == 1
    assert summary(report) == [
        ("zuora", "OAuth token", False),
        ("zuora", "read accounting periods", False),
        ("acumatica", "sign in", False),
        ("acumatica", "endpoint Default/24.200.001", False),
        ("acumatica", "reference data", False),
    ]
    details = [c["detail"] for c in report["checks"]]
    assert details[0].startswith("Zuora refused the OAuth client credentials (HTTP 401)")
    assert details[1] == "skipped: no token"
    assert "Invalid credentials" in details[2]
    assert details[3:] == ["skipped: not signed in", "skipped: not signed in"]
    assert backend.sessions == {}


def test_connection_test_endpoint_the_instance_does_not_serve_fails_that_check(
    cli, zuora, acumatica, connection_name
):
    server, _ = acumatica
    add(cli, connection_name, zuora.url, *acumatica_options(server.url, endpoint="Default/22.200.001"))

    code, report = run_test(cli, connection_name)

    assert code == 1
    assert summary(report)[2:] == [
        ("acumatica", "sign in", True),
        ("acumatica", "endpoint Default/22.200.001", False),
        ("acumatica", "reference data", False),
    ]
    assert report["checks"][3]["detail"] == "not served by the instance; it lists: Default/24.200.001"


def test_connection_test_checks_the_mapping_files_accounts_in_acumatica(
    cli, zuora, acumatica, connection_name, tmp_path
):
    server, _ = acumatica
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        '[erp]\nbranch = "HQ"\nledger = "ACTUAL"\ncustomer_class = "DEFAULT"\n'
        '[accounts]\n"Sales Revenue" = { account = "40000" }\n"Deferred Revenue" = { account = "99999" }\n'
        '[payment_methods]\nCreditCard = { method = "CARD", cash_account = "10400" }\n'
        '[currencies]\nUSD = "USD"\nCAD = "CAD"\n'
    )
    add(cli, connection_name, zuora.url, *acumatica_options(server.url))

    code, report = run_test(cli, connection_name, LEDGERBRIDGE_MAPPING_FILE=str(mapping))

    assert code == 1
    [reference] = [c for c in report["checks"] if c["name"] == "reference data"]
    assert reference == {
        "side": "acumatica",
        "name": "reference data",
        "ok": False,
        "detail": "account 99999 does not exist in Acumatica; currency CAD is inactive in Acumatica",
    }


def test_connection_test_oauth_hands_the_new_refresh_token_to_the_fleet(
    cli, zuora, acumatica, connection_name, real_redis
):
    server, backend = acumatica
    add(
        cli,
        connection_name,
        zuora.url,
        *acumatica_options(server.url),
        "--acumatica-client-id",
        ACU_CLIENT_ID,
        "--acumatica-client-secret",
        ACU_CLIENT_SECRET,
    )

    code, report = run_test(cli, connection_name)

    assert code == 0, report
    assert (
        report["checks"][2]["detail"]
        == f"signed in as OAuth client {ACU_CLIENT_ID} in tenant {DEFAULT_TENANT}"
    )
    fleet_key = f"ledgerbridge:{connection_name}:acumatica:refresh_token"
    try:
        assert real_redis.exists(fleet_key) == 1
    finally:
        real_redis.delete(fleet_key)
    assert backend.sessions == {}
    # And it is in the ledger, where the fleet finds it once Redis has lost it.
    ledger = cli.ledger()
    stored = ledger.load_refresh_token(connection_name, cli.box())
    ledger.dispose()
    assert set(backend.refresh_tokens) == {stored}


def test_connection_test_file_connection_checks_zuora_and_the_directory(
    cli, zuora, connection_name, tmp_path
):
    add(cli, connection_name, zuora.url, "--erp", "file", "--export-dir", str(tmp_path / "gl"))

    code, report = run_test(cli, connection_name)

    assert code == 0, report
    assert summary(report) == [
        ("zuora", "OAuth token", True),
        ("zuora", "read accounting periods", True),
        ("file", f"write to {(tmp_path / 'gl').resolve()}", True),
    ]


def test_connection_test_default_connection_comes_from_the_environment(cli, zuora, connection_name, tmp_path):
    code, report = run_test(
        cli,
        None,
        LEDGERBRIDGE_CONNECTION=connection_name,
        LEDGERBRIDGE_ZUORA_BASE_URL=zuora.url,
        LEDGERBRIDGE_ZUORA_CLIENT_ID=DEFAULT_CLIENT_ID,
        LEDGERBRIDGE_ZUORA_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        LEDGERBRIDGE_GL_EXPORT_DIR=str(tmp_path / "gl"),
    )

    assert code == 0, report
    assert report["connection"] == connection_name
    assert [c["side"] for c in report["checks"]] == ["zuora", "zuora", "file"]


def test_connection_test_unreachable_zuora_fails_fast_with_the_network_error(cli, connection_name, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    add(cli, connection_name, f"http://127.0.0.1:{port}", "--erp", "file", "--export-dir", str(tmp_path))

    code, report = run_test(cli, connection_name)

    assert code == 1
    assert summary(report) == [
        ("zuora", "OAuth token", False),
        ("zuora", "read accounting periods", False),
        ("file", f"write to {tmp_path.resolve()}", True),
    ]
    assert "error talking to Zuora" in report["checks"][0]["detail"]


def test_connection_test_unknown_name_exits_2(cli):
    result = cli("connection", "test", "ghost")

    assert result.exit_code == 2
    assert "no connection named 'ghost' in the ledger" in result.output
