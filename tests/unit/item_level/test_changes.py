"""Changes in Zuora after a record was posted: an account's new name reaches the ERP customer, a
payment applied later in Zuora is applied in the ERP, a document changed after posting is noted
for a person and never overwritten, and marking is no change."""

from __future__ import annotations

from decimal import Decimal

import pytest

from shared.item_level import post_one, pull_stream, sweep
from shared.item_level.changes import differences
from shared.item_level.streams import ACCOUNTS, INVOICES, PAYMENTS, content_digest
from shared.ledger import applications as ledger_applications
from shared.ledger.states import begin_posting, complete_posting
from tests.unit.item_level.support import ItemHarness, releasing_harness


@pytest.fixture
def harness(tmp_path, fake_redis):
    return releasing_harness(tmp_path, fake_redis)


def _posted_account(h: ItemHarness):
    pull_stream(h.ctx, ACCOUNTS)
    account = h.rows("accounts")[0]
    row = h.record("account", account["Id"])
    assert post_one(h.ctx, row.id).outcome == "marked"
    return account, row


def _posted_invoice(h: ItemHarness):
    """The first seeded invoice, pulled and posted (its customer first)."""
    pull_stream(h.ctx, INVOICES)
    invoice = h.rows("invoices")[0]
    row = h.record("invoice", invoice["Id"])
    post_one(h.ctx, h.record("account", row.account_id).id)
    assert post_one(h.ctx, row.id).outcome == "posted"
    return invoice, row


def _pull_again(h: ItemHarness, stream) -> None:
    h.advance(5)
    pull_stream(h.ctx, stream)


def test_the_digest_ignores_audit_stamps_running_totals_and_order():
    row = {
        "id": "a",
        "amount": "10.00",
        "balance": "10.00",
        "updatedDate": "2025-01-01T00:00:00Z",
        "paymentApplications": [
            {"invoiceId": "i1", "applyAmount": "4"},
            {"invoiceId": "i2", "applyAmount": "6"},
        ],
    }
    same = {
        **row,
        "balance": "0.00",
        "updatedDate": "2025-02-01T00:00:00Z",
        "transferredToAccounting": "Yes",
        "paymentApplications": list(reversed(row["paymentApplications"])),
    }
    other = {**row, "amount": "12.00"}
    assert content_digest(row) == content_digest(same)
    assert content_digest(row) != content_digest(other)
    assert differences({"a": "1.0", "b": {"c": 1}}, {"a": "1.00", "b": {"c": 2}}) == ["b.c: 1 -> 2"]


def test_a_new_account_name_reaches_the_erp_customer(harness):
    h = harness
    account, row = _posted_account(h)
    h.backend.update_record("accounts", account["Id"], {"Name": "Renamed Holdings Ltd"})

    _pull_again(h, ACCOUNTS)

    changed = h.record("account", account["Id"])
    assert changed.changed_at is not None and changed.state == "marked"
    h.dispatch.posted.clear()
    assert sweep(h.ctx).changed == 1
    assert row.id in h.dispatch.post_ids
    post_one(h.ctx, row.id)
    done = h.record("account", account["Id"])
    customer_id = done.posted_payload["document"]["customer_id"]
    assert h.erp.customers[customer_id].name == "Renamed Holdings Ltd"
    assert (done.changed_at, done.change_note) == (None, None)
    assert done.posted_payload["document"]["name"] == "Renamed Holdings Ltd"
    trail = [e.message or "" for e in h.ledger.timeline(row.subject)]
    assert any("changed in Zuora after it was posted" in m for m in trail)
    assert any("customer updated in the ERP: name: " in m and "'Renamed Holdings Ltd'" in m for m in trail)
    upserts = sum(1 for call, _ in h.erp.calls if call == "upsert_customer")
    _pull_again(h, ACCOUNTS)  # nothing new
    assert h.record("account", account["Id"]).changed_at is None
    assert sum(1 for call, _ in h.erp.calls if call == "upsert_customer") == upserts


def test_marking_a_record_transferred_is_not_a_change(harness):
    h = harness
    invoice, row = _posted_invoice(h)
    h.backend.update_record("invoices", invoice["Id"], {"TransferredToAccounting": "Yes"})

    _pull_again(h, INVOICES)

    again = h.record("invoice", invoice["Id"])
    assert again.zuora_updated > row.zuora_updated  # fetched anew
    assert again.changed_at is None


