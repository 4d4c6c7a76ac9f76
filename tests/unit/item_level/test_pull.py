"""Pulling streams from the in-process Zuora sandbox into the ledger: pages, marks, de-duplication."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sandbox.zuora import Sizes
from shared.errors import Transient
from shared.item_level import pull_stream
from shared.item_level.context import Options
from shared.item_level.pull import Resume, updated_of
from shared.item_level.streams import ACCOUNTS, CREDIT_MEMOS, INVOICES, PAYMENTS
from tests.unit.item_level.support import SMALL, ItemHarness


@pytest.fixture
def harness(tmp_path, fake_redis):
    return ItemHarness(tmp_path, fake_redis)


def _posted_invoices(h: ItemHarness) -> set[str]:
    return set(h.posted_ids("invoices", "Posted"))


def test_pull_puts_every_posted_invoice_in_the_ledger_once(harness):
    result = pull_stream(harness.ctx, INVOICES)

    expected = _posted_invoices(harness)
    assert result.rows == len(expected)
    assert {(o, s): n for (o, s), n in harness.states().items() if o == "invoice"} == {
        ("invoice", "pending"): len(expected)
    }
    invoice_ids = {harness.ledger.get_record_by_id(i).zuora_id for i in harness.dispatch.post_ids}
    assert expected <= invoice_ids


def test_pull_dispatches_new_rows_only_after_their_page_committed(harness):
    seen_in_ledger = []

    class Checking:
        def post(self, connection, record_ids, *, countdown=0.0):
            seen_in_ledger.append(all(harness.ledger.get_record_by_id(i) is not None for i in record_ids))

        def mark(self, connection, stream):
            pass

        def callouts(self, connection, callout_ids):
            pass

        def waiting(self):
            return 0

    harness.ctx.dispatch = Checking()
    pull_stream(harness.ctx, INVOICES)
    assert seen_in_ledger and all(seen_in_ledger)


def test_pull_offers_the_freed_heap_back_after_each_page(tmp_path, fake_redis, monkeypatch):
    import shared.item_level.pull

    offered: list[int] = []
    monkeypatch.setattr(shared.item_level.pull, "release_free_heap", lambda: offered.append(1))
    h = ItemHarness(tmp_path, fake_redis, sizes=replace(SMALL, invoices=300, tie_count=0, large_invoices=0))

    result = pull_stream(h.ctx, INVOICES)

    assert result.pages > 1
    assert len(offered) == result.pages


def test_pull_fetches_the_accounts_of_a_page_the_ledger_has_not_seen(harness):
    pull_stream(harness.ctx, INVOICES)

    accounts = {r["AccountId"] for r in harness.rows("invoices") if r["Status"] == "Posted"}
    assert {k: v for k, v in harness.states().items() if k[0] == "account"} == {
        ("account", "pending"): len(accounts)
    }
    # one accounts query for the whole page, not one per invoice
    assert harness.zuora_requests().get("GET /object-query/accounts", 0) <= 1


def test_second_pull_reads_the_overlap_and_creates_nothing(harness):
    first = pull_stream(harness.ctx, INVOICES)
    harness.advance(60)
    second = pull_stream(harness.ctx, INVOICES)

    assert first.new > 0
    assert second.new == 0
    assert sum(n for (o, _), n in harness.states().items() if o == "invoice") == len(
        _posted_invoices(harness)
    )


def test_mark_never_passes_run_start_minus_overlap(harness):
    options = Options(overlap=timedelta(minutes=5))
    harness.ctx.options = options
    run_started = harness.clock.dt()
    result = pull_stream(harness.ctx, INVOICES)
    assert result.mark == run_started - timedelta(minutes=5)
    assert harness.ledger.get_mark(harness.connection, "invoices") == run_started - timedelta(minutes=5)


def test_mark_moves_per_page_to_the_page_last_updated_date(tmp_path, fake_redis):
    h = ItemHarness(
        tmp_path,
        fake_redis,
        sizes=Sizes(
            accounts=10,
            invoices=260,
            payments=0,
            refunds=0,
            credit_memos=0,
            debit_memos=0,
            tie_count=0,
            large_invoices=0,
        ),
    )
    marks = []
    real = h.ledger.advance_mark

    def spy(connection, stream, mark):
        marks.append(mark)
        return real(connection, stream, mark)

    h.ledger.advance_mark = spy
    pull_stream(h.ctx, INVOICES)

    stamps = sorted(
        updated_of({"updatedDate": r["UpdatedDate"]}) for r in h.rows("invoices") if r["Status"] == "Posted"
    )
    pages = [stamps[98], stamps[197]]  # the last row of each full page
    assert marks[:2] == pages
    assert marks == sorted(marks)


def test_equal_updated_dates_across_a_page_boundary_lose_nothing(tmp_path, fake_redis):
    # 150 invoices share one updatedDate: the page boundary (99) falls inside the tie.
    h = ItemHarness(
        tmp_path,
        fake_redis,
        sizes=Sizes(
            accounts=10,
            invoices=320,
            payments=0,
            refunds=0,
            credit_memos=0,
            debit_memos=0,
            tie_count=150,
            large_invoices=0,
        ),
    )
    result = pull_stream(h.ctx, INVOICES)
    expected = _posted_invoices(h)
    ties = [r for r in h.rows("invoices") if r["Status"] == "Posted"]
    assert max(sum(1 for r in ties if r["UpdatedDate"] == t["UpdatedDate"]) for t in ties) >= 100
    assert result.pages >= 2
    assert {k: v for k, v in h.states().items() if k[0] == "invoice"} == {
        ("invoice", "pending"): len(expected)
    }


def test_run_stopped_at_max_pages_resumes_from_its_cursor(tmp_path, fake_redis):
    h = ItemHarness(
        tmp_path,
        fake_redis,
        sizes=Sizes(
            accounts=10,
            invoices=300,
            payments=0,
            refunds=0,
            credit_memos=0,
            debit_memos=0,
            tie_count=0,
            large_invoices=0,
        ),
    )
    first = pull_stream(h.ctx, INVOICES, max_pages=1)
    assert first.resume is not None
    assert first.rows == 99
    second = pull_stream(h.ctx, INVOICES, resume=first.resume)

    assert second.resume is None
    assert first.rows + second.rows == len(_posted_invoices(h))
    assert sum(n for (o, _), n in h.states().items() if o == "invoice") == len(_posted_invoices(h))
    assert h.ledger.get_stream(h.connection, "invoices").last_status == "ok"


def test_resume_survives_a_round_trip_through_task_arguments():
    resume = Resume("Y3Vyc29y", "2026-01-01T00:00:00+00:00", None, backfill=True, advance=False)
    assert Resume(**resume.as_kwargs()) == resume


def test_backfill_since_later_than_the_mark_never_moves_the_mark(harness):
    harness.ledger.advance_mark(harness.connection, "invoices", datetime(2024, 12, 1, tzinfo=UTC))
    result = pull_stream(harness.ctx, INVOICES, since=datetime(2024, 12, 20, tzinfo=UTC))
    assert result.rows > 0
    assert harness.ledger.get_mark(harness.connection, "invoices") == datetime(2024, 12, 1, tzinfo=UTC)


def test_backfill_since_earlier_than_the_mark_reads_behind_it(harness):
    pull_stream(harness.ctx, INVOICES)
    mark = harness.ledger.get_mark(harness.connection, "invoices")
    again = pull_stream(harness.ctx, INVOICES, since=datetime(2024, 1, 1, tzinfo=UTC))
    assert again.rows == len(_posted_invoices(harness))
    assert again.new == 0
    assert harness.ledger.get_mark(harness.connection, "invoices") >= mark


def test_large_invoice_items_are_fetched_separately(tmp_path, fake_redis):
    h = ItemHarness(
        tmp_path,
        fake_redis,
        sizes=Sizes(
            accounts=3,
            invoices=5,
            payments=0,
            refunds=0,
            credit_memos=0,
            debit_memos=0,
            tie_count=0,
            large_invoices=1,
            large_invoice_items=120,
        ),
    )
    pull_stream(h.ctx, INVOICES)

    big = [r for r in h.rows("invoices") if r["Status"] == "Posted"]
    items_per_invoice = {
        r["Id"]: sum(1 for i in h.rows("invoice-items") if i["InvoiceId"] == r["Id"]) for r in big
    }
    large = next(i for i, n in items_per_invoice.items() if n == 120)
    assert len(h.record("invoice", large).payload["invoiceItems"]) == 120
    assert h.zuora_requests()["GET /object-query/invoice-items"] == 2  # 120 items: two pages of 99


def test_zuora_calls_per_record_stay_far_below_one(tmp_path, fake_redis):
    h = ItemHarness(
        tmp_path,
        fake_redis,
        sizes=Sizes(
            accounts=20,
            invoices=500,
            payments=0,
            refunds=0,
            credit_memos=0,
            debit_memos=0,
            tie_count=0,
            large_invoices=0,
        ),
    )
    result = pull_stream(h.ctx, INVOICES)
    pages = -(-result.rows // 99)
    assert h.zuora_calls() <= pages + pages  # a query per page and at most one accounts query per page
    assert h.zuora_calls() / result.rows < 0.03


def test_new_records_older_than_the_grace_count_as_missed_by_push(harness):
    harness.ctx.options = Options(push_enabled=True, push_grace=timedelta(minutes=2))
    pull_stream(harness.ctx, PAYMENTS)  # the first run predates the push: nothing counted
    assert harness.ledger.get_stream(harness.connection, "payments").missed_by_push == 0

    harness.advance(3600)
    invoice = next(r for r in harness.rows("invoices") if r["Status"] == "Posted" and r["Balance"] != "0")
    electronic = harness.backend.add_record("payments", {"invoiceId": invoice["Id"], "Type": "Electronic"})
    external = harness.backend.add_record("payments", {"invoiceId": invoice["Id"], "Type": "External"})
    harness.advance(600)
    result = pull_stream(harness.ctx, PAYMENTS)

    assert result.new >= 2
    assert harness.ledger.get_record(harness.connection, "payment", electronic["Id"]) is not None
    assert harness.ledger.get_record(harness.connection, "payment", external["Id"]) is not None
    assert harness.ledger.get_stream(harness.connection, "payments").missed_by_push == 1


def test_failed_pull_keeps_the_mark_of_committed_pages(tmp_path, fake_redis):
    h = ItemHarness(
        tmp_path,
        fake_redis,
        sizes=Sizes(
            accounts=10,
            invoices=260,
            payments=0,
            refunds=0,
            credit_memos=0,
            debit_memos=0,
            tie_count=0,
            large_invoices=0,
        ),
    )
    pull_stream(h.ctx, ACCOUNTS)  # so the invoice pages need no accounts query
    rows_before = sum(n for (o, _), n in h.states().items() if o == "invoice")
    pages = []
    real_pages = h.zuora.objects.pages

    def two_pages_then_fail(query, cursor=None):
        for page in real_pages(query, cursor=cursor):
            if len(pages) == 2:
                raise Transient("zuora went away", api="zuora")
            pages.append(page)
            yield page

    h.zuora.objects.pages = two_pages_then_fail
    with pytest.raises(Transient):
        pull_stream(h.ctx, INVOICES)

    stamps = sorted(updated_of(r) for p in pages for r in p.data)
    assert rows_before == 0
    assert h.ledger.get_mark(h.connection, "invoices") == stamps[-1]
    assert sum(n for (o, _), n in h.states().items() if o == "invoice") == 198
    run = h.ledger.get_stream(h.connection, "invoices")
    assert (run.last_status, run.last_error) == ("failed", "zuora: zuora went away")


def test_credit_memo_pull_completes_items_and_keeps_applications(harness):
    pull_stream(harness.ctx, CREDIT_MEMOS)
    memo = next(r for r in harness.rows("credit-memos") if r["Status"] == "Posted")
    payload = harness.record("credit_memo", memo["Id"]).payload
    assert payload["creditMemoItems"]
    assert "creditMemoApplications" in payload


def test_small_seed_is_what_the_tests_assume():
    assert SMALL.invoices == 40


def test_a_page_another_worker_changed_meanwhile_is_upserted_again(harness, monkeypatch):
    import shared.item_level.pull as pull_module
    from shared.ledger.errors import TransitionConflict

    real = pull_module.upsert_pulled_page
    calls = {"n": 0}

    def conflicting_once(session, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # what the ledger raises when a posting worker bumped the row's version
            raise TransitionConflict("changed by another worker")
        return real(session, **kw)

    monkeypatch.setattr(pull_module, "upsert_pulled_page", conflicting_once)
    result = pull_stream(harness.ctx, INVOICES)

    assert result.new == len(_posted_invoices(harness)) + len(
        {r["AccountId"] for r in harness.rows("invoices") if r["Status"] == "Posted"}
    )
    assert sum(n for (o, _), n in harness.states().items() if o == "invoice") == len(
        _posted_invoices(harness)
    )


def test_records_marked_while_a_run_reads_are_read_once_by_it_and_again_by_the_next(tmp_path, fake_redis):
    h = ItemHarness(
        tmp_path,
        fake_redis,
        sizes=Sizes(
            accounts=10, invoices=260, payments=0, refunds=0, credit_memos=0, debit_memos=0, tie_count=0,
            large_invoices=0,
        ),
    )  # fmt: skip
    posted = [r for r in h.rows("invoices") if r["Status"] == "Posted"]

    def marked_meanwhile(progress) -> None:
        # Workers mark what the first page brought while the run reads on (a later updatedDate).
        if progress.pages == 1:
            h.advance(30)
            for row in h.rows("invoices"):
                if h.ledger.get_record(h.connection, "invoice", row["Id"]) is not None:
                    h.backend.update_record("invoices", row["Id"], {"TransferredToAccounting": "Yes"})

    first = pull_stream(h.ctx, INVOICES, progress=marked_meanwhile)

    assert first.rows == len(posted)  # not 99 more: the marked ones did not come round again
    assert first.pages == 3
    h.advance(400)
    again = pull_stream(h.ctx, INVOICES)
    assert again.rows >= 99 and again.new == 0  # the next window reads what changed, once
