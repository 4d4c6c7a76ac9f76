"""Applications applied after their document: a payment posted while the invoice it pays was
parked (or not synced) gets its application once the invoice is in the ERP, exactly once."""

from __future__ import annotations

import pytest

from shared.errors import Transient
from shared.item_level import post_one, pull_stream, sweep
from shared.item_level.streams import INVOICES, PAYMENTS
from shared.ledger import applications as ledger_applications
from shared.ledger.links import links_of
from shared.ledger.states import park, replay
from tests.unit.item_level.support import ItemHarness, releasing_harness


@pytest.fixture
def harness(tmp_path, fake_redis):
    return releasing_harness(tmp_path, fake_redis)


def _parked_invoice_and_its_payment(h: ItemHarness):
    """A payment posted while the invoice it applies to was parked: created without it."""
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    application = h.rows("payment-applications")[0]
    invoice = h.record("invoice", application["InvoiceId"])
    payment = h.record("payment", application["PaymentId"])
    post_one(h.ctx, h.record("account", invoice.account_id).id)
    with h.ledger.session() as session:
        park(session, invoice.id, "the mapping has no account for its charge", now=h.clock.dt())
    assert post_one(h.ctx, payment.id).outcome == "posted"
    return invoice, payment, application


def _applications(h: ItemHarness, record_id: int):
    with h.ledger.reading() as session:
        return ledger_applications.applications_of(session, [record_id])


def _fix_and_post(h: ItemHarness, invoice) -> None:
    with h.ledger.session() as session:
        replay(session, invoice.id, reason="mapping fixed", now=h.clock.dt())
    h.advance(1)
    assert post_one(h.ctx, invoice.id).outcome == "posted"


def test_an_application_left_out_waits_and_is_applied_once_its_target_is_in_the_erp(harness):
    h = harness
    invoice, payment, _ = _parked_invoice_and_its_payment(h)
    (waiting,) = [a for a in _applications(h, payment.id) if a.target_id == invoice.zuora_id]
    assert (waiting.state, waiting.target_type) == ("waiting", "invoice")
    assert "parked in the ledger" in (waiting.reason or "")
    h.dispatch.posted.clear()
    assert sweep(h.ctx).applications == 0  # the invoice is not in the ERP yet

    _fix_and_post(h, invoice)
    h.dispatch.posted.clear()
    summary = sweep(h.ctx)

    assert summary.applications == 1
    assert payment.id in h.dispatch.post_ids
    post_one(h.ctx, payment.id)
    (done,) = [a for a in _applications(h, payment.id) if a.target_id == invoice.zuora_id]
    assert done.state == "applied"
    assert done.target_ref == h.record("invoice", invoice.zuora_id).erp_ref
    made = h.erp.later[h.record("payment", payment.zuora_id).erp_ref]
    assert str(made[invoice.zuora_number].amount) == done.amount
    calls = len(h.erp.calls)
    post_one(h.ctx, payment.id)  # nothing left to apply: no ERP call
    assert len(h.erp.calls) == calls
    h.dispatch.posted.clear()
    assert sweep(h.ctx).applications == 0
    trail = [e.message for e in h.ledger.timeline(payment.subject)]
    assert any("is kept to be applied in the ERP" in (m or "") for m in trail)
    assert any("applied in the ERP" in (m or "") for m in trail)


def test_an_application_whose_answer_was_lost_is_read_back_not_made_twice(harness):
    h = harness
    invoice, payment, _ = _parked_invoice_and_its_payment(h)
    _fix_and_post(h, invoice)
    h.erp.apply_script.append("commit-then-unknown")

    post_one(h.ctx, payment.id)

    (in_doubt,) = [a for a in _applications(h, payment.id) if a.target_id == invoice.zuora_id]
    assert in_doubt.state == "applying"
    h.dispatch.posted.clear()
    assert sweep(h.ctx).applications == 0  # the claim is not over
    h.advance(61)
    assert sweep(h.ctx).applications == 1
    post_one(h.ctx, payment.id)
    (done,) = [a for a in _applications(h, payment.id) if a.target_id == invoice.zuora_id]
    assert done.state == "applied"
    assert len(h.erp.later[h.record("payment", payment.zuora_id).erp_ref]) == 1
    trail = [e.message or "" for e in h.ledger.timeline(payment.subject)]
    assert any("found applied already" in m for m in trail)