def test_a_document_changed_after_posting_is_noted_for_a_person_and_not_overwritten(harness):
    h = harness
    invoice, row = _posted_invoice(h)
    item = next(i for i in h.rows("invoice-items") if i["InvoiceId"] == invoice["Id"])
    h.backend.update_record(
        "invoice-items", item["Id"], {"ChargeAmount": str(Decimal(str(item["ChargeAmount"])) + 5)}
    )
    h.backend.update_record("invoices", invoice["Id"], {"Amount": str(Decimal(str(invoice["Amount"])) + 5)})
    creates = h.erp.creates()

    _pull_again(h, INVOICES)
    sweep(h.ctx)
    post_one(h.ctx, row.id)

    noted = h.record("invoice", invoice["Id"])
    assert noted.changed_at is None and noted.state == "posted"
    assert "changed in Zuora after it was posted" in (noted.change_note or "")
    assert "the ERP document was not changed" in noted.change_note
    assert h.erp.creates() == creates  # nothing posted again
    (notice,) = h.ledger.notices_of(row.subject)
    assert notice.event == "record.changed_after_posting"


def test_a_payment_applied_in_zuora_after_it_was_posted_is_applied_in_the_erp(harness):
    h = harness
    invoice = next(
        i for i in h.rows("invoices") if i["Status"] == "Posted" and Decimal(str(i["Balance"])) > 1
    )
    # An external payment recorded unapplied (Invoice Settlement): applied to the invoice later.
    payment = h.backend.add_record(
        "payments",
        {"AccountId": invoice["AccountId"], "Amount": "1.00", "Type": "External", "Status": "Processed",
         "Currency": invoice.get("Currency") or "USD"},
    )  # fmt: skip
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    for record_id in (h.record("payment", payment["Id"]).id, h.record("invoice", invoice["Id"]).id):
        post_one(h.ctx, record_id)
    row = h.record("payment", payment["Id"])
    assert row.state == "posted" and h.erp.applications[row.zuora_number] == ()
    amount = min(Decimal(str(payment["Amount"])), Decimal(str(invoice["Balance"])))
    h.advance(60)  # applied a minute later
    h.backend.add_record(
        "payment-applications",
        {"PaymentId": payment["Id"], "InvoiceId": invoice["Id"], "ApplyAmount": str(amount)},
    )
    h.backend.update_record("payments", payment["Id"], {"AppliedAmount": str(amount)})

    _pull_again(h, PAYMENTS)
    assert h.record("payment", payment["Id"]).changed_at is not None
    sweep(h.ctx)
    post_one(h.ctx, row.id)

    with h.ledger.reading() as session:
        (kept,) = ledger_applications.applications_of(session, [row.id])
    assert (kept.state, kept.target_id, Decimal(kept.amount)) == ("applied", invoice["Id"], amount)
    assert h.erp.later[row.erp_ref][invoice["InvoiceNumber"]].amount == amount
    done = h.record("payment", payment["Id"])
    assert (done.changed_at, done.change_note) == (None, None)


def test_a_change_in_the_same_second_as_the_marking_is_still_a_change(harness):
    # Zuora's updatedDate has whole seconds: marked, pulled, then changed within that second.
    h = harness
    invoice, _ = _posted_invoice(h)
    h.advance(5)
    h.backend.update_record("invoices", invoice["Id"], {"TransferredToAccounting": "Yes"})
    pull_stream(h.ctx, INVOICES)
    marked = h.record("invoice", invoice["Id"])
    assert marked.changed_at is None
    h.backend.update_record("invoices", invoice["Id"], {"DueDate": "2031-01-31"})  # the same second

    pull_stream(h.ctx, INVOICES)

    changed = h.record("invoice", invoice["Id"])
    assert changed.zuora_updated == marked.zuora_updated
    assert changed.changed_at is not None
    assert changed.payload["dueDate"] == "2031-01-31"


def test_a_change_while_the_record_is_being_posted_is_looked_at_once_it_is_posted(harness):
    h = harness
    pull_stream(h.ctx, INVOICES)
    invoice = h.rows("invoices")[0]
    row = h.record("invoice", invoice["Id"])
    post_one(h.ctx, h.record("account", row.account_id).id)
    with h.ledger.session() as session:
        begin_posting(session, row.id, erp_payload={"document": {"due_date": "before"}}, now=h.clock.dt())
    h.advance(5)
    h.backend.update_record("invoices", invoice["Id"], {"DueDate": "2031-01-31"})

    pull_stream(h.ctx, INVOICES)

    assert h.record("invoice", invoice["Id"]).changed_at is not None
    h.dispatch.posted.clear()
    assert sweep(h.ctx).changed == 0  # not while it is being posted
    with h.ledger.session() as session:
        complete_posting(session, row.id, erp_ref="invoice/000001", released=True, now=h.clock.dt())
    assert sweep(h.ctx).changed == 1
