"""The evidence pack of a period's close (``shared.evidence``, ``ledgerbridge close-evidence``).

Closes really run over the Zuora and Acumatica sandboxes: in-process (the close unit tests'
harness) on SQLite and PostgreSQL, and once through the ``ledgerbridge`` command with a real Celery
worker. The pack is read back as an auditor would: unzipped, its CSV and JSON parsed, and every
byte of it searched for the secrets of the connection it describes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from shared.close.approval import decide, record_maker
from shared.close.state import ApprovalState, ReconcileState, journal_numbers, step_state
from shared.connections import AcumaticaTarget, Connection, ZuoraTarget
from shared.evidence import NoCloseRun, build_evidence_pack, difference
from shared.ledger.migrate import upgrade
from shared.ledger.models import AuditKind
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox
from shared.settings import Settings, load_settings
from tests.integration.close.conftest import CloseEnv
from tests.unit.close.support import Harness, write_mapping

PERIOD = "December 2024"
UNMAPPED = "Customer Cash on Account"
EXPECTED_FILES = {
    "README.txt",
    "timeline.csv",
    "timeline.json",
    "approvals.csv",
    "reconciliation.csv",
    "exceptions.csv",
    "mapping.toml",
    "configuration.json",
}

# The secrets of the connection the pack describes: none may appear anywhere in it.
SECRETS = {
    "zuora_client_secret": "zuora-client-secret-5b1e0c7e",
    "acumatica_password": "acumatica-password-9f3d2a61",
    "acumatica_client_secret": "acumatica-client-secret-77c4",
    "acumatica_refresh_token": "acumatica-refresh-token-1d2e",
    "callout_hmac_secret": "callout-hmac-secret-aa81f0",
    "callout_hmac_previous_secret": "callout-hmac-previous-3c9b",
    "metrics_token": "metrics-bearer-token-e0d55b",
    "console_secret": "console-cookie-signing-secret-0123456789abcdef",
}
DATABASE_PASSWORD = "database-password-6f1c"
REDIS_PASSWORD = "redis-password-48ad"
WEBHOOK_TOKEN = "webhook-path-token-c2f9e1"
URL_PASSWORD = "url-userinfo-password-71b0"


class Pack:
    """An evidence pack, unzipped."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None
            self.files = {name: archive.read(name) for name in archive.namelist()}

    def text(self, name: str) -> str:
        return self.files[name].decode("utf-8")

    def rows(self, name: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.text(name))))

    def json(self, name: str) -> Any:
        return json.loads(self.text(name))

    def contains(self, value: str) -> list[str]:
        """The members (and the raw zip, as ``<zip>``) in which ``value`` appears."""
        needle = value.encode()
        found = [name for name, data in self.files.items() if needle in data]
        return found + (["<zip>"] if needle in self.data else [])


def secret_settings(harness_or_env: Any, mapping: Path, **extra: Any) -> Settings:
    """Settings naming the close's connection, with a distinct value in every secret setting."""
    return load_settings(
        connection=harness_or_env.connection,
        database_url=f"postgresql+psycopg://ledgerbridge:{DATABASE_PASSWORD}@127.0.0.1:5432/ledger",
        redis_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        secret_key=Fernet.generate_key().decode(),
        zuora_base_url="http://127.0.0.1:9/rest",
        zuora_client_id="zuora-client-id-visible",
        erp="acumatica",
        acumatica_url=f"https://finance:{URL_PASSWORD}@erp.example.com/AcumaticaERP",
        acumatica_username="ledgerbridge-svc",
        acumatica_tenant="Company",
        acumatica_branch="HQ",
        notify_webhook_url=f"https://hooks.slack.com/services/T000/B000/{WEBHOOK_TOKEN}",
        mapping_file=mapping,
        **SECRETS,
        **extra,
    )


def all_secrets(settings: Settings) -> list[str]:
    assert settings.secret_key is not None
    return [
        *SECRETS.values(),
        settings.secret_key.get_secret_value(),
        DATABASE_PASSWORD,
        REDIS_PASSWORD,
        WEBHOOK_TOKEN,
        URL_PASSWORD,
    ]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def harness(request, tmp_path, fake_redis):
    """A close harness whose first mapping lacks an accounting code the run needs; on PostgreSQL
    when asked (the ledger is swapped before anything is written to it)."""
    mapping = write_mapping(tmp_path / "mapping.toml", drop_accounts=[UNMAPPED])
    made = Harness(tmp_path, fake_redis, erp="acumatica", mapping=mapping)
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        upgrade(url)
        made.ledger.dispose()
        made.ledger = Ledger.from_url(url)
    yield made
    made.close_all()


