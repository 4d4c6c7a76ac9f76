"""``replay --dry-run``: the exact ERP request of a record, re-fetched and mapped now, and its diff
against what was sent before - for a record in every state, changing nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from shared import replay
from shared.erp.acumatica_entities import customer_record, document_record
from shared.erp.acumatica_wire import wrap
from shared.erp.base import ArDocument, Customer
from shared.item_level import post_records
from shared.item_level.context import Options
from shared.ledger.models import AuditEvent
from tests.unit.item_level.support import ItemHarness
from tests.unit.replay.support import (
    STATES,
    invoice_in_state,
    paid_invoice_payment,
    post_all,
    pulled_invoices,
    remap,
    with_acumatica,
)


def _audit_count(h: ItemHarness) -> int:
    with h.ledger.session() as session:
        return len(session.exec(AuditEvent.__table__.select()).all())  # type: ignore[attr-defined]


def _zuora_writes(h: ItemHarness) -> int:
    return sum(
        n
        for endpoint, n in h.zuora_requests().items()
        if not endpoint.startswith("GET") and "oauth" not in endpoint
    )


@pytest.mark.parametrize("state", STATES)
def test_preview_changes_nothing_in_any_state(tmp_path, fake_redis, state):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, state)
    erp_calls = list(h.erp.calls)
    audit_rows = _audit_count(h)
    writes = _zuora_writes(h)

    result = replay.preview(h.ctx, rec)

    after = h.record("invoice", rec.zuora_id)
    assert (after.state, after.version, after.updated_at, after.payload) == (
        rec.state,
        rec.version,
        rec.updated_at,
        rec.payload,
    )
    assert h.erp.calls == erp_calls
    assert _audit_count(h) == audit_rows
    assert _zuora_writes(h) == writes
    assert result.fetched is True
    assert result.problem is None
    assert result.request is not None
    assert result.request.body["natural_key"] == rec.zuora_number  # the neutral document (fake ERP)


@pytest.mark.parametrize(
    ("state", "would"),
    [
        ("pending", "post the payload above now (one ERP call)"),
        ("posting", "nothing yet: another worker is posting it"),
        ("posted", "nothing: already posted as "),
        ("marked", "nothing: already posted as "),
        ("failed", "return it to pending and post the payload above (one ERP call)"),
        ("parked", "return it to pending and post the payload above (one ERP call)"),
    ],
)
def test_preview_says_what_a_replay_would_do_in_each_state(tmp_path, fake_redis, state, would):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, state)

    result = replay.preview(h.ctx, rec)

    assert result.would.startswith(would)


@pytest.mark.parametrize("state", ["posting", "posted", "marked"])
def test_preview_of_what_was_sent_unchanged_shows_no_difference(tmp_path, fake_redis, state):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, state)

    result = replay.preview(h.ctx, rec)

    assert rec.posted_payload is not None
    assert result.payload == replay.normalise(rec.posted_payload)
    assert result.diff == ""


@pytest.mark.parametrize("state", ["pending", "failed", "parked"])
def test_preview_of_a_record_never_sent_has_nothing_to_diff(tmp_path, fake_redis, state):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, state)

    result = replay.preview(h.ctx, rec)

    assert rec.posted_payload is None
    assert (result.previous, result.diff) == (None, "")


def test_preview_shows_the_exact_acumatica_body_the_adapter_sent(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    acumatica = with_acumatica(h, fake_redis)
    rows = pulled_invoices(h)
    post_all(h)
    rec = h.record("invoice", rows[0].zuora_id)
    sent = [e for e in acumatica.sent("Invoice") if (rec.zuora_number or "-") in (e.request_body or "")]

    result = replay.preview(h.ctx, rec)

    assert result.request is not None
    assert (result.request.target, result.request.operation) == ("acumatica", "PUT Invoice")
    assert len(sent) == 1
    on_the_wire = json.loads(sent[0].request_body or "", parse_float=Decimal)
    assert json.loads(result.request.text(), parse_float=Decimal) == on_the_wire
    sent_before = replay.document_from_payload(rec.posted_payload or {})
    assert isinstance(sent_before, ArDocument)
    assert result.request.body == wrap(document_record(sent_before))
    assert result.diff == ""


def test_preview_of_an_account_shows_the_customer_upsert(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    with_acumatica(h, fake_redis)
    rows = pulled_invoices(h)
    post_all(h)
    account = h.record("account", rows[0].account_id or "")

    result = replay.preview(h.ctx, account)

    assert account.state == "marked"
    assert result.request is not None
    assert result.request.operation == "PUT Customer"
    customer = replay.document_from_payload(account.posted_payload or {})
    assert isinstance(customer, Customer)
    assert result.request.body == wrap(customer_record(customer))
    assert result.diff == ""


def test_preview_after_a_mapping_change_shows_the_accounts_that_change(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    with_acumatica(h, fake_redis)
    pulled_invoices(h)
    post_all(h)
    rec = next(
        h.record("invoice", zid)
        for zid in h.posted_ids("invoices", "Posted")
        if '"40000"' in json.dumps(h.record("invoice", zid).posted_payload, default=str)
    )
    remap(h, tmp_path, replace={'account = "40000"': 'account = "41000"'})

    result = replay.preview(h.ctx, rec)

    removed = [
        line for line in result.diff.splitlines() if line.startswith("-") and not line.startswith("---")
    ]
    added = [line for line in result.diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert result.diff.startswith("--- sent ")
    assert removed and all('"value": "40000"' in line for line in removed)
    assert len(added) == len(removed)
    assert all('"value": "41000"' in line for line in added)


def test_preview_of_a_parked_record_names_what_to_fix_and_then_the_fix(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, mapping_drop=('"Subscription Revenue"',))
    pulled_invoices(h)
    post_all(h)
    parked = next(
        h.record("invoice", zid)
        for zid in h.posted_ids("invoices", "Posted")
        if h.record("invoice", zid).state == "parked"
    )

    still_broken = replay.preview(h.ctx, parked)
    remap(h, tmp_path)
    fixed = replay.preview(h.ctx, parked)

    assert still_broken.problem is not None
    assert "unmapped account 'Subscription Revenue'" in still_broken.problem
    assert still_broken.request is None
    assert still_broken.would.startswith("park it (again): ")
    assert fixed.problem is None
    assert fixed.request is not None
    assert fixed.would == "return it to pending and post the payload above (one ERP call)"


def test_preview_with_force_asks_the_erp_by_natural_key_and_nothing_else(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "marked")
    calls = list(h.erp.calls)

    result = replay.preview(h.ctx, rec, force=True)

    assert h.erp.calls[len(calls) :] == [("find_document", rec.zuora_number)]
    assert result.erp_found == rec.erp_ref
    assert result.would.startswith(f"--force: the ERP has it as {rec.erp_ref}")
    assert h.record("invoice", rec.zuora_id).state == "marked"


def test_preview_of_a_payment_shows_its_application_as_the_adapter_sent_it(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, options=Options(erp_concurrency=1, release=True))
    acumatica = with_acumatica(h, fake_redis)
    payment = paid_invoice_payment(h)
    post_records(h.ctx, h.dispatch.post_ids)
    payment = h.record("payment", payment.zuora_id)
    sent = [e for e in acumatica.sent("Payment") if (payment.zuora_number or "-") in (e.request_body or "")]

    result = replay.preview(h.ctx, payment)

    assert payment.state == "posted"
    assert result.request is not None
    assert result.request.operation == "PUT Payment"
    assert result.request.body["DocumentsToApply"]
    assert len(sent) == 1
    assert json.loads(result.request.text(), parse_float=Decimal) == json.loads(
        sent[0].request_body or "", parse_float=Decimal
    )
    assert result.diff == ""


def test_preview_of_a_record_zuora_no_longer_has_uses_the_ledger_copy(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "parked")
    gone = h.record("invoice", rec.zuora_id)

    result = replay.preview(h.ctx, gone, fetched=None)

    assert result.fetched is False
    assert result.notes[0] == "not found in Zuora: shown from the ledger's copy of the record"
    assert result.request is not None


def test_preview_many_fetches_each_stream_in_one_query(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    records = pulled_invoices(h)[:5]
    before = h.zuora_requests().get("GET /object-query/invoices", 0)

    previews = replay.preview_many(h.ctx, records)

    assert [p.record.id for p in previews] == [r.id for r in records]
    assert all(p.fetched and p.request is not None for p in previews)
    assert h.zuora_requests().get("GET /object-query/invoices", 0) - before == 1


def test_preview_for_the_file_export_shows_the_rows_it_wrote(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, erp="file")
    rec = invoice_in_state(h, "marked")
    written = [
        json.loads(line)
        for line in (tmp_path / "gl-export" / "2024-12" / "ar_documents.jsonl")
        .read_text("utf-8")
        .splitlines()
        if json.loads(line)["natural_key"] == rec.zuora_number
    ]

    result = replay.preview(h.ctx, rec)

    assert result.request is not None
    assert result.request.operation == "export 2024-12/ar_documents.csv and ar_documents.jsonl rows"
    assert result.request.body == written
    assert result.diff == ""


def test_preview_shows_an_application_the_ledger_has_no_erp_reference_for_as_a_question_mark(
    tmp_path, fake_redis, monkeypatch
):
    h = ItemHarness(tmp_path, fake_redis, options=Options(erp_concurrency=1, release=True))
    with_acumatica(h, fake_redis)
    payment = paid_invoice_payment(h)
    post_records(h.ctx, h.dispatch.post_ids)
    payment = h.record("payment", payment.zuora_id)
    monkeypatch.setattr(h.ledger, "find_records", lambda connection, query: [])  # no references known

    result = replay.preview(h.ctx, payment)

    assert result.request is not None
    applications = result.request.body["DocumentsToApply"]
    assert applications and all(a["ReferenceNbr"] == {"value": "?"} for a in applications)
    unknown = [
        n
        for n in result.notes
        if n.endswith(
            "has no ERP reference in the ledger (shown as '?'; the adapter looks it up in the ERP when it posts)"
        )
    ]
    assert len(unknown) == len(applications)
