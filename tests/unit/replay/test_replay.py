"""``replay RECORD`` and ``replay --failed``: a fixed record goes back through the posting path once;
a posted one is left alone unless forced, and forcing asks the ERP by natural key first."""

from __future__ import annotations

import pytest

from shared import replay
from shared.erp.base import ErpRef
from shared.errors import Rejected
from shared.item_level import pull_stream
from shared.item_level.streams import INVOICES
from shared.ledger import states
from tests.unit.item_level.support import ItemHarness
from tests.unit.replay.support import (
    invoice_in_state,
    paid_invoice_payment,
    post_all,
    pulled_invoices,
    remap,
    with_acumatica,
)


def _transitions(h: ItemHarness, subject: str) -> list[str]:
    return [e.message or "" for e in h.ledger.timeline(subject) if e.kind == "transition"]


def _notes(h: ItemHarness, subject: str) -> list[str]:
    return [e.message or "" for e in h.ledger.timeline(subject) if e.kind == "note"]


def test_replay_of_a_parked_record_after_the_mapping_fix_posts_it_once(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, mapping_drop=('"Subscription Revenue"',))
    pulled_invoices(h)
    post_all(h)
    parked = [
        h.record("invoice", zid)
        for zid in h.posted_ids("invoices", "Posted")
        if h.record("invoice", zid).state == "parked"
    ]
    remap(h, tmp_path)
    h.dispatch.marked.clear()

    results = replay.replay_records(h.ctx, parked[:1], reason="mapping fixed")

    after = h.record("invoice", parked[0].zuora_id)
    assert [(r.before, r.after, r.action) for r in results] == [("parked", "posted", "posted")]
    assert results[0].ok
    assert results[0].erp_ref == after.erp_ref
    assert h.erp.count("invoice", after.zuora_number) == 1
    assert (after.attempts, after.last_error) == (0, None)
    assert "parked -> pending: replay: mapping fixed" in _transitions(h, after.subject)
    assert h.dispatch.marked == ["invoices"]  # marking is handed to the workers


def test_replay_of_a_record_still_broken_parks_it_again_and_is_not_ok(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis, mapping_drop=('"Subscription Revenue"',))
    pulled_invoices(h)
    post_all(h)
    parked = next(
        h.record("invoice", zid)
        for zid in h.posted_ids("invoices", "Posted")
        if h.record("invoice", zid).state == "parked"
    )
    creates = h.erp.creates()

    (result,) = replay.replay_records(h.ctx, [parked])

    assert (result.before, result.after, result.action, result.ok) == ("parked", "parked", "parked", False)
    assert "unmapped account 'Subscription Revenue'" in (result.detail or "")
    assert h.erp.creates() == creates


def test_replay_of_a_failed_record_posts_it_now_without_waiting_for_its_backoff(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "failed")
    assert rec.next_attempt_at is not None and rec.next_attempt_at > h.clock.dt()

    (result,) = replay.replay_records(h.ctx, [rec])

    assert (result.before, result.after, result.action) == ("failed", "posted", "posted")
    assert h.erp.count("invoice", rec.zuora_number) == 1


def test_replay_of_a_pending_record_posts_it(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "pending")

    (result,) = replay.replay_records(h.ctx, [rec])

    assert (result.before, result.after, result.action) == ("pending", "posted", "posted")
    assert h.erp.count("invoice", rec.zuora_number) == 1


def test_replay_of_a_record_being_posted_leaves_it_to_its_worker(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "posting")
    calls = list(h.erp.calls)

    (result,) = replay.replay_records(h.ctx, [rec])

    assert (result.after, result.action, result.ok) == ("posting", "busy", False)
    assert h.erp.calls == calls


def test_replay_of_an_in_doubt_record_looks_it_up_before_posting(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "posting")  # the ERP has it (posted before the forced re-post died)
    h.advance(16 * 60)

    (result,) = replay.replay_records(h.ctx, [rec])

    assert (result.after, result.action) == ("posted", "posted")
    assert h.erp.count("invoice", rec.zuora_number) == 1
    assert h.erp.calls[-1] == ("find_document", rec.zuora_number)


