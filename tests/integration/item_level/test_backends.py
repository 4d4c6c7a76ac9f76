"""The item-level flows on both ledger backends (SQLite and PostgreSQL): pull, post, mark, re-pull,
sweep and status, with the Zuora sandbox in-process."""

from __future__ import annotations

from datetime import timedelta

from shared.item_level import audit_marks, mark_stream, post_records, pull_stream, sweep, sync_status
from shared.item_level.context import Options
from shared.item_level.streams import select_streams
from tests.unit.item_level.support import ItemHarness


def test_a_full_cycle_on_each_ledger_backend(tmp_path, fake_redis, database_url):
    h = ItemHarness(
        tmp_path, fake_redis, database_url=database_url, options=Options(sweep_grace=timedelta(seconds=10))
    )
    h.erp.released = True
    for stream in select_streams():
        pull_stream(h.ctx, stream)
    post_records(h.ctx, h.dispatch.post_ids)
    for stream in select_streams():
        mark_stream(h.ctx, stream)
    assert {state for (_, state) in h.states()} == {"marked"}

    h.advance(60)
    h.dispatch.posted.clear()
    again = [pull_stream(h.ctx, stream).new for stream in select_streams()]
    assert again == [0] * 6
    h.advance(3600)
    assert sweep(h.ctx).pending == 0
    assert audit_marks(h.ctx, select_streams(["invoices"])[0], window=timedelta(hours=6)) == 0
    report = sync_status(h.ledger, h.connection)
    assert all(
        row.mark is not None and row.counts["marked"] == sum(row.counts.values()) for row in report.streams
    )
