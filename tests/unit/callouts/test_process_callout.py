"""The push path after the receiver: re-fetch by id, same posting path as the pull."""

from __future__ import annotations

import pytest

from shared.item_level import process_callout, process_callouts, pull_stream
from shared.item_level.queries import callout
from shared.item_level.streams import INVOICES
from tests.unit.item_level.support import ItemHarness


@pytest.fixture
def harness(tmp_path, fake_redis):
    return ItemHarness(tmp_path, fake_redis, inline=True)


def _record(h: ItemHarness, code: str, object_type: str, object_id: str, notification: str = "n-1") -> int:
    row, _ = h.ledger.record_callout(
        h.connection, notification, code, object_type=object_type, object_id=object_id
    )
    return row.id


def test_pushed_invoice_is_fetched_and_posted_once(harness):
    account = harness.rows("accounts")[0]["Id"]
    invoice = harness.backend.add_record("invoices", {"AccountId": account})
    callout_id = _record(harness, "1110", "invoice", invoice["Id"])

    result = process_callout(harness.ctx, callout_id)

    row = harness.record("invoice", invoice["Id"])
    assert result["status"] == "done"
    assert row.source == "push"
    assert row.state == "marked"  # the inline dispatcher ran the mark run too
    assert harness.erp.count("invoice", invoice["InvoiceNumber"]) == 1
    assert callout(harness.ledger, callout_id).state == "done"
    assert harness.zuora_requests()["GET /object-query/invoices"] == 1  # one re-fetch, by id


def test_processing_a_callout_twice_posts_once(harness):
    account = harness.rows("accounts")[0]["Id"]
    invoice = harness.backend.add_record("invoices", {"AccountId": account})
    first = _record(harness, "1110", "invoice", invoice["Id"])
    process_callout(harness.ctx, first)
    second = _record(harness, "1110", "invoice", invoice["Id"], notification="n-2")  # Zuora sent two
    process_callout(harness.ctx, second)
    assert harness.erp.count("invoice", invoice["InvoiceNumber"]) == 1


def test_a_pushed_record_later_pulled_is_posted_once(harness):
    account = harness.rows("accounts")[0]["Id"]
    invoice = harness.backend.add_record("invoices", {"AccountId": account})
    process_callout(harness.ctx, _record(harness, "1110", "invoice", invoice["Id"]))
    harness.advance(60)

    pull_stream(harness.ctx, INVOICES)

    assert harness.erp.count("invoice", invoice["InvoiceNumber"]) == 1


def test_credit_memo_created_but_still_draft_is_not_posted(harness):
    account = harness.rows("accounts")[0]["Id"]
    memo = harness.backend.add_record("credit-memos", {"AccountId": account, "Status": "Draft"})
    callout_id = _record(harness, "2710", "credit_memo", memo["Id"])

    result = process_callout(harness.ctx, callout_id)

    assert result["status"] == "done"
    assert "status Draft" in result["reason"]
    assert harness.ledger.get_record(harness.connection, "credit_memo", memo["Id"]) is None
    assert harness.erp.creates() == 0


def test_callout_for_a_record_zuora_does_not_have_fails(harness):
    callout_id = _record(harness, "2120", "payment", "8ad0doesnotexist")
    assert process_callout(harness.ctx, callout_id)["status"] == "failed"
    assert callout(harness.ledger, callout_id).state == "failed"


def test_a_batch_is_refetched_with_one_query_per_stream_and_each_callout_settled(harness):
    accounts = [r["Id"] for r in harness.rows("accounts")[:2]]
    invoices = [harness.backend.add_record("invoices", {"AccountId": a}) for a in accounts * 2]
    payment = harness.backend.add_record("payments", {"AccountId": accounts[0]})
    draft = harness.backend.add_record("credit-memos", {"AccountId": accounts[1], "Status": "Draft"})
    ids = [
        _record(harness, "1110", "invoice", inv["Id"], notification=f"inv-{n}")
        for n, inv in enumerate(invoices)
    ]
    ids.append(_record(harness, "2120", "payment", payment["Id"], notification="pay"))
    ids.append(_record(harness, "2710", "credit_memo", draft["Id"], notification="memo"))
    ids.append(_record(harness, "2120", "payment", "8ad0doesnotexist", notification="gone"))
    # Zuora delivered one notification twice under two ids: one document all the same.
    ids.append(_record(harness, "1110", "invoice", invoices[0]["Id"], notification="inv-again"))
    before = harness.zuora_requests()

    results = process_callouts(harness.ctx, [*ids, ids[0]])

    assert [r["callout"] for r in results] == ids
    assert [r["status"] for r in results] == ["done"] * 6 + ["failed", "done"]
    assert results[5]["reason"].startswith("status Draft")
    after = harness.zuora_requests()
    for path in (
        "GET /object-query/invoices",
        "GET /object-query/payments",
        "GET /object-query/credit-memos",
    ):
        assert after[path] - before.get(path, 0) == 1, path
    assert all(harness.erp.count("invoice", inv["InvoiceNumber"]) == 1 for inv in invoices)
    assert harness.record("payment", payment["Id"]).state == "marked"
    states = [callout(harness.ledger, i) for i in ids]
    assert [s.state for s in states] == ["done"] * 6 + ["failed", "done"]
    assert "not found" in states[6].error
    assert process_callouts(harness.ctx, ids[:1]) == [{"callout": ids[0], "status": "done already"}]
