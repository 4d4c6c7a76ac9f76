"""The sweep re-drives what Redis or a dead worker lost; the mark audit counts what the marks missed."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from shared.item_level import audit_marks, post_one, post_records, pull_stream, sweep
from shared.item_level.context import Options
from shared.item_level.streams import ACCOUNTS, INVOICES
from shared.item_level.sweep import BACKLOG_TASKS
from shared.ledger.models import SyncRecord
from shared.ledger.states import begin_posting, fail
from tests.unit.item_level.support import ItemHarness

GRACE = timedelta(seconds=20)


@pytest.fixture
def harness(tmp_path, fake_redis):
    return ItemHarness(
        tmp_path,
        fake_redis,
        options=Options(sweep_grace=GRACE, posting_timeout=timedelta(seconds=60), erp_concurrency=1),
    )


def _sent(h: ItemHarness) -> list[int]:
    ids = h.dispatch.post_ids
    h.dispatch.posted.clear()
    return ids


def test_pending_rows_are_redriven_once_past_the_grace(harness):
    pull_stream(harness.ctx, INVOICES)
    pulled = sorted(_sent(harness))  # their post task was "lost"

    assert sweep(harness.ctx).pending == 0
    harness.advance(GRACE.total_seconds() + 1)
    summary = sweep(harness.ctx)

    assert summary.pending == len(pulled)
    assert sorted(_sent(harness)) == pulled
    assert sweep(harness.ctx).pending == 0  # deferred by the grace: not sent twice in a row


def test_pending_rows_are_left_to_the_queue_while_tasks_wait_in_the_broker(harness):
    pull_stream(harness.ctx, INVOICES)
    pulled = sorted(_sent(harness))
    harness.advance(GRACE.total_seconds() + 1)
    harness.dispatch.queued = BACKLOG_TASKS  # a backlog's batches, these rows' among them

    summary = sweep(harness.ctx)

    assert (summary.pending, summary.more) == (0, False)
    assert _sent(harness) == []
    harness.dispatch.queued = BACKLOG_TASKS - 1  # drained: the rows still pending lost their messages
    assert sweep(harness.ctx).pending == len(pulled)
    assert sorted(_sent(harness)) == pulled


def test_a_broker_that_does_not_answer_is_not_taken_for_an_empty_one(harness):
    pull_stream(harness.ctx, INVOICES)
    pulled = sorted(_sent(harness))
    harness.advance(GRACE.total_seconds() + 1)
    harness.dispatch.queued = None  # the broker did not say how many tasks wait

    assert sweep(harness.ctx).pending == 0  # not sent again: they may well be queued
    assert _sent(harness) == []
    harness.dispatch.queued = 0  # it answers again, and nothing waits: the messages were lost
    assert sweep(harness.ctx).pending == len(pulled)


def test_posted_rows_get_their_mark_run_while_tasks_wait_in_the_broker(harness):
    pull_stream(harness.ctx, INVOICES)
    post_records(harness.ctx, _sent(harness))
    harness.dispatch.marked.clear()
    harness.advance(GRACE.total_seconds() + 1)
    harness.dispatch.queued = BACKLOG_TASKS

    assert sweep(harness.ctx).to_mark == ["invoices"]
    assert harness.dispatch.marked == ["invoices"]


def test_the_sweep_redrives_pending_rows_without_loading_a_record_or_its_payload(harness):
    pull_stream(harness.ctx, INVOICES)
    pulled = sorted(_sent(harness))
    harness.advance(GRACE.total_seconds() + 1)
    loaded: list[object] = []
    listen = ("load", lambda target, _context: loaded.append(target))

    sa.event.listen(SyncRecord, *listen)
    try:
        summary = sweep(harness.ctx)
    finally:
        sa.event.remove(SyncRecord, *listen)

    assert summary.pending == len(pulled) > 0
    assert sorted(_sent(harness)) == pulled
    assert loaded == []  # keys and one UPDATE: a backlog of big invoices costs the sweep no memory


def test_a_lost_answer_is_sent_for_its_lookup_seconds_later(harness):
    pull_stream(harness.ctx, INVOICES)
    _sent(harness)
    row = harness.record("invoice", harness.posted_ids("invoices", "Posted")[0])
    post_one(harness.ctx, harness.record("account", row.account_id).id)
    harness.erp.script.append("commit-then-unknown")
    assert post_one(harness.ctx, row.id).outcome == "in_doubt"

    # The worker asked for the lookup itself; should that message be lost, the sweep sends it.
    harness.advance(1)
    sweep(harness.ctx)
    assert row.id not in _sent(harness)
    harness.advance(1)
    assert sweep(harness.ctx).in_doubt == 1
    assert row.id in _sent(harness)

    assert post_one(harness.ctx, row.id).outcome == "posted"
    assert harness.erp.count("invoice", row.zuora_number) == 1


def test_a_dead_workers_claim_is_looked_up_after_the_posting_timeout(harness):
    pull_stream(harness.ctx, INVOICES)
    _sent(harness)
    row = harness.record("invoice", harness.posted_ids("invoices", "Posted")[0])
    post_one(harness.ctx, harness.record("account", row.account_id).id)
    with harness.ledger.session() as session:
        begin_posting(session, row.id, timeout=timedelta(seconds=60), now=harness.clock.dt())  # then died

    harness.advance(30)
    sweep(harness.ctx)
    assert row.id not in _sent(harness)
    harness.advance(31)
    sweep(harness.ctx)
    assert row.id in _sent(harness)

    assert post_one(harness.ctx, row.id).outcome == "posted"  # not found: created, once
    assert harness.erp.count("invoice", row.zuora_number) == 1


def test_failed_rows_are_retried_after_their_backoff(harness):
    pull_stream(harness.ctx, ACCOUNTS)
    _sent(harness)
    row = harness.record("account", harness.rows("accounts")[0]["Id"])
    with harness.ledger.session() as session:
        fail(session, row.id, "boom", retry_at=harness.later(120), now=harness.clock.dt())

    harness.advance(60)
    sweep(harness.ctx)
    assert row.id not in _sent(harness)
    harness.advance(61)
    summary = sweep(harness.ctx)
    assert summary.failed == 1
    assert row.id in _sent(harness)
    assert harness.record("account", row.zuora_id).state == "pending"


def test_posted_rows_not_yet_marked_get_a_mark_run(harness):
    pull_stream(harness.ctx, INVOICES)
    post_records(harness.ctx, _sent(harness))
    harness.dispatch.marked.clear()

    harness.advance(GRACE.total_seconds() + 1)
    summary = sweep(harness.ctx)

    assert summary.to_mark == ["invoices"]
    assert harness.dispatch.marked == ["invoices"]


def test_posting_rows_still_inside_their_timeout_are_left_alone(harness):
    pull_stream(harness.ctx, INVOICES)
    _sent(harness)
    row = harness.record("invoice", harness.posted_ids("invoices", "Posted")[0])
    with harness.ledger.session() as session:
        begin_posting(session, row.id, timeout=timedelta(seconds=60), now=harness.clock.dt())
    harness.advance(GRACE.total_seconds() + 1)
    sweep(harness.ctx)
    assert row.id not in _sent(harness)


def test_lost_callouts_are_sent_again(harness):
    row, _ = harness.ledger.record_callout(
        harness.connection, "n-1", "1110", object_type="invoice", object_id="x"
    )
    assert sweep(harness.ctx).callouts == 0
    harness.advance(GRACE.total_seconds() + 1)
    # received_at is wall-clock time in the ledger; the sweep compares it with its own clock
    harness.ctx.clock = lambda: row.received_at + GRACE + timedelta(seconds=1)
    assert sweep(harness.ctx).callouts == 1
    assert harness.dispatch.callout_ids == [row.id]


def test_mark_audit_finds_a_record_committed_behind_the_mark(harness):
    harness.ctx.options = Options(overlap=timedelta(minutes=5), sweep_grace=GRACE)
    pull_stream(harness.ctx, INVOICES)
    mark = harness.ledger.get_mark(harness.connection, "invoices")
    account = harness.rows("accounts")[0]["Id"]
    late = harness.backend.add_record("invoices", {"AccountId": account})
    # Zuora stamped it an hour before the mark, but it became visible only now (a late commit
    # longer than the overlap): the next pull's window starts after it.
    stamp = (mark - timedelta(hours=1)).isoformat()
    harness.backend.update_record("invoices", late["Id"], {}, updated_date=stamp)
    harness.advance(60)
    pull_stream(harness.ctx, INVOICES)
    assert harness.ledger.get_record(harness.connection, "invoice", late["Id"]) is None

    missed = audit_marks(harness.ctx, INVOICES, window=timedelta(hours=6))

    assert missed == 1
    assert harness.record("invoice", late["Id"]).state == "pending"
    assert harness.ledger.get_stream(harness.connection, "invoices").missed_by_mark == 1
    assert audit_marks(harness.ctx, INVOICES, window=timedelta(hours=6)) == 0


def test_mark_audit_without_a_mark_does_nothing(harness):
    assert audit_marks(harness.ctx, INVOICES, window=timedelta(hours=6)) == 0
    assert harness.zuora_calls() == 0


def test_mark_audit_never_reaches_behind_the_sync_horizon(harness):
    harness.ctx.options = Options(overlap=timedelta(minutes=5), sweep_grace=GRACE)
    # The sync started from a horizon (--since): older invoices were deliberately left out.
    horizon = harness.clock.dt() - timedelta(hours=2)
    account = harness.rows("accounts")[0]["Id"]
    recent = harness.backend.add_record("invoices", {"AccountId": account})
    harness.backend.update_record(
        "invoices", recent["Id"], {}, updated_date=(horizon + timedelta(minutes=30)).isoformat()
    )
    pull_stream(harness.ctx, INVOICES, since=horizon)
    assert harness.ledger.get_record(harness.connection, "invoice", recent["Id"]) is not None
    old_posted = [r for r in harness.rows("invoices") if r["Status"] == "Posted" and r["Id"] != recent["Id"]]
    assert old_posted  # seeded December 2024: before the horizon

    assert audit_marks(harness.ctx, INVOICES, window=timedelta(days=3650)) == 0
    assert all(harness.ledger.get_record(harness.connection, "invoice", r["Id"]) is None for r in old_posted)


def test_a_posted_document_whose_release_failed_is_sent_to_be_released_again(tmp_path, fake_redis):
    h = ItemHarness(
        tmp_path,
        fake_redis,
        options=Options(
            release=True, sweep_grace=GRACE, posting_timeout=timedelta(seconds=60), erp_concurrency=1
        ),
    )
    pull_stream(h.ctx, INVOICES)
    first = next(i for i in sorted(_sent(h)) if h.ledger.get_record_by_id(i).object_type == "invoice")
    h.erp.release_failures = 1
    post_one(h.ctx, first)
    assert h.ledger.get_record_by_id(first).erp_released is False

    assert sweep(h.ctx).unreleased == 0  # not before the grace
    h.advance(GRACE.total_seconds() + 1)
    summary = sweep(h.ctx)
    assert (summary.unreleased, first in _sent(h)) == (1, True)

    h.erp.release_failures = 1
    post_one(h.ctx, first)  # the release fails again: noted, and not sent again before the grace
    assert h.ledger.get_record_by_id(first).erp_released is False
    assert (
        "still not released in the ERP"
        in h.ledger.timeline(h.ledger.get_record_by_id(first).subject)[-1].message
    )
    assert sweep(h.ctx).unreleased == 0
    h.advance(GRACE.total_seconds() + 1)
    assert sweep(h.ctx).unreleased == 1

    post_one(h.ctx, first)  # what the posting task the sweep sent does
    row = h.ledger.get_record_by_id(first)
    assert (row.state, row.erp_released) == ("posted", True)
    h.advance(GRACE.total_seconds() + 1)
    assert sweep(h.ctx).unreleased == 0