def close_after_fixing_the_mapping(harness: Harness) -> Any:
    """A close that parks the entries with the unmapped code, then - the mapping fixed - is run
    again and finishes: two attempts, both in the timeline."""
    stopped = harness.close(PERIOD)
    assert stopped.status == "needs_attention", stopped.error
    write_mapping(harness.mapping_path)  # Finance adds the code
    done = harness.drive(stopped.id or 0)
    assert done.status == "done", done.error
    return done


def test_the_pack_of_a_close_that_stopped_and_was_resumed(harness):
    run = close_after_fixing_the_mapping(harness)
    settings = secret_settings(harness, harness.mapping_path)

    pack = Pack(build_evidence_pack(harness.ledger, settings, harness.connection, PERIOD, generated_by="ana"))

    assert set(pack.files) == EXPECTED_FILES

    readme = pack.text("README.txt")
    assert f"period:        {PERIOD}" in readme
    assert f"connection:    {harness.connection}" in readme
    assert "generated by:  ana" in readme
    assert "ledgerbridge:  0.1.0" in readme
    assert f"run {run.id} (close): done at step finished" in readme
    mapping_bytes = harness.mapping_path.read_bytes()
    assert pack.files["mapping.toml"] == mapping_bytes
    assert f"sha256 {hashlib.sha256(mapping_bytes).hexdigest()}" in readme
    for name in EXPECTED_FILES - {"README.txt"}:
        assert f"  {name}\n" in readme, name
        assert f"sha256 {hashlib.sha256(pack.files[name]).hexdigest()}" in readme, name

    # The timeline: both attempts' notes, in order, each with its run.
    notes = [r["message"] for r in pack.rows("timeline.csv") if r["kind"] == AuditKind.NOTE.value]
    assert notes[0] == "attempt 1: started at lookup"
    assert notes[1].startswith("attempt 1: stopped at check: ")
    assert notes[2] == "attempt 2 started: resumed at check after attempt 1 needed attention"
    assert notes[-1] == "attempt 2: close finished (done)"
    assert {r["close_run"] for r in pack.rows("timeline.csv")} == {str(run.id)}
    (document,) = pack.json("timeline.json")
    assert (document["close_run"], document["status"], document["period"]) == (run.id, "done", PERIOD)
    assert [e["message"] for e in document["events"] if e["kind"] == "note"] == notes

    # The reconciliation: the reconcile step's lines, each agreeing to the cent.
    lines = step_state(run, ReconcileState).lines
    rows = pack.rows("reconciliation.csv")
    assert len(rows) == len(lines) > 0
    for row, line in zip(rows, lines, strict=True):
        assert (row["account"], row["currency"]) == (line.account, line.currency)
        for name in (
            "zuora_debit",
            "zuora_credit",
            "ledger_debit",
            "ledger_credit",
            "erp_debit",
            "erp_credit",
        ):
            assert Decimal(row[name]) == getattr(line, name), name
        assert Decimal(row["zuora_debit"]) == Decimal(row["erp_debit"])
        assert row["difference"] == "0.00"

    # The exceptions: the stop of attempt 1, resolved by attempt 2; each parked entry, returned to
    # pending by the check that passed once the mapping had the code.
    exceptions = pack.rows("exceptions.csv")
    (stop,) = [e for e in exceptions if e["subject"] == f"close:{run.id}"]
    assert stop["where"] == "step check"
    assert "were parked" in stop["reason"] and UNMAPPED in stop["reason"]
    assert stop["resolution"] == "attempt 2 started: resumed at check after attempt 1 needed attention"
    assert stop["resolved_at"] >= stop["raised_at"]
    parked = [e for e in exceptions if e["subject"].startswith("journal_entry:")]
    parked_numbers = {
        r.zuora_number
        for r in harness.ledger.records_for_close_run(run.id)
        if r.zuora_number in stop["reason"]
    }
    assert {e["number"] for e in parked} == parked_numbers and parked_numbers
    for entry in parked:
        assert entry["where"] == "parked"
        assert entry["reason"] == f"unmapped account '{UNMAPPED}': add it to [accounts] in the mapping file"
        assert entry["resolution"] == f"parked -> pending: replay: passed the check of close run {run.id}"
        assert entry["state_now"] == "marked"
    assert pack.rows("approvals.csv") == []

    # The configuration: what shapes the close, and the names (only) of the secrets that are set.
    config = pack.json("configuration.json")
    assert config["settings"]["mapping_file"] == str(harness.mapping_path)
    assert config["settings"]["database_url"] == "postgresql+psycopg://ledgerbridge@127.0.0.1:5432/ledger"
    assert config["settings"]["redis_url"] == "redis://127.0.0.1:6379/0"
    assert config["settings"]["notify_webhook"] == "https://hooks.slack.com"
    assert config["connection"]["name"] == harness.connection
    assert config["connection"]["acumatica"]["url"] == "https://erp.example.com/AcumaticaERP"
    assert config["connection"]["zuora_client_id"] == "zuora-client-id-visible"
    assert "LEDGERBRIDGE_ZUORA_CLIENT_SECRET" in config["secrets_set"]
    for secret in all_secrets(settings):
        assert pack.contains(secret) == [], f"a secret is in {pack.contains(secret)}"


