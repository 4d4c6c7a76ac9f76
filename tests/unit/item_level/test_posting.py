"""Posting ledger rows to the ERP: one call per document, customers first, in-doubt rows looked up."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from shared.erp.errors import ClosedPeriod, OutcomeUnknown
from shared.errors import RateLimited, Rejected, Transient
from shared.item_level import post_one, post_records, posting, pull_stream
from shared.item_level.context import Options
from shared.item_level.posting import posting_threads
from shared.item_level.streams import ACCOUNTS, CREDIT_MEMOS, INVOICES, PAYMENTS
from shared.ledger.errors import LedgerError
from shared.ledger.states import begin_posting, resume_in_doubt
from tests.unit.item_level.support import SMALL, ItemHarness


@pytest.fixture
def harness(tmp_path, fake_redis):
    return ItemHarness(tmp_path, fake_redis)


def _invoice_rows(h: ItemHarness):
    pull_stream(h.ctx, INVOICES)
    return [h.record("invoice", zid) for zid in h.posted_ids("invoices", "Posted")]


def test_posting_a_page_costs_one_erp_call_per_document_and_per_customer(harness):
    rows = _invoice_rows(harness)
    summary = post_records(harness.ctx, harness.dispatch.post_ids)

    accounts = {r.account_id for r in rows}
    assert summary.counts() == {"posted": len(rows), "marked": len(accounts)}
    assert harness.erp.erp_calls() == len(rows) + len(accounts)
    assert all(harness.erp.count("invoice", r.zuora_number) == 1 for r in rows)
    assert {k: v for k, v in harness.states().items()} == {
        ("invoice", "posted"): len(rows),
        ("account", "marked"): len(accounts),
    }


def test_customer_is_upserted_before_its_first_document(harness):
    rows = _invoice_rows(harness)
    post_records(harness.ctx, [rows[0].id])

    first_customer = next(i for i, (m, _) in enumerate(harness.erp.calls) if m == "upsert_customer")
    first_invoice = next(i for i, (m, _) in enumerate(harness.erp.calls) if m == "create_invoice")
    assert first_customer < first_invoice


def test_posting_marks_nothing_itself_but_asks_for_marking(harness):
    _invoice_rows(harness)
    harness.dispatch.marked.clear()
    post_records(harness.ctx, harness.dispatch.post_ids)
    assert harness.dispatch.marked == ["invoices"]


def test_document_waits_while_its_account_has_no_customer(harness):
    rows = _invoice_rows(harness)
    row = rows[0]
    account = harness.record("account", row.account_id)
    with harness.ledger.session() as session:
        from shared.ledger.states import park

        park(session, account.id, "unmapped currency XYZ")

    outcome = post_one(harness.ctx, row.id)

    assert outcome.outcome == "waiting"
    after = harness.record("invoice", row.zuora_id)
    assert after.state == "pending"
    assert "waiting for account" in after.last_error
    assert harness.erp.creates() == 0


def test_unmapped_accounting_code_parks_the_record(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, mapping_drop=('"Subscription Revenue"',))
    rows = _invoice_rows(h)
    post_records(h.ctx, h.dispatch.post_ids)

    parked = [
        h.record("invoice", r.zuora_id) for r in rows if h.record("invoice", r.zuora_id).state == "parked"
    ]
    assert parked
    assert all("unmapped account 'Subscription Revenue'" in r.last_error for r in parked)
    assert all(h.erp.count("invoice", r.zuora_number) == 0 for r in parked)


def test_lost_answer_is_looked_up_seconds_later_not_after_the_posting_timeout(harness):
    row = _invoice_rows(harness)[0]
    harness.ctx.options = Options(posting_timeout=timedelta(minutes=15))
    harness.erp.script.append("commit-then-unknown")

    first = post_one(harness.ctx, row.id)
    assert (first.outcome, first.retry_in) == ("in_doubt", 2.0)  # the worker knows: a lookup in 2 s
    held = harness.record("invoice", row.zuora_id)
    assert held.state == "posting"
    assert held.recreate_after == harness.clock.dt() + timedelta(minutes=2)  # no answer: the quiet period
    assert held.next_attempt_at == harness.clock.dt() + timedelta(seconds=2)
    assert held.last_error.startswith("in doubt: the ERP's answer was lost")

    assert post_one(harness.ctx, row.id).outcome == "busy"  # not due yet
    harness.advance(2)
    second = post_one(harness.ctx, row.id)

    assert second.outcome == "posted"
    assert second.detail == "in doubt: found"
    assert harness.erp.count("invoice", row.zuora_number) == 1
    settled = harness.record("invoice", row.zuora_id)
    assert settled.erp_ref == harness.erp.documents[("invoice", row.zuora_number)][0].key
    assert settled.recreate_after is None


def test_a_lost_create_found_unreleased_is_released_where_releasing_is_configured(harness):
    # The answer lost was the create's: the release that follows it never ran.
    row = _invoice_rows(harness)[0]
    harness.ctx.options = Options(release=True, posting_timeout=timedelta(minutes=15))
    harness.erp.script.append("commit-then-unknown")
    assert post_one(harness.ctx, row.id).outcome == "in_doubt"
    harness.advance(2)

    assert post_one(harness.ctx, row.id).outcome == "posted"

    settled = harness.record("invoice", row.zuora_id)
    assert (settled.erp_ref, settled.erp_released) == (
        harness.erp.documents[("invoice", row.zuora_number)][0].key,
        True,
    )
    assert ("release", settled.erp_ref) in harness.erp.calls


def test_lost_answer_not_found_is_created_again_only_after_the_quiet_period(harness):
    row = _invoice_rows(harness)[0]
    post_one(harness.ctx, harness.record("account", row.account_id).id)
    harness.ctx.options = Options(posting_timeout=timedelta(minutes=15), in_doubt_quiet=timedelta(seconds=30))
    harness.erp.script.append(OutcomeUnknown("timed out", api="fake"))  # nothing stored

    looks: list[float] = []
    outcome = post_one(harness.ctx, row.id)
    while outcome.outcome == "in_doubt":
        assert outcome.retry_in is not None
        looks.append(outcome.retry_in)
        harness.advance(outcome.retry_in)
        outcome = post_one(harness.ctx, row.id)

    # Lookups 2, 4, 8 s apart, then at the end of the 30 s quiet period (2 + 4 + 8 + 16).
    assert looks == [2.0, 4.0, 8.0, 16.0]
    assert outcome.outcome == "posted"
    calls = [m for m, k in harness.erp.calls if k == row.zuora_number]
    assert calls == ["create_invoice"] + ["find_document"] * 4 + ["create_invoice"]
    assert harness.erp.count("invoice", row.zuora_number) == 1


def test_an_erp_error_answer_not_found_is_created_again_at_the_first_lookup(harness):
    row = _invoice_rows(harness)[0]
    post_one(harness.ctx, harness.record("account", row.account_id).id)
    # The ERP answered 500: it has finished with the request, so no quiet period is needed.
    harness.erp.script.append(OutcomeUnknown("HTTP 500", api="fake", status=500))

    first = post_one(harness.ctx, row.id)
    assert (first.outcome, first.retry_in) == ("in_doubt", 2.0)
    harness.advance(2)
    assert post_one(harness.ctx, row.id).outcome == "posted"
    calls = [m for m, k in harness.erp.calls if k == row.zuora_number]
    assert calls == ["create_invoice", "find_document", "create_invoice"]
    assert harness.erp.count("invoice", row.zuora_number) == 1


def test_a_failed_lookup_holds_the_row_for_another_lookup(harness, monkeypatch):
    row = _invoice_rows(harness)[0]
    post_one(harness.ctx, harness.record("account", row.account_id).id)
    harness.erp.script.append("commit-then-unknown")
    assert post_one(harness.ctx, row.id).outcome == "in_doubt"
    lookup = harness.erp.find_document
    monkeypatch.setattr(
        harness.erp, "find_document", lambda *a, **k: (_ for _ in ()).throw(Transient("502", api="fake"))
    )
    harness.advance(2)

    outcome = post_one(harness.ctx, row.id)

    assert (outcome.outcome, outcome.retry_in) == ("in_doubt", 4.0)  # twice the wait before
    assert "lookup failed" in harness.record("invoice", row.zuora_id).last_error
    monkeypatch.setattr(harness.erp, "find_document", lookup)
    harness.advance(4)
    assert post_one(harness.ctx, row.id).outcome == "posted"
    assert harness.erp.count("invoice", row.zuora_number) == 1


def _in_doubt_invoice(harness: ItemHarness):
    """An invoice (its customer posted) left ``posting`` by a worker that died, past its timeout."""
    row = _invoice_rows(harness)[0]
    post_one(harness.ctx, harness.record("account", row.account_id).id)
    with harness.ledger.session() as session:
        begin_posting(session, row.id, now=harness.clock.dt())  # a worker died right after this commit
    harness.advance(16 * 60)
    return row


def test_in_doubt_row_not_in_the_erp_is_posted_again_once(harness):
    row = _in_doubt_invoice(harness)

    outcome = post_one(harness.ctx, row.id)

    assert outcome.outcome == "posted"
    assert [m for m, k in harness.erp.calls if k == row.zuora_number] == ["find_document", "create_invoice"]
    assert harness.erp.count("invoice", row.zuora_number) == 1


def test_a_row_another_worker_claims_again_during_the_lookup_is_left_to_it(harness, monkeypatch):
    row = _in_doubt_invoice(harness)
    lookup = harness.erp.find_document

    def find_while_another_worker_claims_it(*args, **kwargs):
        found = lookup(*args, **kwargs)  # not there yet
        # Meanwhile another worker looked it up too, settled it and claimed it afresh: its
        # create is on its way.
        with harness.ledger.session() as session:
            resume_in_doubt(session, row.id, found_erp_ref=None, now=harness.clock.dt())
        with harness.ledger.session() as session:
            begin_posting(session, row.id, now=harness.clock.dt())
        return found

    monkeypatch.setattr(harness.erp, "find_document", find_while_another_worker_claims_it)
    outcome = post_one(harness.ctx, row.id)

    assert outcome.outcome == "busy"
    assert harness.erp.count("invoice", row.zuora_number) == 0  # only the other worker's create is to come
    assert harness.record("invoice", row.zuora_id).state == "posting"


def test_rate_limited_create_fails_until_the_reset(harness):
    rows = _invoice_rows(harness)
    row = rows[0]
    harness.erp.script.append(RateLimited("licence", api="fake", retry_after=30))

    outcome = post_one(harness.ctx, row.id)

    after = harness.record("invoice", row.zuora_id)
    assert outcome.outcome == "failed"
    assert after.state == "failed"
    assert after.next_attempt_at == harness.clock.dt() + timedelta(seconds=30)
    assert post_one(harness.ctx, row.id).outcome == "failed"  # not due yet
    harness.advance(31)
    assert post_one(harness.ctx, row.id).outcome == "posted"
    assert harness.erp.count("invoice", row.zuora_number) == 1


def test_transient_error_fails_with_backoff(harness):
    row = _invoice_rows(harness)[0]
    harness.erp.script.append(Transient("connection refused", api="fake"))
    assert post_one(harness.ctx, row.id).outcome == "failed"
    assert harness.record("invoice", row.zuora_id).attempts == 1


def test_rejected_document_is_parked_after_max_rejections(harness):
    row = _invoice_rows(harness)[0]
    harness.ctx.options = Options(max_rejections=2)
    harness.erp.script.extend([Rejected("period closed", api="fake"), Rejected("period closed", api="fake")])

    assert post_one(harness.ctx, row.id).outcome == "failed"
    harness.advance(7 * 3600)
    assert post_one(harness.ctx, row.id).outcome == "parked"
    parked = harness.record("invoice", row.zuora_id)
    assert parked.state == "parked"
    assert "refused it 2 times" in parked.last_error


def test_two_workers_posting_one_row_create_it_once(harness):
    row = _invoice_rows(harness)[0]
    post_one(harness.ctx, harness.record("account", row.account_id).id)
    barrier = threading.Barrier(4)
    outcomes = []

    def worker():
        barrier.wait()
        outcomes.append(post_one(harness.ctx, row.id).outcome)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert harness.erp.count("invoice", row.zuora_number) == 1
    assert outcomes.count("posted") >= 1
    assert set(outcomes) <= {"posted", "busy"}


def test_payment_is_applied_to_the_released_invoice_it_paid(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    h.erp.released = True  # an ERP whose documents are released on creation (the file export)
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    post_records(h.ctx, h.dispatch.post_ids)

    payment = next(
        p
        for p in h.rows("payments")
        if any(a["PaymentId"] == p["Id"] for a in h.rows("payment-applications"))
    )
    application = next(a for a in h.rows("payment-applications") if a["PaymentId"] == payment["Id"])
    invoice = h.record("invoice", application["InvoiceId"])
    applied = h.erp.applications[payment["PaymentNumber"]]
    assert [(a.natural_key, a.kind) for a in applied] == [(invoice.zuora_number, "invoice")]


def test_payment_is_posted_unapplied_when_the_erp_did_not_release_the_invoice(harness):
    pull_stream(harness.ctx, INVOICES)
    pull_stream(harness.ctx, PAYMENTS)
    post_records(harness.ctx, harness.dispatch.post_ids)

    applied_payments = {a["PaymentId"] for a in harness.rows("payment-applications")}
    payment = next(p for p in harness.rows("payments") if p["Id"] in applied_payments)
    row = harness.record("payment", payment["Id"])
    assert row.state == "posted"
    assert harness.erp.applications[payment["PaymentNumber"]] == ()
    assert row.posted_payload["not_applied"][0]["reason"] == "not released in the ERP"


def test_payment_posts_its_pending_invoice_first(harness):
    pull_stream(harness.ctx, INVOICES)
    pull_stream(harness.ctx, PAYMENTS)
    payments = [harness.record("payment", p["Id"]).id for p in harness.rows("payments")]

    post_records(harness.ctx, payments)

    application = harness.rows("payment-applications")[0]
    assert harness.record("invoice", application["InvoiceId"]).state == "posted"


def test_a_document_posted_first_as_a_dependency_is_sent_to_be_marked(harness):
    # Its own batch found it busy (or has not run): only the row that posted it can ask for marking.
    pull_stream(harness.ctx, INVOICES)
    pull_stream(harness.ctx, PAYMENTS)
    payments = [harness.record("payment", p["Id"]).id for p in harness.rows("payments")]
    harness.dispatch.marked.clear()

    post_records(harness.ctx, payments)

    assert {"invoices", "payments"} <= set(harness.dispatch.marked)


def test_payment_waits_for_an_invoice_whose_post_failed_instead_of_posting_without_it(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, options=Options(release=True))
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    application = h.rows("payment-applications")[0]
    invoice = h.record("invoice", application["InvoiceId"])
    payment = h.record("payment", application["PaymentId"])
    post_one(h.ctx, h.record("account", invoice.account_id).id)
    h.erp.script.append(RateLimited("licence", api="fake", retry_after=30))
    assert post_one(h.ctx, invoice.id).outcome == "failed"  # its retry is due in 30 s

    waiting = post_one(h.ctx, payment.id)

    assert waiting.outcome == "waiting"
    assert "its last post failed" in (waiting.detail or "")
    assert waiting.retry_in is not None and 29 <= waiting.retry_in <= 31
    assert h.record("payment", payment.zuora_id).state == "pending"
    h.advance(31)
    assert post_one(h.ctx, payment.id).outcome == "posted"  # the invoice is posted first
    assert h.record("invoice", invoice.zuora_id).state == "posted"
    applied = h.erp.applications[payment.zuora_number]
    assert [(a.natural_key, a.kind) for a in applied][:1] == [(invoice.zuora_number, "invoice")]
    assert h.record("payment", payment.zuora_id).posted_payload["not_applied"] == []


def test_payment_waits_briefly_for_an_invoice_the_ledger_has_not_seen(harness):
    pull_stream(harness.ctx, PAYMENTS)  # the invoices stream has not run yet
    applied = {a["PaymentId"] for a in harness.rows("payment-applications")}
    payment = next(p for p in harness.rows("payments") if p["Id"] in applied)
    row = harness.record("payment", payment["Id"])

    outcome = post_one(harness.ctx, row.id)

    assert outcome.outcome == "waiting"
    assert outcome.retry_in is not None
    harness.advance(3600)  # past apply_wait: posted without the application
    assert post_one(harness.ctx, row.id).outcome == "posted"
    left_out = harness.record("payment", payment["Id"]).posted_payload["not_applied"]
    assert left_out[0]["reason"] == "invoice not in the ledger"


def test_waiting_rows_are_dispatched_again_with_a_countdown(harness):
    pull_stream(harness.ctx, PAYMENTS)
    harness.dispatch.posted.clear()
    applied = {a["PaymentId"] for a in harness.rows("payment-applications")}
    ids = [harness.record("payment", p["Id"]).id for p in harness.rows("payments") if p["Id"] in applied]

    post_records(harness.ctx, ids)

    assert harness.dispatch.posted
    assert all(countdown > 0 for _, countdown in harness.dispatch.posted)
    assert sorted(i for batch, _ in harness.dispatch.posted for i in batch) == sorted(ids)


def test_credit_memo_applies_to_released_invoices(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, sizes=replace(SMALL, credit_memos=30))
    h.erp.released = True
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, CREDIT_MEMOS)
    post_records(h.ctx, h.dispatch.post_ids)
    applications = h.rows("credit-memo-applications")
    memo = h.record("credit_memo", applications[0]["CreditMemoId"])
    assert memo.state == "posted"
    assert [a.kind for a in h.erp.applications[memo.zuora_number]] == ["invoice"]


def test_account_rows_go_straight_to_marked(harness):
    pull_stream(harness.ctx, ACCOUNTS)
    post_records(harness.ctx, harness.dispatch.post_ids)
    assert {k: v for k, v in harness.states().items()} == {
        ("account", "marked"): len(harness.rows("accounts"))
    }


def test_release_option_releases_each_document(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, options=Options(release=True))
    row = _invoice_rows(h)[0]
    post_one(h.ctx, row.id)
    assert ("release", h.record("invoice", row.zuora_id).erp_ref) in h.erp.calls
    assert h.record("invoice", row.zuora_id).erp_released is True


def test_payment_does_not_wait_for_an_invoice_the_invoice_pull_did_not_bring(harness):
    pull_stream(harness.ctx, PAYMENTS)
    applied = {a["PaymentId"] for a in harness.rows("payment-applications")}
    payment = next(p for p in harness.rows("payments") if p["Id"] in applied)
    row = harness.record("payment", payment["Id"])
    invoice_id = next(
        a["InvoiceId"] for a in harness.rows("payment-applications") if a["PaymentId"] == payment["Id"]
    )
    harness.advance(1)
    # the invoices stream runs completely after the payment arrived, and its invoice is not there
    harness.ledger.advance_mark(harness.connection, "invoices", harness.later(3600))
    pull_stream(harness.ctx, INVOICES, since=harness.later(3600))
    assert harness.ledger.get_record(harness.connection, "invoice", invoice_id) is None

    outcome = post_one(harness.ctx, row.id)

    assert outcome.outcome == "posted"
    (left_out,) = harness.record("payment", payment["Id"]).posted_payload["not_applied"]
    assert left_out["target"] == invoice_id and left_out["reason"] == "invoice not in the ledger"
    assert (left_out["object_type"], left_out["zuora_id"]) == ("invoice", invoice_id)


def test_batches_posted_at_once_share_the_process_posting_threads(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, options=Options(erp_concurrency=3))
    rows = _invoice_rows(h)
    for account in {r.account_id for r in rows}:  # no batch waits for another's customer
        post_one(h.ctx, h.record("account", account).id)
    seen: set[threading.Thread] = set()
    create = h.erp.create_document

    def noting_thread(doc):
        seen.add(threading.current_thread())
        return create(doc)

    h.erp.create_document = noting_thread
    batches = [[r.id for r in rows[i::4]] for i in range(4)]
    errors: list[BaseException] = []

    def task(ids):
        try:
            post_records(h.ctx, ids)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=task, args=(ids,)) for ids in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert not errors and not any(t.is_alive() for t in threads)
    assert all(h.erp.count("invoice", r.zuora_number) == 1 for r in rows)
    # Four batches at once, three posting threads between them (not three per batch).
    assert len(batches[0]) >= 2 and seen
    assert len(seen) <= 3 and all(t.name.startswith("post") for t in seen)
    assert posting_threads(3) is posting_threads(3)


def test_a_ledger_error_in_a_batch_is_raised_after_every_row_of_its_level_finished(
    tmp_path, fake_redis, monkeypatch
):
    h = ItemHarness(tmp_path, fake_redis, options=Options(erp_concurrency=3))
    rows = _invoice_rows(h)
    for account in {r.account_id for r in rows}:
        post_one(h.ctx, h.record("account", account).id)
    failing = rows[0].id
    finished: list[int] = []
    real = posting.post_one

    def post(ctx, record_id, **kwargs):
        if record_id == failing:
            raise LedgerError("the ledger went away")
        outcome = real(ctx, record_id, **kwargs)
        finished.append(record_id)
        return outcome

    monkeypatch.setattr(posting, "post_one", post)
    with pytest.raises(LedgerError):
        post_records(h.ctx, [r.id for r in rows])
    assert sorted(finished) == sorted(r.id for r in rows[1:])


def _paid_invoice(h: ItemHarness) -> tuple[dict, dict]:
    """A payment of the sandbox applied to one invoice, and that invoice (Zuora rows)."""
    application = next(a for a in h.rows("payment-applications") if a.get("InvoiceId"))
    payment = next(p for p in h.rows("payments") if p["Id"] == application["PaymentId"])
    invoice = next(i for i in h.rows("invoices") if i["Id"] == application["InvoiceId"])
    return payment, invoice


def test_a_failed_release_is_tried_again_before_a_payment_applies_to_the_document(tmp_path, fake_redis):
    # Acumatica applies a payment only to a released invoice: posted without it, the application
    # would be lost for good and the invoice would stay open in AR.
    h = ItemHarness(tmp_path, fake_redis, options=Options(release=True, erp_concurrency=1))
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    payment, invoice = _paid_invoice(h)
    h.erp.release_failures = 1
    post_one(h.ctx, h.record("invoice", invoice["Id"]).id)
    assert h.record("invoice", invoice["Id"]).erp_released is False  # created, its release failed

    post_one(h.ctx, h.record("payment", payment["Id"]).id)

    invoice_row = h.record("invoice", invoice["Id"])
    assert (invoice_row.state, invoice_row.erp_released) == ("posted", True)
    assert h.erp.calls.count(("release", invoice_row.erp_ref)) == 2
    applied = h.erp.applications[payment["PaymentNumber"]]
    assert [(a.natural_key, a.kind) for a in applied if a.natural_key == invoice["InvoiceNumber"]] == [
        (invoice["InvoiceNumber"], "invoice")
    ]
    assert h.record("payment", payment["Id"]).state == "posted"


def test_a_payment_waits_while_the_document_it_applies_to_cannot_be_released(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, options=Options(release=True, erp_concurrency=1))
    pull_stream(h.ctx, INVOICES)
    pull_stream(h.ctx, PAYMENTS)
    payment, invoice = _paid_invoice(h)
    h.erp.release_failures = 2
    post_one(h.ctx, h.record("invoice", invoice["Id"]).id)

    outcome = post_one(h.ctx, h.record("payment", payment["Id"]).id)

    row = h.record("payment", payment["Id"])
    assert (row.state, row.erp_ref) == ("pending", None)
    assert "to be released in the ERP" in (row.last_error or "")
    assert outcome.outcome == "waiting"
    assert ("create_payment", payment["PaymentNumber"]) not in h.erp.calls


def test_a_closed_erp_period_parks_at_once_with_what_to_do(harness):
    row = _invoice_rows(harness)[0]
    harness.erp.script.append(
        ClosedPeriod(
            "invoice INV1: Acumatica's financial period 2025-06 takes no postings; open it in Acumatica "
            "and replay the record, or set the connection's closed-period rule to next_open",
            period="2025-06",
            api="fake",
            status=422,
        )
    )

    outcome = post_one(harness.ctx, row.id)

    parked = harness.record("invoice", row.zuora_id)
    assert outcome.outcome == "parked" and parked.state == "parked"
    assert "open it in Acumatica and replay the record" in parked.last_error
    assert parked.attempts <= 1  # not tried again and again: only a person changes the answer


def test_what_the_erp_did_differently_is_in_the_records_timeline(harness, monkeypatch):
    row = _invoice_rows(harness)[0]
    create = harness.erp.create_document

    def moved(doc):
        ref = create(doc)
        return replace(ref, note="posted in 2025-07: its own period 2025-06 is closed in Acumatica")

    monkeypatch.setattr(harness.erp, "create_document", moved)
    post_one(harness.ctx, harness.record("account", row.account_id).id)

    assert post_one(harness.ctx, row.id).outcome == "posted"

    trail = [e.message or "" for e in harness.ledger.timeline(row.subject)]
    assert any(m.endswith("posted in 2025-07: its own period 2025-06 is closed in Acumatica") for m in trail)


def test_a_dependency_left_in_doubt_is_sent_to_be_looked_up_when_due(harness):
    # The payment posts its invoice first; the invoice's answer is lost. Its own batch finds it
    # busy and sends nothing, so the payment's post must: else both wait until the posting timeout.
    pull_stream(harness.ctx, INVOICES)
    pull_stream(harness.ctx, PAYMENTS)
    application = harness.rows("payment-applications")[0]
    invoice = harness.record("invoice", application["InvoiceId"])
    post_one(harness.ctx, harness.record("account", invoice.account_id).id)
    harness.erp.script.append(OutcomeUnknown("HTTP 500", api="fake", status=500))
    harness.dispatch.posted.clear()

    post_one(harness.ctx, harness.record("payment", application["PaymentId"]).id)

    assert harness.record("invoice", invoice.zuora_id).state == "posting"  # in doubt
    assert ([invoice.id], 2.0) in harness.dispatch.posted
    assert post_one(harness.ctx, invoice.id).outcome == "busy"  # what its own batch finds meanwhile