@pytest.mark.parametrize("state", ["posted", "marked"])
def test_replay_of_a_posted_record_without_force_touches_nothing(tmp_path, fake_redis, state):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, state)
    calls, zuora = list(h.erp.calls), h.zuora_calls()

    (result,) = replay.replay_records(h.ctx, [rec])

    after = h.record("invoice", rec.zuora_id)
    assert (result.action, result.ok, after.state, after.version) == ("nothing", True, state, rec.version)
    assert result.detail == (
        f"already posted as {rec.erp_ref}; nothing done (use --force to check the ERP and post again "
        "only if it is missing)"
    )
    assert h.erp.calls == calls
    assert h.zuora_calls() == zuora
    assert _notes(h, rec.subject) == []


def test_replay_force_of_a_document_the_erp_has_records_it_and_creates_nothing(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "marked")
    creates = h.erp.creates()

    (result,) = replay.replay_records(h.ctx, [rec], force=True, reason="check")

    after = h.record("invoice", rec.zuora_id)
    assert (result.action, result.after, result.erp_ref) == ("found", "marked", rec.erp_ref)
    assert h.erp.count("invoice", rec.zuora_number) == 1
    assert h.erp.creates() == creates
    assert after.version == rec.version
    assert _notes(h, rec.subject) == [
        f"replay --force (check): the ERP has it as {rec.erp_ref}; nothing posted"
    ]


def test_replay_force_records_the_reference_the_erp_holds_when_the_ledger_differs(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "marked")
    real = h.erp.documents[("invoice", rec.zuora_number)][0]
    with h.ledger.engine.begin() as conn:  # the ledger lost track (restored from an old backup)
        conn.exec_driver_sql("UPDATE sync_record SET erp_ref = 'invoice/stale' WHERE id = ?", (rec.id,))
    rec = h.record("invoice", rec.zuora_id)
    creates = h.erp.creates()

    (result,) = replay.replay_records(h.ctx, [rec], force=True)

    after = h.record("invoice", rec.zuora_id)
    assert (result.action, after.state, after.erp_ref) == ("found", "marked", real.key)
    assert h.erp.creates() == creates
    assert _transitions(h, rec.subject)[-3:] == [
        "marked -> posting: forced re-post; previous erp_ref invoice/stale",
        f"posting -> posted: in doubt; found in the ERP as {real.key}",
        "posted -> marked",
    ]


def test_replay_force_of_a_document_missing_from_the_erp_posts_it_again_once(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "marked")
    h.erp.documents.pop(("invoice", rec.zuora_number))  # deleted in the ERP by someone
    h.dispatch.marked.clear()

    (result,) = replay.replay_records(h.ctx, [rec], force=True)

    after = h.record("invoice", rec.zuora_id)
    assert (result.before, result.action, after.state) == ("marked", "posted", "posted")
    assert h.erp.count("invoice", rec.zuora_number) == 1
    assert after.erp_ref == h.erp.documents[("invoice", rec.zuora_number)][0].key != rec.erp_ref
    assert [m for m, k in h.erp.calls if k == rec.zuora_number][-2:] == ["find_document", "create_invoice"]
    assert h.dispatch.marked == ["invoices"]  # marked in Zuora again (harmless: it says Yes already)


def test_replay_force_reports_duplicates_in_the_erp_for_a_person(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "posted")
    h.erp.documents[("invoice", rec.zuora_number)].append(h.erp.documents[("invoice", rec.zuora_number)][0])

    (result,) = replay.replay_records(h.ctx, [rec], force=True)

    assert (result.action, result.ok, h.record("invoice", rec.zuora_id).state) == (
        "duplicates",
        False,
        "posted",
    )