def test_the_pack_names_who_started_rejected_and_approved_a_close(harness):
    harness.approval = "close"
    run_id = harness.open(PERIOD)
    write_mapping(harness.mapping_path)  # every code mapped: the close stops only for approval
    record_maker(harness.ledger, harness.ledger.get_close_run(run_id), "maker")
    assert harness.drive(run_id).status == "awaiting_approval"
    decide(harness.ledger, run_id, user="checker", approve=False, comment="revenue looks short")
    assert harness.drive(run_id).status == "awaiting_approval"  # attempt 2, asked again
    decide(harness.ledger, run_id, user="second", approve=True, comment="matches the sub-ledger")
    run = harness.drive(run_id)
    assert run.status == "done", run.error
    settings = load_settings(connection=harness.connection, mapping_file=harness.mapping_path)

    pack = Pack(build_evidence_pack(harness.ledger, settings, harness.connection, PERIOD, generated_by="ana"))

    approvals = pack.rows("approvals.csv")
    assert [(a["event"], a["by"], a["attempt"], a["comment"]) for a in approvals] == [
        ("started", "maker", "1", ""),
        ("rejected", "checker", "1", "revenue looks short"),
        ("approval requested", "", "2", approvals[2]["comment"]),
        ("approved", "second", "2", "matches the sub-ledger"),
    ]
    fingerprint = step_state(run, ApprovalState).fingerprint
    assert (
        approvals[2]["comment"]
        == f"{len(step_state(run, ApprovalState).entries)} journal entries, fingerprint {fingerprint}"
    )
    assert [a["at"] for a in approvals] == sorted(a["at"] for a in approvals)
    # The rejection needed a person and the next attempt answered it; waiting for approval did not.
    (rejection,) = pack.rows("exceptions.csv")
    assert (rejection["where"], rejection["raised_by"]) == ("approval", "checker")
    assert rejection["reason"] == "rejected by checker: revenue looks short"
    assert rejection["resolution"] == "attempt 2 started: resumed at check after attempt 1 needed attention"
    decided = [(r["actor"], r["message"]) for r in pack.rows("timeline.csv") if r["actor"]]
    assert decided == [
        ("checker", "attempt 1: rejected by checker: revenue looks short"),
        ("second", "attempt 2: approved by second: matches the sub-ledger"),
    ]


def test_no_secret_of_a_stored_connection_appears_in_its_pack(harness, tmp_path):
    settings = secret_settings(harness, harness.mapping_path)
    assert settings.secret_key is not None
    box = SecretBox.from_setting(settings.secret_key.get_secret_value())
    stored = Connection(
        name="emea",
        zuora=ZuoraTarget(
            base_url="https://rest.eu.zuora.com",
            client_id="emea-client",
            client_secret="emea-zuora-secret-91d",
        ),
        erp_kind="acumatica",
        acumatica=AcumaticaTarget(
            url="https://emea.example.com/AcumaticaERP",
            endpoint="Default/24.200.001",
            username="svc-emea",
            password="emea-acumatica-password-0a4",
            client_id="emea-oauth-client",
            client_secret="emea-acumatica-client-secret-7e2",
            refresh_token="emea-refresh-token-55c",
            tenant="EMEA",
        ),
        callout_secrets=("emea-callout-secret-current-12", "emea-callout-secret-previous-34"),
    )
    harness.ledger.add_connection(stored, box)
    harness.ledger.open_close_run("emea", PERIOD)

    pack = Pack(build_evidence_pack(harness.ledger, settings, "emea", PERIOD, generated_by="auditor"))

    config = pack.json("configuration.json")
    assert config["connection"]["source"] == "ledger"
    assert config["connection"]["acumatica"]["tenant"] == "EMEA"
    assert config["connection"]["zuora_base_url"] == "https://rest.eu.zuora.com"
    assert config["connection"]["approval"] == "none"
    assert config["settings"]["approval"] == "none"
    leaked = {
        value: pack.contains(value)
        for value in (
            "emea-zuora-secret-91d",
            "emea-acumatica-password-0a4",
            "emea-acumatica-client-secret-7e2",
            "emea-refresh-token-55c",
            "emea-callout-secret-current-12",
            "emea-callout-secret-previous-34",
            *all_secrets(settings),
        )
    }
    assert {value: where for value, where in leaked.items() if where} == {}
    # A run that has not reached the reconcile step has no reconciliation yet, only its header.
    assert pack.text("reconciliation.csv").splitlines() == [
        "close_run,account,currency,zuora_debit,zuora_credit,ledger_debit,ledger_credit,erp_debit,erp_credit,difference"
    ]


