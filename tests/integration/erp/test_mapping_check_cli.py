# mypy: allow-untyped-defs, allow-incomplete-defs, allow-untyped-calls
"""``ledgerbridge mapping check`` against the Acumatica sandbox over HTTP.

The command is run with typer's CliRunner in a clean ``LEDGERBRIDGE_*`` environment pointing at
the sandbox (the default connection, built from the environment as in production; Zuora is
configured but never contacted). Exit codes: 0 ready, 1 problems in the ERP, 2 bad file.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from sandbox.acumatica import DEFAULT_ENDPOINT, DEFAULT_PASSWORD, DEFAULT_TENANT, DEFAULT_USERNAME
from shared import ports
from shared.ledger.migrate import upgrade

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "mapping.example.toml"
TODAY = dt.date.today()
PERIOD = f"{TODAY.year:04d}-{TODAY.month:02d}"
LAST_YEAR = TODAY.year - 1  # the sandbox seeds open financial years around its today


@pytest.fixture
def run(acumatica_sandbox, redis_url, real_redis, connection_name, tmp_path):
    """``run(*args, **env)`` -> the CliRunner result of ``ledgerbridge *args`` against a sandbox;
    ``run.sandbox`` is that sandbox, ``run.connection`` the default connection's name."""
    sandbox = acumatica_sandbox()
    database_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(database_url)

    def invoke(*args: str, **overrides: str | None) -> Result:
        env: dict[str, str | None] = {
            k: None
            for k in os.environ
            if k.startswith("LEDGERBRIDGE_") and not k.startswith("LEDGERBRIDGE_TEST_")
        }
        env.update(
            COLUMNS="1000",
            LEDGERBRIDGE_DATABASE_URL=database_url,
            LEDGERBRIDGE_REDIS_URL=redis_url,
            LEDGERBRIDGE_CONNECTION=connection_name,
            LEDGERBRIDGE_ZUORA_BASE_URL="http://127.0.0.1:9",
            LEDGERBRIDGE_ZUORA_CLIENT_ID="unused",
            LEDGERBRIDGE_ZUORA_CLIENT_SECRET="unused",
            LEDGERBRIDGE_ERP="acumatica",
            LEDGERBRIDGE_ACUMATICA_URL=sandbox.url,
            LEDGERBRIDGE_ACUMATICA_ENDPOINT=DEFAULT_ENDPOINT,
            LEDGERBRIDGE_ACUMATICA_USERNAME=DEFAULT_USERNAME,
            LEDGERBRIDGE_ACUMATICA_PASSWORD=DEFAULT_PASSWORD,
            LEDGERBRIDGE_ACUMATICA_TENANT=DEFAULT_TENANT,
            LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE="60000",  # the sandbox has no licence limit
            LEDGERBRIDGE_MAPPING_FILE=str(EXAMPLE),
        )
        env.update(overrides)
        ports.reset_for_tests()
        try:
            return CliRunner().invoke(app, list(args), env=env)
        finally:
            ports.reset_for_tests()

    invoke.sandbox = sandbox  # type: ignore[attr-defined]
    invoke.connection = connection_name  # type: ignore[attr-defined]
    yield invoke
    for key in real_redis.scan_iter(match=f"ledgerbridge:{connection_name}:*"):
        real_redis.delete(key)


def test_mapping_check_of_the_example_against_the_seeded_sandbox_exits_0(run):
    result = run("mapping", "check")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"{EXAMPLE} is valid; acumatica ({run.connection}) reports no problem with its 6 accounts, "
        f"3 currencies and period {PERIOD}"
    )
    counts = run.sandbox.counts()
    assert (counts["logins"], counts["logouts"], counts["open_sessions"]) == (1, 1, 0)


def test_mapping_check_prints_every_problem_and_exits_1(run, tmp_path):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(
        "[erp]\nbranch = 'HQ'\n"
        "[accounts]\n'Sales Revenue' = { account = '40000' }\n'Deferred Revenue' = { account = '77777' }\n"
        "[payment_methods]\nCheck = { method = 'CHECK', cash_account = '10300' }\n"
        "[currencies]\nUSD = 'USD'\nJPY = 'JPY'\nCAD = 'CAD'\n"
    )
    run.sandbox.period_status(f"01{LAST_YEAR}", "Closed")

    result = run("mapping", "check", "--period", f"{LAST_YEAR}-01", LEDGERBRIDGE_MAPPING_FILE=str(mapping))

    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert [line.strip() for line in result.stderr.splitlines()][1:] == [
        "- account 10300 does not exist in Acumatica",
        "- account 77777 does not exist in Acumatica",
        "- currency CAD is inactive in Acumatica",
        "- currency JPY does not exist in Acumatica",
        f"- financial period 01-{LAST_YEAR} is Closed in Acumatica (it must be Open)",
        f"- financial period 01-{LAST_YEAR} is closed in AR in Acumatica",
    ]
    assert result.stderr.startswith(f"{mapping}: 6 problem(s) in acumatica (")
    assert run.sandbox.counts()["open_sessions"] == 0


def test_mapping_check_names_the_endpoint_setting_when_the_version_is_wrong(run):
    result = run("mapping", "check", LEDGERBRIDGE_ACUMATICA_ENDPOINT="Default/22.200.001")

    assert result.exit_code == 1, result.output
    assert "set LEDGERBRIDGE_ACUMATICA_ENDPOINT to one of Default/24.200.001" in result.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "[erp]\nbranch = 'HQ'\n[currencies]\nUSD = 'US Dollar'\n",
            "[currencies]: USD: the ERP currency must be 1-5 characters",
        ),
        ("[erp\n", "not valid TOML"),
    ],
)
def test_mapping_check_of_an_invalid_file_exits_2_without_asking_the_erp(run, tmp_path, content, expected):
    mapping = tmp_path / "bad.toml"
    mapping.write_text(content)

    result = run("mapping", "check", LEDGERBRIDGE_MAPPING_FILE=str(mapping))

    assert result.exit_code == 2, result.output
    assert str(mapping) in result.stderr and expected in result.stderr
    assert run.sandbox.counts()["requests"] == 0


def test_mapping_check_without_a_mapping_file_exits_2(run):
    result = run("mapping", "check", LEDGERBRIDGE_MAPPING_FILE=None)

    assert result.exit_code == 2
    assert "LEDGERBRIDGE_MAPPING_FILE is not set" in result.stderr


def test_mapping_check_of_a_bad_period_exits_2(run):
    result = run("mapping", "check", "--period", "2025-13")

    assert result.exit_code == 2
    assert "--period: period must be a date or 'YYYY-MM', not '2025-13'" in result.stderr
    assert run.sandbox.counts()["requests"] == 0
