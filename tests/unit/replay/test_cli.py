"""``ledgerbridge replay`` as a command: arguments, output and exit codes (0 done, 1 a record needs
a person, 2 bad usage). The command's context is the in-process item-level harness."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from cli.main import app
from shared import ports
from shared.ledger import states
from tests.unit.item_level.support import ItemHarness
from tests.unit.replay.support import invoice_in_state, post_all, pulled_invoices


@pytest.fixture
def harness(tmp_path, fake_redis, monkeypatch):
    h = ItemHarness(tmp_path, fake_redis)
    monkeypatch.setattr("worker.wiring.item_context", lambda connection=None: h.ctx)
    return h


def run(h: ItemHarness, *args: str):
    env: dict[str, str | None] = {
        k: None
        for k in os.environ
        if k.startswith("LEDGERBRIDGE_") and not k.startswith("LEDGERBRIDGE_TEST_")
    }
    env.update(
        LEDGERBRIDGE_DATABASE_URL=str(h.ledger.engine.url),
        LEDGERBRIDGE_CONNECTION=h.connection,
        COLUMNS="220",
    )
    ports.reset_for_tests()
    try:
        return CliRunner().invoke(app, ["replay", *args], env=env)
    finally:
        ports.reset_for_tests()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give a RECORD or --failed (not both)"),
        (("INV00000001", "--failed"), "give a RECORD or --failed (not both)"),
        (("INV00000001", "--stream", "invoices"), "--stream goes with --failed"),
        (("--failed", "--force"), "--force re-posts posted records one at a time: name the RECORD"),
        (("--failed", "--stream", "orders"), "unknown stream 'orders'"),
    ],
)
def test_replay_usage_errors_exit_2(harness, args, message):
    result = run(harness, *args)

    assert result.exit_code == 2, result.output
    assert message in result.output


def test_replay_of_an_unknown_record_exits_1(harness):
    result = run(harness, "INV99999999")

    assert result.exit_code == 1
    assert "nothing in the ledger for 'INV99999999'" in result.output


def test_dry_run_prints_the_request_the_diff_and_what_would_happen(harness):
    rec = invoice_in_state(harness, "posted")

    result = run(harness, rec.zuora_number or "", "--dry-run")

    assert result.exit_code == 0, result.output
    assert f"invoice {rec.zuora_number}" in result.output
    assert "ERP request (erp): create_document" in result.output
    assert "no difference from what was sent before" in result.output
    assert f"a replay would: nothing: already posted as {rec.erp_ref}" in result.output
    assert harness.record("invoice", rec.zuora_id).version == rec.version


def test_dry_run_json_has_the_payload_request_and_diff(harness):
    rec = invoice_in_state(harness, "parked")

    result = run(harness, rec.subject, "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    (item,) = data["records"]
    assert data["dry_run"] is True
    assert item["record"]["state"] == "parked"
    assert item["request"]["operation"] == "create_document"
    assert item["payload"]["document"]["natural_key"] == rec.zuora_number
    assert (item["diff"], item["previous_payload"], item["changed"]) == ("", None, False)


def test_dry_run_of_a_record_that_would_be_parked_exits_1(tmp_path, fake_redis, monkeypatch):
    h = ItemHarness(tmp_path, fake_redis, mapping_drop=('"Subscription Revenue"',))
    monkeypatch.setattr("worker.wiring.item_context", lambda connection=None: h.ctx)
    pulled_invoices(h)
    post_all(h)
    parked = next(
        h.record("invoice", z)
        for z in h.posted_ids("invoices", "Posted")
        if h.record("invoice", z).state == "parked"
    )

    result = run(h, parked.zuora_number or "", "--dry-run")

    assert result.exit_code == 1
    assert "would be parked:" in result.output
    assert "unmapped account 'Subscription Revenue'" in result.output


def test_replay_of_a_posted_record_says_nothing_was_done_and_exits_0(harness):
    rec = invoice_in_state(harness, "marked")

    result = run(harness, rec.zuora_number or "")

    assert result.exit_code == 0, result.output
    assert (
        f"already posted as {rec.erp_ref}; nothing done (use --force to check the ERP and post again only if it "
        "is missing)"
    ) in " ".join(result.output.split())


def test_replay_of_a_failed_record_posts_it_and_exits_0(harness):
    rec = invoice_in_state(harness, "failed")

    result = run(harness, rec.zuora_number or "", "--reason", "ERP period reopened")

    after = harness.record("invoice", rec.zuora_id)
    assert result.exit_code == 0, result.output
    assert f"invoice {rec.zuora_number}: failed -> posted: posted as {after.erp_ref}" in result.output
    transitions = [e.message for e in harness.ledger.timeline(rec.subject) if e.kind == "transition"]
    assert any(
        m.startswith("failed -> pending: replay: ledgerbridge replay by ")
        and m.endswith(": ERP period reopened")
        for m in transitions
    )


def test_replay_failed_prints_a_table_of_every_record(harness):
    rows = pulled_invoices(harness)
    with harness.ledger.session() as session:
        states.fail(session, rows[0].id or 0, "boom")
        states.park(session, rows[1].id or 0, "unmapped")

    result = run(harness, "--failed", "--stream", "invoices")

    assert result.exit_code == 0, result.output
    assert "2 posted" in result.output
    assert rows[0].zuora_number in result.output and rows[1].zuora_number in result.output
    assert harness.ledger.counts_by_state(harness.connection)[("invoice", "posted")] == 2


def test_replay_failed_with_nothing_to_do_exits_0(harness):
    pulled_invoices(harness)

    result = run(harness, "--failed")

    assert result.exit_code == 0
    assert f"no failed or parked records on connection {harness.connection}" in result.output


def test_replay_failed_dry_run_json_lists_each_record(harness):
    rows = pulled_invoices(harness)
    with harness.ledger.session() as session:
        states.park(session, rows[0].id or 0, "unmapped")

    result = run(harness, "--failed", "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [r["record"]["id"] for r in data["records"]] == [rows[0].id]
    assert harness.record("invoice", rows[0].zuora_id).state == "parked"
