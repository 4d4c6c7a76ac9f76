"""Marking posted records TransferredToAccounting=Yes: batches of 50, per-row results, memo PUTs."""

from __future__ import annotations

import weakref

import pytest
import sqlalchemy as sa

from sandbox.zuora import Sizes
from shared.errors import NotFound
from shared.item_level import mark_stream, post_records, pull_stream, sync_status
from shared.item_level.streams import CREDIT_MEMOS, DEBIT_MEMOS, INVOICES, PAYMENTS
from shared.ledger.models import SyncRecord
from tests.unit.item_level.support import ItemHarness

MANY = Sizes(
    accounts=10,
    invoices=150,
    payments=0,
    refunds=0,
    credit_memos=0,
    debit_memos=0,
    tie_count=0,
    large_invoices=0,
)
MEMOS = Sizes(
    accounts=10,
    invoices=20,
    payments=0,
    refunds=0,
    credit_memos=120,
    debit_memos=120,
    tie_count=0,
    large_invoices=0,
)


def _pull_and_post(h: ItemHarness, stream) -> None:
    pull_stream(h.ctx, stream)
    post_records(h.ctx, h.dispatch.post_ids)


def test_invoices_are_marked_with_action_update_50_at_a_time(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, sizes=MANY)
    _pull_and_post(h, INVOICES)
    posted = len(h.posted_ids("invoices", "Posted"))
    before = h.zuora_requests().get("POST /v1/action/update", 0)

    summary = mark_stream(h.ctx, INVOICES)

    assert (summary.marked, summary.failed) == (posted, 0)
    assert h.zuora_requests()["POST /v1/action/update"] - before == -(-posted // 50)
    assert all(
        r.get("TransferredToAccounting") == "Yes" for r in h.rows("invoices") if r["Status"] == "Posted"
    )
    assert {k: v for k, v in h.states().items() if k[0] == "invoice"} == {("invoice", "marked"): posted}


def test_a_mark_run_holds_at_most_one_batch_of_records_at_a_time(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, sizes=MANY)
    _pull_and_post(h, INVOICES)
    live: set[int] = set()
    most = 0

    def loaded(target, _context) -> None:
        nonlocal most
        live.add(id(target))
        weakref.finalize(target, live.discard, id(target))
        most = max(most, len(live))

    sa.event.listen(SyncRecord, "load", loaded)
    try:
        summary = mark_stream(h.ctx, INVOICES)
    finally:
        sa.event.remove(SyncRecord, "load", loaded)

    assert summary.marked > 100
    # The run lists keys and records each batch with one UPDATE of the ids: no row is loaded
    # (row by row, after a conflict, only the batch being recorded would be).
    assert most == 0


def test_a_row_zuora_refuses_stays_posted_with_the_error_and_is_retried(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    _pull_and_post(h, INVOICES)
    victim = h.posted_ids("invoices", "Posted")[0]
    h.backend.update_record("invoices", victim, {"Status": "Canceled"})  # Zuora refuses to mark it

    summary = mark_stream(h.ctx, INVOICES)

    row = h.record("invoice", victim)
    assert summary.failed == 1
    assert row.state == "posted"
    assert "marking transferred failed" in row.last_error
    assert "Posted invoices" in row.last_error
    invoices = next(r for r in sync_status(h.ledger, h.connection).streams if r.stream == "invoices")
    assert invoices.mark_failures == 1
    # not retried before its time, then retried
    assert mark_stream(h.ctx, INVOICES).marked == 0
    h.backend.update_record("invoices", victim, {"Status": "Posted"})
    h.advance(h.ctx.options.mark_retry.total_seconds() + 1)
    assert mark_stream(h.ctx, INVOICES).marked == 1
    assert h.record("invoice", victim).state == "marked"


@pytest.mark.parametrize(("stream", "table"), [(CREDIT_MEMOS, "credit-memos"), (DEBIT_MEMOS, "debit-memos")])
def test_memos_are_marked_with_the_bulk_rest_put_50_at_a_time(tmp_path, fake_redis, stream, table):
    h = ItemHarness(tmp_path, fake_redis, sizes=MEMOS)
    _pull_and_post(h, stream)
    posted = h.posted_ids(table, "Posted")
    ready = h.states()[(stream.object_type, "posted")]
    assert ready > 50  # more than one bulk call

    summary = mark_stream(h.ctx, stream)

    assert summary.marked == ready
    assert summary.calls == -(-ready // 50)
    requests = h.zuora_requests()
    assert requests[f"PUT /v1/{table}/bulk"] == summary.calls
    assert requests.get(f"PUT /v1/{table}/{{key}}", 0) == 0
    assert requests.get("POST /v1/action/update", 0) == 0
    marked = {i for i in posted if h.record(stream.object_type, i).state == "marked"}
    assert len(marked) == ready
    assert {r["Id"] for r in h.rows(table) if r.get("TransferredToAccounting") == "Yes"} == marked


def test_a_memo_the_bulk_put_refuses_stays_posted_and_the_others_are_marked(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    _pull_and_post(h, CREDIT_MEMOS)
    posted = h.posted_ids("credit-memos", "Posted")
    victim = posted[0]
    real_bulk = h.ctx.zuora.transfers.credit_memos

    def bulk_with_one_unknown(ids, value="Yes"):
        # Zuora answers the memo on its own: as if it were deleted between posting and marking.
        return real_bulk([("f" * 32 if i == victim else i) for i in ids], value)

    h.ctx.zuora.transfers.credit_memos = bulk_with_one_unknown

    summary = mark_stream(h.ctx, CREDIT_MEMOS)

    assert (summary.marked, summary.failed) == (len(posted) - 1, 1)
    row = h.record("credit_memo", victim)
    assert row.state == "posted"
    assert "marking transferred failed" in row.last_error and "does not exist" in row.last_error
    assert {h.record("credit_memo", i).state for i in posted[1:]} == {"marked"}


def test_a_tenant_refusing_the_bulk_put_gets_one_put_per_memo(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    _pull_and_post(h, DEBIT_MEMOS)
    posted = h.posted_ids("debit-memos", "Posted")

    def refused(ids, value="Yes"):
        raise NotFound("no such operation: PUT /v1/debit-memos", api="zuora", status=404)

    h.ctx.zuora.transfers.debit_memos = refused

    summary = mark_stream(h.ctx, DEBIT_MEMOS)

    assert summary.marked == len(posted)
    assert summary.calls == 1 + len(posted)  # the refused bulk call, then one PUT each
    assert h.zuora_requests()["PUT /v1/debit-memos/{key}"] == len(posted)
    assert all(r.get("TransferredToAccounting") == "Yes" for r in h.rows("debit-memos") if r["Id"] in posted)


def test_marking_bumps_updated_date_and_the_next_pull_posts_nothing(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    pull_stream(h.ctx, INVOICES)
    _pull_and_post(h, PAYMENTS)
    marked = mark_stream(h.ctx, PAYMENTS).marked
    erp_calls = h.erp.erp_calls()
    h.dispatch.posted.clear()
    h.advance(30)

    again = pull_stream(h.ctx, PAYMENTS)

    assert marked == len(h.posted_ids("payments", "Processed"))
    assert again.rows == marked  # every one read again: marking moved its updatedDate past the mark
    assert again.new == 0
    assert h.dispatch.posted == []
    post_records(h.ctx, [h.record("payment", p).id for p in h.posted_ids("payments", "Processed")])
    assert h.erp.erp_calls() == erp_calls


def test_nothing_to_mark_costs_no_call(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    summary = mark_stream(h.ctx, INVOICES)
    assert (summary.marked, summary.calls) == (0, 0)
    assert h.zuora_calls() == 0


def test_a_last_partial_batch_waits_while_the_stream_is_still_being_posted(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, sizes=MANY)
    pull_stream(h.ctx, INVOICES)
    waiting = [i for i in h.dispatch.post_ids if h.ledger.get_record_by_id(i).object_type == "invoice"]
    assert len(waiting) > 70
    post_records(h.ctx, waiting[:70])  # the rest are still queued for the workers
    posted = h.states()[("invoice", "posted")]

    first = mark_stream(h.ctx, INVOICES)

    assert first.marked == posted - posted % 50 and first.calls == posted // 50  # whole calls only
    post_records(h.ctx, waiting[70:])
    rest = h.states()[("invoice", "posted")]
    second = mark_stream(h.ctx, INVOICES)
    assert second.marked == rest  # nothing left to post: the last, partial call goes too
    assert ("invoice", "posted") not in h.states()