def test_replay_of_a_record_zuora_cancelled_leaves_it_alone(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "parked")
    h.backend.update_record("invoices", rec.zuora_id, {"Status": "Canceled"})

    (result,) = replay.replay_records(h.ctx, [rec])

    assert (result.action, result.after, result.ok) == ("not_synced", "parked", False)
    assert "status in Zuora is Canceled" in (result.detail or "")
    assert h.erp.creates() == 0


def test_replay_refreshes_the_payload_from_zuora_before_posting(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "parked")
    h.advance(60)
    h.backend.update_record("invoices", rec.zuora_id, {"Comments": "fixed in Zuora"})

    replay.replay_records(h.ctx, [rec])

    after = h.record("invoice", rec.zuora_id)
    assert after.state == "posted"
    assert after.zuora_updated is not None and after.zuora_updated > (
        rec.zuora_updated or after.zuora_updated
    )


def test_replay_failed_posts_dependencies_first_and_reports_each_record(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    payment = paid_invoice_payment(h)
    h.erp.script.extend([Rejected("period closed", api="fake")])
    post_all(h)
    failed = replay.failed_records(h.ledger, h.connection)
    assert failed

    results = replay.replay_records(h.ctx, failed)

    assert {r.action for r in results} == {"posted"}
    assert replay.failed_records(h.ledger, h.connection) == []
    assert h.record("payment", payment.zuora_id).state == "posted"


def test_failed_records_lists_failed_and_parked_of_the_chosen_streams(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rows = pulled_invoices(h)
    with h.ledger.session() as session:
        states.fail(session, rows[0].id or 0, "boom")
        states.park(session, rows[1].id or 0, "unmapped")
    pull_stream(h.ctx, INVOICES)
    expected = sorted([rows[0].id or 0, rows[1].id or 0])

    assert [r.id for r in replay.failed_records(h.ledger, h.connection)] == expected
    assert [r.id for r in replay.failed_records(h.ledger, h.connection, [INVOICES])] == expected
    from shared.item_level.streams import PAYMENTS

    assert replay.failed_records(h.ledger, h.connection, [PAYMENTS]) == []


def test_resolve_finds_a_record_by_id_number_erp_ref_or_subject(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "posted")

    for query in (rec.zuora_id, rec.zuora_number, rec.erp_ref, rec.subject):
        assert [r.id for r in replay.resolve(h.ledger, h.connection, query or "")] == [rec.id]
    assert replay.resolve(h.ledger, h.connection, "INV99999999") == []
    assert replay.resolve(h.ledger, "another-connection", rec.zuora_number or "") == []


def test_replay_force_against_acumatica_makes_no_put_when_the_document_is_there(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    acumatica = with_acumatica(h, fake_redis)
    rows = pulled_invoices(h)
    post_all(h)
    rec = h.record("invoice", rows[0].zuora_id)
    puts = acumatica.puts()

    assert replay.replay_records(h.ctx, [rec])[0].action == "nothing"
    assert replay.replay_records(h.ctx, [rec], force=True)[0].action == "found"

    assert acumatica.puts() == puts


def test_replay_force_of_a_document_voided_in_the_erp_posts_a_new_one(tmp_path, fake_redis):
    h = ItemHarness(tmp_path, fake_redis)
    rec = invoice_in_state(h, "marked")
    (kept,) = h.erp.documents[("invoice", rec.zuora_number)]
    h.erp.documents[("invoice", rec.zuora_number)] = [ErpRef(kept.kind, kept.key, True, status="Voided")]

    preview = replay.preview(h.ctx, rec, force=True)
    (result,) = replay.replay_records(h.ctx, [rec], force=True, reason="batch voided")

    assert preview.erp_found is None
    assert f"--force lookup: the ERP's {kept.key} carrying {rec.zuora_number} is voided" in preview.notes
    assert (result.action, result.after) == ("posted", "posted")
    assert h.record("invoice", rec.zuora_id).erp_ref != kept.key
    assert _notes(h, rec.subject) == [
        f"replay --force (batch voided): the ERP's {kept.key} carrying {rec.zuora_number} is voided; posting it again"
    ]