def test_a_period_without_a_close_run_is_refused_with_what_to_fix(harness):
    harness.ledger.open_close_run(harness.connection, "November 2024")
    settings = load_settings(connection=harness.connection, mapping_file=harness.mapping_path)

    with pytest.raises(NoCloseRun) as refused:
        build_evidence_pack(harness.ledger, settings, harness.connection, PERIOD, generated_by="ana")
    with pytest.raises(ValueError, match="no close run on connection 'elsewhere'"):
        build_evidence_pack(harness.ledger, settings, "elsewhere", "November 2024", generated_by="ana")

    message = str(refused.value)
    assert message.startswith(f"'{PERIOD}' has no close run on connection '{harness.connection}'")
    assert "check the period's name and the connection (--connection)" in message
    assert f"periods closed on '{harness.connection}': November 2024" in message


def test_without_a_mapping_file_the_pack_says_so(harness):
    harness.ledger.open_close_run(harness.connection, PERIOD)
    settings = load_settings(
        connection=harness.connection, mapping_file=harness.mapping_path.parent / "gone.toml"
    )

    pack = Pack(build_evidence_pack(harness.ledger, settings, harness.connection, PERIOD, generated_by="ana"))

    assert set(pack.files) == EXPECTED_FILES - {"mapping.toml"}
    gone = harness.mapping_path.parent / "gone.toml"
    assert f"mapping file:  the mapping file {gone} could not be read" in pack.text("README.txt")


def test_a_reconciliation_difference_is_the_largest_gap_between_the_three(harness):
    run = close_after_fixing_the_mapping(harness)
    line = step_state(run, ReconcileState).lines[0]

    assert difference(line) == Decimal("0.00")
    assert difference(line.model_copy(update={"erp_credit": line.erp_credit + Decimal("12.5")})) == Decimal(
        "12.50"
    )
    assert difference(
        line.model_copy(update={"ledger_debit": line.ledger_debit - Decimal("0.01")})
    ) == Decimal("0.01")


# -- the command, over a close a real worker ran ---------------------------------------------------


@pytest.fixture
def close_env(tmp_path, redis_url):
    env = CloseEnv(tmp_path, redis_url, f"sqlite:///{tmp_path / 'ledger.db'}", erp="acumatica")
    try:
        yield env
    finally:
        env.close()


@pytest.mark.redis
@pytest.mark.slow
def test_the_command_writes_the_pack_of_a_close_a_worker_ran(close_env, tmp_path):
    close_env.worker.start()
    closed = close_env.cli("close", PERIOD, "--wait", "--timeout", "60")
    assert closed.returncode == 0, closed.stdout + closed.stderr
    run = close_env.ledger.latest_close_runs(close_env.connection)[0]
    out = tmp_path / "pack" / "evidence.zip"

    result = close_env.cli("close", "evidence", PERIOD, "--out", str(out), "--as", "controller")

    assert result.returncode == 0, result.stdout + result.stderr
    assert str(out) in result.stdout
    pack = Pack(out.read_bytes())
    assert set(pack.files) == EXPECTED_FILES
    assert "generated by:  controller" in pack.text("README.txt")
    # The worker's API exchanges are listed by method, URL and status, nothing more.
    exchanges = [r for r in pack.rows("timeline.csv") if r["kind"] == "http"]
    audited = [e for e in close_env.audit(f"close:{run.id}") if e.kind == "http"]
    assert len(exchanges) == len(audited) > 0
    assert {(r["method"], r["status"]) for r in exchanges} >= {("POST", "200"), ("GET", "200")}
    assert all(r["url"].startswith(("http://127.0.0.1:", "http://localhost:")) for r in exchanges)
    for event in audited:
        for body in (event.request_body, event.response_body):
            if body and len(body) > 40:
                assert pack.contains(body) == []
    assert pack.contains(close_env.env["LEDGERBRIDGE_ZUORA_CLIENT_SECRET"]) == []
    # The Acumatica sandbox's password is the word "sandbox", which the mapping file's comments
    # use too: it must be in none of the files ledgerbridge writes.
    password = close_env.env["LEDGERBRIDGE_ACUMATICA_PASSWORD"]
    assert set(pack.contains(password)) <= {"mapping.toml", "<zip>"}
    assert len(pack.rows("reconciliation.csv")) == len(step_state(run, ReconcileState).lines) > 0
    assert len(journal_numbers(run)) > 0

    missing = close_env.cli("close-evidence", "January 2025", "--out", str(tmp_path / "none.zip"))
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "'January 2025' has no close run on connection" in missing.stdout + missing.stderr
    assert not (tmp_path / "none.zip").exists()