def test_an_erp_error_backs_the_application_off(harness):
    h = harness
    invoice, payment, _ = _parked_invoice_and_its_payment(h)
    _fix_and_post(h, invoice)
    h.erp.apply_script.append(Transient("Acumatica answered 503", api="fake", status=503))

    post_one(h.ctx, payment.id)

    (backed_off,) = [a for a in _applications(h, payment.id) if a.target_id == invoice.zuora_id]
    assert backed_off.state == "waiting"
    assert "503" in (backed_off.last_error or "")
    assert backed_off.next_attempt_at is not None and backed_off.next_attempt_at > h.clock.dt()
    h.dispatch.posted.clear()
    assert sweep(h.ctx).applications == 0  # backing off
    h.advance(60)
    assert sweep(h.ctx).applications == 1
    post_one(h.ctx, payment.id)
    assert [a.state for a in _applications(h, payment.id) if a.target_id == invoice.zuora_id] == ["applied"]


def test_a_payment_posted_before_its_invoice_was_synced_is_applied_when_it_is(harness):
    h = harness
    pull_stream(h.ctx, PAYMENTS)  # the invoices have not been pulled
    application = h.rows("payment-applications")[0]
    payment = h.record("payment", application["PaymentId"])
    h.advance(3600)  # past the wait for an unknown target
    assert post_one(h.ctx, payment.id).outcome == "posted"
    (waiting,) = [a for a in _applications(h, payment.id) if a.target_id == application["InvoiceId"]]
    assert waiting.reason == "invoice not in the ledger"

    pull_stream(h.ctx, INVOICES)
    invoice = h.record("invoice", application["InvoiceId"])
    assert post_one(h.ctx, invoice.id).outcome == "posted"
    sweep(h.ctx)
    post_one(h.ctx, payment.id)

    done = [a for a in _applications(h, payment.id) if a.target_id == invoice.zuora_id]
    assert [a.state for a in done] == ["applied"]


def test_nothing_waits_for_a_target_left_unreleased_by_configuration(tmp_path, fake_redis):
    # Documents are not released (LEDGERBRIDGE_ITEM_RELEASE off): Acumatica cannot apply to them,
    # and a person releases and applies there. Keeping the application would wait for ever.
    h = ItemHarness(tmp_path, fake_redis)
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    application = h.rows("payment-applications")[0]
    payment = h.record("payment", application["PaymentId"])

    assert post_one(h.ctx, payment.id).outcome == "posted"

    posted = h.record("payment", payment.zuora_id)
    assert posted.posted_payload["not_applied"][0]["reason"] == "not released in the ERP"
    assert _applications(h, payment.id) == []


def test_each_application_links_both_records_with_their_erp_references(harness):
    h = harness
    invoice, payment, _ = _parked_invoice_and_its_payment(h)
    _fix_and_post(h, invoice)
    post_one(h.ctx, payment.id)
    with h.ledger.reading() as session:
        applies_to, _applied_by = links_of(session, payment.id)
        invoice_out, invoice_in = links_of(session, invoice.id)
        described = [x.describe("applies to") for x in applies_to]
        back = [x.describe("applied by") for x in invoice_in]

    paid = h.record("invoice", invoice.zuora_id)
    posted = h.record("payment", payment.zuora_id)
    later = [x for x in described if invoice.zuora_number in x]
    assert later == [
        f"applies to invoice {invoice.zuora_number} ({paid.erp_ref}) for {later[0].split(' for ')[1]}"
    ]
    assert later[0].endswith("later")
    assert invoice_out == []
    assert next(x for x in back if payment.zuora_number in x).startswith(
        f"applied by payment {payment.zuora_number} ({posted.erp_ref})"
    )


def test_an_application_sent_with_the_document_links_it_too(harness):
    h = harness
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    application = h.rows("payment-applications")[0]
    invoice = h.record("invoice", application["InvoiceId"])
    payment = h.record("payment", application["PaymentId"])
    post_one(h.ctx, h.record("account", invoice.account_id).id)

    assert post_one(h.ctx, payment.id).outcome == "posted"  # its invoice posted first

    with h.ledger.reading() as session:
        _, applied_by = links_of(session, invoice.id)
    (link,) = [x for x in applied_by if x.other.id == payment.id]
    assert link.link.made == "with the document"
    assert link.link.target_ref == h.record("invoice", invoice.zuora_id).erp_ref
    assert link.link.source_ref == h.record("payment", payment.zuora_id).erp_ref
