"""`ledgerbridge explain`: a record's summary and its timeline from the audit trail."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from shared.exchange import Exchange
from shared.ledger import states
from shared.ledger.repo import Ledger

CONN = "acme"
LONG_BODY = json.dumps({"ReferenceNbr": {"value": "AR000123"}, "Description": {"value": "x" * 900}})


@dataclass
class Seeded:
    marked_id: str
    failed_id: str
    parked_id: str
    close_run_id: int


def _exchange(subject: str, **fields) -> Exchange:
    values = {
        "api": "acumatica",
        "connection": CONN,
        "method": "PUT",
        "url": "https://erp.example.com/entity/Default/24.200.001/Invoice",
        "status": 200,
        "duration_ms": 123.4,
        "request_headers": {"Authorization": "***"},
        "request_body": '{"Type":{"value":"Invoice"},"CustomerOrder":{"value":"INV00000001"}}',
        "response_headers": {"Content-Type": "application/json"},
        "response_body": LONG_BODY,
        "request_id": None,
        "attempt": 1,
        "subject": subject,
    }
    values.update(fields)
    return Exchange(**values)


def _pulled(ledger: Ledger, object_type: str, zuora_id: str, number: str, connection: str = CONN) -> int:
    with ledger.session() as session:
        row, _ = states.upsert_pulled(
            session,
            connection=connection,
            object_type=object_type,
            zuora_id=zuora_id,
            zuora_number=number,
            zuora_updated=None,
            payload={"Id": zuora_id, "InvoiceNumber": number, "Amount": "100.00"},
            account_id="8ad0acct",
            source="pull",
            period_name="December 2024",
        )
        return row.id or 0


@pytest.fixture
def seeded(cli) -> Seeded:
    ledger = cli.ledger()
    # A marked invoice: pulled, posting, one PUT, posted, marked.
    inv = _pulled(ledger, "invoice", "8ad0inv1", "INV00000001")
    with ledger.session() as s:
        states.begin_posting(s, inv, erp_payload={"Type": "Invoice", "CustomerOrder": "INV00000001"})
    ledger.record_exchange(_exchange("invoice:8ad0inv1"))
    with ledger.session() as s:
        states.complete_posting(s, inv, erp_ref="Invoice/AR000123")
    ledger.record_exchange(
        _exchange(
            "invoice:8ad0inv1",
            api="zuora",
            method="PUT",
            url="https://rest.sandbox.na.zuora.com/v1/invoices/8ad0inv1",
            status=200,
            duration_ms=45.0,
            request_body='{"transferredToAccounting":"Yes"}',
            response_body='{"success":true}',
            request_id="zr-42",
        )
    )
    with ledger.session() as s:
        states.mark_transferred(s, inv)
    # A failed payment: one 422 and a failure.
    pay = _pulled(ledger, "payment", "8ad0pay1", "P-00000007")
    with ledger.session() as s:
        states.begin_posting(s, pay)
    ledger.record_exchange(
        _exchange(
            "payment:8ad0pay1",
            url="https://erp.example.com/entity/Default/24.200.001/Payment",
            status=422,
            response_body='{"CashAccount":{"error":"Cash Account cannot be empty."}}',
        )
    )
    with ledger.session() as s:
        states.fail(s, pay, "Acumatica rejected the payment: CashAccount: Cash Account cannot be empty.")
    # A parked credit memo.
    memo = _pulled(ledger, "credit_memo", "8ad0cm1", "CM00000003")
    with ledger.session() as s:
        states.park(s, memo, "unmapped accounting code 'Deferred Revenue' (add it to [accounts])")
    # A close run that needs attention, with one journal entry.
    run, _ = ledger.open_close_run(CONN, "December 2024")
    ledger.update_close_run(
        run.id or 0,
        step="reconcile",
        status="needs_attention",
        error="RECONCILIATION FAILED for 'December 2024'",
    )
    ledger.note(f"close:{run.id}", "stopped at reconcile: RECONCILIATION FAILED", CONN)
    with ledger.session() as s:
        states.upsert_pulled(
            s,
            connection=CONN,
            object_type="journal_entry",
            zuora_id="JE-00000012",
            zuora_number="JE-00000012",
            zuora_updated=None,
            payload={},
            account_id=None,
            source="close",
            close_run_id=run.id,
        )
    # The same invoice number on another connection must not show up.
    _pulled(ledger, "invoice", "8ad0other", "INV00000001", connection="other")
    ledger.dispose()
    return Seeded("8ad0inv1", "8ad0pay1", "8ad0cm1", run.id or 0)


def explain_json(cli, *args: str) -> dict:
    result = cli("explain", *args, "--json", LEDGERBRIDGE_CONNECTION=CONN)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_explain_marked_invoice_by_number_lists_its_timeline_in_order(cli, seeded):
    found = explain_json(cli, "INV00000001")

    [record] = found["records"]
    assert {
        k: record[k] for k in ("subject", "object_type", "zuora_number", "state", "attempts", "erp_ref")
    } == {
        "subject": "invoice:8ad0inv1",
        "object_type": "invoice",
        "zuora_number": "INV00000001",
        "state": "marked",
        "attempts": 0,
        "erp_ref": "Invoice/AR000123",
    }
    assert record["posted_at"] is not None and record["marked_at"] is not None
    assert "payload" not in record
    assert [(e["kind"], e["message"] or f"{e['method']} {e['status']}") for e in record["timeline"]] == [
        ("transition", "new -> pending (pull)"),
        ("transition", "pending -> posting"),
        ("http", "PUT 200"),
        ("transition", "posting -> posted: erp_ref Invoice/AR000123"),
        ("http", "PUT 200"),
        ("transition", "posted -> marked"),
    ]
    assert record["timeline"][2]["response_body"] == LONG_BODY  # JSON is never cut
    assert found["close_runs"] == [] and found["subjects"] == []


@pytest.mark.parametrize("query", ["8ad0inv1", "Invoice/AR000123", "invoice:8ad0inv1"])
def test_explain_finds_a_record_by_zuora_id_erp_ref_or_subject(cli, seeded, query):
    found = explain_json(cli, query)

    assert [r["subject"] for r in found["records"]] == ["invoice:8ad0inv1"]


def test_explain_rich_output_shows_summary_and_attempts(cli, seeded):
    result = cli("explain", "INV00000001", LEDGERBRIDGE_CONNECTION=CONN)

    assert result.exit_code == 0, result.output
    out = result.output
    assert "invoice INV00000001" in out
    for field, value in (("state", "marked"), ("erp ref", "Invoice/AR000123"), ("period", "December 2024")):
        assert re.search(rf"^ {field} +{re.escape(value)} *$", out, re.MULTILINE), field
    assert (
        "acumatica PUT https://erp.example.com/entity/Default/24.200.001/Invoice -> 200 123 ms (attempt 1)"
        in out
    )
    assert (
        "zuora PUT https://rest.sandbox.na.zuora.com/v1/invoices/8ad0inv1 -> 200 45 ms (attempt 1, request id zr-42)"
        in out
    )
    assert "state posting -> posted: erp_ref Invoice/AR000123" in out
    assert 'request:  {"Type":{"value":"Invoice"},"CustomerOrder":{"value":"INV00000001"}}' in out
    assert "more chars; --full shows all]" in out
    assert LONG_BODY not in out


def test_explain_full_shows_whole_bodies_and_the_erp_payload(cli, seeded):
    result = cli("explain", "INV00000001", "--full", LEDGERBRIDGE_CONNECTION=CONN)

    assert result.exit_code == 0
    assert LONG_BODY in result.output.replace("\n", "")
    assert "--full shows all" not in result.output
    assert 'sent to the ERP: {"Type": "Invoice", "CustomerOrder": "INV00000001"}' in result.output


def test_explain_failed_payment_shows_the_error_and_the_rejected_attempt(cli, seeded):
    [record] = explain_json(cli, "P-00000007")["records"]

    assert (record["state"], record["attempts"]) == ("failed", 1)
    assert (
        record["last_error"] == "Acumatica rejected the payment: CashAccount: Cash Account cannot be empty."
    )
    assert [(e["kind"], e["status"], e["message"]) for e in record["timeline"]][-2:] == [
        ("http", 422, None),
        (
            "transition",
            None,
            "posting -> failed: attempt 1: Acumatica rejected the payment: CashAccount: Cash Account cannot be empty.",
        ),
    ]
    rich = cli("explain", "P-00000007", LEDGERBRIDGE_CONNECTION=CONN).output
    assert "-> 422" in rich
    assert "Cash Account cannot be empty." in rich


def test_explain_parked_credit_memo_shows_the_reason(cli, seeded):
    [record] = explain_json(cli, "CM00000003")["records"]

    assert record["state"] == "parked"
    assert record["last_error"] == "unmapped accounting code 'Deferred Revenue' (add it to [accounts])"
    assert record["timeline"][-1]["message"] == (
        "pending -> parked: unmapped accounting code 'Deferred Revenue' (add it to [accounts])"
    )


def test_explain_close_run_shows_its_entries_and_notes(cli, seeded):
    found = explain_json(cli, f"close:{seeded.close_run_id}")

    [run] = found["close_runs"]
    assert (run["status"], run["step"], run["error"]) == (
        "needs_attention",
        "reconcile",
        "RECONCILIATION FAILED for 'December 2024'",
    )
    assert run["attempt"] == 1
    assert [r["zuora_number"] for r in run["records"]] == ["JE-00000012"]
    assert [(e["kind"], e["message"]) for e in run["timeline"]] == [
        ("note", "stopped at reconcile: RECONCILIATION FAILED")
    ]
    rich = cli("explain", f"close:{seeded.close_run_id}", LEDGERBRIDGE_CONNECTION=CONN).output
    assert f"close run {seeded.close_run_id} (acme)" in rich
    assert "JE-00000012" in rich and "needs_attention" in rich
    assert any(line.split() == ["attempt", "1"] for line in rich.splitlines())


def test_explain_other_connection_sees_only_its_records(cli, seeded):
    found = explain_json(cli, "INV00000001", "--connection", "other")

    assert [r["subject"] for r in found["records"]] == ["invoice:8ad0other"]


def test_explain_unknown_number_exits_1(cli, seeded):
    result = cli("explain", "INV99999999", LEDGERBRIDGE_CONNECTION=CONN)

    assert result.exit_code == 1
    assert "nothing in the ledger for 'INV99999999' on connection acme" in result.output


def test_explain_unknown_close_run_exits_1(cli, seeded):
    result = cli("explain", "close:999", LEDGERBRIDGE_CONNECTION=CONN)

    assert result.exit_code == 1


def test_explain_raw_subject_shows_its_timeline(cli):
    ledger = cli.ledger()
    ledger.record_exchange(
        _exchange("connection:acme", api="zuora", method="POST", url="https://z/oauth/token", status=401)
    )
    ledger.dispose()

    found = explain_json(cli, "connection:acme")

    assert [(s["subject"], [e["status"] for e in s["timeline"]]) for s in found["subjects"]] == [
        ("connection:acme", [401])
    ]
