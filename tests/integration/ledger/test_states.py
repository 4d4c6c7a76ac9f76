"""The sync-record state machine against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from sqlmodel import Session, select

from shared.ledger import states
from shared.ledger.errors import IllegalTransition, RecordNotFound, TransitionConflict
from shared.ledger.models import AuditEvent, SyncRecord
from shared.ledger.repo import Ledger

CONN = "acme"
T0 = datetime(2024, 12, 31, 23, 0, tzinfo=UTC)
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
_ids = count(1)


def _pull(
    session: Session, zuora_id: str | None = None, updated: datetime = T0, **overrides
) -> tuple[SyncRecord, bool]:
    zuora_id = zuora_id or f"8ad0{next(_ids):04d}"
    kwargs: dict[str, Any] = {
        "connection": CONN,
        "object_type": "invoice",
        "zuora_id": zuora_id,
        "zuora_number": f"INV-{zuora_id}",
        "zuora_updated": updated,
        "payload": {"id": zuora_id, "amount": Decimal("100.10")},
        "account_id": "acc1",
        "source": "pull",
        "now": NOW,
    }
    kwargs.update(overrides)
    return states.upsert_pulled(session, **kwargs)


# How to bring a fresh record into each state, using only legal transitions.
SETUP: dict[str, list[Callable[[Session, SyncRecord], object]]] = {
    "pending": [],
    "posting": [states.begin_posting],
    "posted": [
        states.begin_posting,
        lambda s, r: states.complete_posting(s, r, erp_ref="AR-1"),
    ],
    "marked": [
        states.begin_posting,
        lambda s, r: states.complete_posting(s, r, erp_ref="AR-1"),
        states.mark_transferred,
    ],
    "failed": [lambda s, r: states.fail(s, r, "boom")],
    "parked": [lambda s, r: states.park(s, r, "unmapped account")],
}


def _record_in(ledger: Ledger, state: str) -> int:
    with ledger.session() as s:
        rec, _ = _pull(s)
        for step in SETUP[state]:
            step(s, rec)
        assert rec.state == state
        assert rec.id is not None
        return rec.id


ACTIONS: dict[str, Callable[[Session, int], SyncRecord]] = {
    "begin_posting": states.begin_posting,
    "begin_posting_force": lambda s, i: states.begin_posting(s, i, force=True),
    "complete_posting": lambda s, i: states.complete_posting(s, i, erp_ref="AR-9"),
    "mark_transferred": states.mark_transferred,
    "fail": lambda s, i: states.fail(s, i, "timeout"),
    "park": lambda s, i: states.park(s, i, "missing customer"),
    "retry": states.retry,
    "replay": states.replay,
    "resume_in_doubt_found": lambda s, i: states.resume_in_doubt(s, i, found_erp_ref="AR-7"),
    "resume_in_doubt_not_found": lambda s, i: states.resume_in_doubt(s, i, found_erp_ref=None),
    "hold_in_doubt": lambda s, i: states.hold_in_doubt(s, i, look_at=T0, reason="answer lost"),
}

# action -> {from state: resulting state}; every state not listed must be refused.
EXPECTED: dict[str, dict[str, str]] = {
    "begin_posting": {"pending": "posting"},
    "begin_posting_force": {"pending": "posting", "posted": "posting", "marked": "posting"},
    "complete_posting": {"posting": "posted"},
    "mark_transferred": {"posted": "marked"},
    "fail": {"pending": "failed", "posting": "failed"},
    "park": {"pending": "parked", "posting": "parked", "failed": "parked"},
    "retry": {"failed": "pending"},
    "replay": {"failed": "pending", "parked": "pending"},
    "resume_in_doubt_found": {"posting": "posted"},
    "resume_in_doubt_not_found": {"posting": "pending"},
    "hold_in_doubt": {"posting": "posting"},
}


def _snapshot(ledger: Ledger, record_id: int) -> dict[str, object]:
    rec = ledger.get_record_by_id(record_id)
    assert rec is not None
    return rec.model_dump()


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_action_from_every_state_follows_the_table(ledger, action):
    for state in states.STATES:
        record_id = _record_in(ledger, state)
        expected = EXPECTED[action].get(state)
        if expected is None:
            before = _snapshot(ledger, record_id)
            with pytest.raises(IllegalTransition), ledger.session() as s:
                ACTIONS[action](s, record_id)
            assert _snapshot(ledger, record_id) == before, f"{action} from {state} changed the row"
        else:
            with ledger.session() as s:
                ACTIONS[action](s, record_id)
            rec = ledger.get_record_by_id(record_id)
            assert rec is not None
            assert rec.state == expected, f"{action} from {state}"
            assert ledger.timeline(rec.subject)[-1].message.startswith(f"{state} -> {expected}")


def test_refused_transition_leaves_session_object_unchanged(ledger):
    record_id = _record_in(ledger, "marked")
    with ledger.session() as s:
        rec = s.get(SyncRecord, record_id)
        with pytest.raises(IllegalTransition):
            states.begin_posting(s, rec, erp_payload={"x": 1})
        assert (rec.state, rec.erp_ref, rec.posted_payload) == ("marked", "AR-1", None)


def test_happy_path_sets_bookkeeping_and_audits_each_step(ledger):
    with ledger.session() as s:
        rec, is_new = _pull(s, "8ad0happy")
        states.begin_posting(s, rec, erp_payload={"Type": {"value": "Invoice"}}, now=NOW)
    assert is_new
    posting = ledger.get_record(CONN, "invoice", "8ad0happy")
    assert (posting.state, posting.next_attempt_at) == ("posting", NOW + states.POSTING_TIMEOUT)
    assert posting.posted_payload == {"Type": {"value": "Invoice"}}

    later = NOW + timedelta(seconds=3)
    with ledger.session() as s:
        states.complete_posting(s, posting.id, erp_ref="AR004512", released=True, now=later)
        states.mark_transferred(s, posting.id, now=later + timedelta(seconds=1))

    rec = ledger.get_record(CONN, "invoice", "8ad0happy")
    assert (rec.state, rec.erp_ref, rec.erp_released, rec.attempts, rec.last_error) == (
        "marked",
        "AR004512",
        True,
        0,
        None,
    )
    assert (rec.posted_at, rec.marked_at, rec.next_attempt_at) == (later, later + timedelta(seconds=1), None)
    assert [(e.kind, e.message) for e in ledger.timeline("invoice:8ad0happy")] == [
        ("transition", "new -> pending (pull)"),
        ("transition", "pending -> posting"),
        ("transition", "posting -> posted: erp_ref AR004512"),
        ("transition", "posted -> marked"),
    ]


def test_complete_posting_without_erp_ref_is_refused(ledger):
    record_id = _record_in(ledger, "posting")
    with pytest.raises(IllegalTransition, match="needs the ERP reference"), ledger.session() as s:
        states.complete_posting(s, record_id, erp_ref=" ")
    assert ledger.get_record_by_id(record_id).state == "posting"


def test_fail_counts_attempts_and_sets_retry_time(ledger):
    record_id = _record_in(ledger, "pending")
    retry_at = NOW + timedelta(minutes=7)
    with ledger.session() as s:
        states.fail(s, record_id, "503 from ERP", retry_at=retry_at, now=NOW)
        states.retry(s, record_id, now=NOW + timedelta(minutes=8))
        states.begin_posting(s, record_id)
        states.fail(s, record_id, "503 again", now=NOW)

    rec = ledger.get_record_by_id(record_id)
    assert (rec.state, rec.attempts, rec.last_error) == ("failed", 2, "503 again")
    # Second failure: exponential backoff (60 s doubling) with full jitter and a 30 s floor.
    assert NOW + timedelta(seconds=30) <= rec.next_attempt_at <= NOW + timedelta(seconds=120)


def test_retry_keeps_attempts_but_replay_resets_them(ledger):
    a, b = _record_in(ledger, "failed"), _record_in(ledger, "failed")
    with ledger.session() as s:
        states.retry(s, a)
        states.replay(s, b, reason="ERP was down")
    assert (ledger.get_record_by_id(a).attempts, ledger.get_record_by_id(a).last_error) == (1, "boom")
    assert (ledger.get_record_by_id(b).attempts, ledger.get_record_by_id(b).last_error) == (0, None)
    assert (
        ledger.timeline(ledger.get_record_by_id(b).subject)[-1].message
        == "failed -> pending: replay: ERP was down"
    )


def test_park_records_reason_and_takes_row_off_the_sweep(ledger):
    record_id = _record_in(ledger, "posting")
    with ledger.session() as s:
        states.park(s, record_id, "unmapped GL code 4000")
    rec = ledger.get_record_by_id(record_id)
    assert (rec.state, rec.last_error, rec.next_attempt_at) == ("parked", "unmapped GL code 4000", None)


def test_resume_in_doubt_refuses_posting_row_with_erp_ref_and_other_states(ledger):
    record_id = _record_in(ledger, "posted")
    with pytest.raises(IllegalTransition, match="is not in doubt"), ledger.session() as s:
        states.resume_in_doubt(s, record_id, found_erp_ref="AR-1")


def test_hold_in_doubt_keeps_the_first_recreate_time_and_leaving_posting_forgets_it(ledger):
    record_id = _record_in(ledger, "posting")
    first, later = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    quiet_end = first + timedelta(minutes=2)
    with ledger.session() as s:
        states.hold_in_doubt(
            s,
            record_id,
            look_at=first + timedelta(seconds=2),
            reason="timed out",
            recreate_after=quiet_end,
            now=first,
        )
    with ledger.session() as s:
        states.hold_in_doubt(s, record_id, look_at=later + timedelta(seconds=4), reason="not yet", now=later)
    rec = ledger.get_record_by_id(record_id)
    assert (rec.state, rec.recreate_after, rec.next_attempt_at) == (
        "posting",
        quiet_end,
        later + timedelta(seconds=4),
    )
    assert rec.last_error == "in doubt: not yet"
    assert any("in doubt: timed out; look it up at" in e.message for e in ledger.timeline(rec.subject))
    with ledger.session() as s:
        states.resume_in_doubt(s, record_id, found_erp_ref="AR-5", now=later)
    assert ledger.get_record_by_id(record_id).recreate_after is None


def test_hold_in_doubt_refuses_a_posting_row_with_an_erp_ref(ledger):
    record_id = _record_in(ledger, "posted")
    with pytest.raises(IllegalTransition, match="not in doubt"), ledger.session() as s:
        states.hold_in_doubt(s, record_id, look_at=T0, reason="x")


def test_resume_in_doubt_found_records_the_erp_ref(ledger):
    record_id = _record_in(ledger, "posting")
    later = datetime.now(UTC) + timedelta(minutes=20)  # after the posting timeout
    with ledger.session() as s:
        states.resume_in_doubt(s, record_id, found_erp_ref="AR000077", now=later)
    rec = ledger.get_record_by_id(record_id)
    assert (rec.state, rec.erp_ref, rec.posted_at) == ("posted", "AR000077", later)
    assert (
        ledger.timeline(rec.subject)[-1].message
        == "posting -> posted: in doubt; found in the ERP as AR000077"
    )


def test_forced_repost_forgets_previous_erp_ref(ledger):
    record_id = _record_in(ledger, "marked")
    with ledger.session() as s:
        states.begin_posting(s, record_id, force=True)
    rec = ledger.get_record_by_id(record_id)
    assert (rec.state, rec.erp_ref, rec.erp_released) == ("posting", None, False)
    assert (
        ledger.timeline(rec.subject)[-1].message == "marked -> posting: forced re-post; previous erp_ref AR-1"
    )


def test_reschedule_defers_without_changing_state(ledger):
    record_id = _record_in(ledger, "posted")
    now = datetime.now(UTC) + timedelta(seconds=1)
    retry_at = now + timedelta(minutes=2)
    with ledger.session() as s:
        states.reschedule(s, record_id, retry_at=retry_at, error="429 while marking", now=now)
    rec = ledger.get_record_by_id(record_id)
    assert (rec.state, rec.next_attempt_at, rec.last_error) == ("posted", retry_at, "429 while marking")
    last = ledger.timeline(rec.subject)[-1]
    assert (last.kind, last.message) == (
        "note",
        f"posted: next attempt at {retry_at.isoformat()}: 429 while marking",
    )


def test_reschedule_pending_defers_the_rows_still_pending_without_reading_them(ledger):
    waiting = [_record_in(ledger, "pending") for _ in range(3)]
    moved_on = _record_in(ledger, "posting")  # listed as pending, then a worker began posting it
    other_connection = _record_in(ledger, "pending")
    with ledger.session() as s:
        s.exec(select(SyncRecord).where(SyncRecord.id == other_connection)).one().connection = "other"
    before = {i: ledger.get_record_by_id(i).version for i in [*waiting, moved_on]}
    now = datetime.now(UTC) + timedelta(seconds=1)
    retry_at = now + timedelta(minutes=5)
    subjects = {i: ledger.get_record_by_id(i).subject for i in [*waiting, moved_on, other_connection]}

    with ledger.session() as s:
        done = states.reschedule_pending(s, CONN, subjects, retry_at=retry_at, now=now)

    assert done == sorted(waiting)
    for record_id in waiting:
        rec = ledger.get_record_by_id(record_id)
        assert (rec.state, rec.next_attempt_at, rec.version) == ("pending", retry_at, before[record_id] + 1)
        last = ledger.timeline(rec.subject)[-1]
        assert (last.kind, last.message) == ("note", f"pending: next attempt at {retry_at.isoformat()}")
    untouched = ledger.get_record_by_id(moved_on)
    assert (untouched.state, untouched.version) == ("posting", before[moved_on])
    assert ledger.get_record_by_id(other_connection).next_attempt_at != retry_at
    with ledger.session() as s:
        assert states.reschedule_pending(s, CONN, {}, retry_at=retry_at) == []


@pytest.mark.parametrize("state", ["posting", "marked", "parked"])
def test_reschedule_refuses_in_flight_and_final_states(ledger, state):
    record_id = _record_in(ledger, state)
    with (
        pytest.raises(IllegalTransition, match=f"cannot reschedule .* in state {state}"),
        ledger.session() as s,
    ):
        states.reschedule(s, record_id, retry_at=NOW)


def test_transition_on_missing_id_raises_record_not_found(ledger):
    with pytest.raises(RecordNotFound, match="no sync record with id 999999"), ledger.session() as s:
        states.begin_posting(s, 999999)


def test_concurrent_begin_posting_lets_exactly_one_worker_win(ledger):
    record_id = _record_in(ledger, "pending")
    stale = ledger.get_record_by_id(record_id)  # worker 2 read the row while it was pending
    assert stale.state == "pending"
    with ledger.session() as first:
        states.begin_posting(first, record_id)
    with pytest.raises(TransitionConflict, match="changed by another worker"), ledger.session() as second:
        states.begin_posting(second, stale)
    rec = ledger.get_record_by_id(record_id)
    assert (rec.state, rec.version) == ("posting", 2)
    assert [e.message for e in ledger.timeline(rec.subject)].count("pending -> posting") == 1


def test_detached_record_from_ledger_can_transition_in_new_session(ledger):
    record_id = _record_in(ledger, "pending")
    detached = ledger.get_record_by_id(record_id)
    with ledger.session() as s:
        states.begin_posting(s, detached)
    assert ledger.get_record_by_id(record_id).state == "posting"


# -- upsert_pulled ----------------------------------------------------------------------------


def test_upsert_pulled_creates_pending_row_with_exact_payload(ledger):
    with ledger.session() as s:
        _rec, is_new = _pull(s, "8ad0new", period_name=None)
    assert is_new
    row = ledger.get_record(CONN, "invoice", "8ad0new")
    assert row.model_dump(exclude={"id", "created_at", "updated_at"}) == {
        "connection": CONN,
        "object_type": "invoice",
        "zuora_id": "8ad0new",
        "zuora_number": "INV-8ad0new",
        "account_id": "acc1",
        "zuora_updated": T0,
        "state": "pending",
        "attempts": 0,
        "last_error": None,
        "erp_ref": None,
        "erp_released": False,
        "next_attempt_at": NOW + states.PENDING_GRACE,
        "source": "pull",
        "period_name": None,
        "close_run_id": None,
        "payload": {"id": "8ad0new", "amount": Decimal("100.10")},
        "posted_payload": None,
        "version": 1,
        "posted_at": None,
        "marked_at": None,
        "recreate_after": None,
        "content_digest": None,
        "changed_at": None,
        "change_note": None,
    }
    assert isinstance(row.payload["amount"], Decimal)


def test_upsert_pulled_same_id_and_updated_is_a_duplicate(ledger):
    with ledger.session() as s:
        _pull(s, "8ad0dup")
    with ledger.session() as s:
        _rec, is_new = _pull(s, "8ad0dup", payload={"id": "8ad0dup", "amount": Decimal("1")})
    assert not is_new
    row = ledger.get_record(CONN, "invoice", "8ad0dup")
    assert (row.payload["amount"], row.version) == (Decimal("100.10"), 1)


def test_upsert_pulled_newer_version_refreshes_payload_not_state(ledger):
    with ledger.session() as s:
        rec, _ = _pull(s, "8ad0newer")
        states.fail(s, rec, "ERP down")
    newer = T0 + timedelta(hours=1)
    with ledger.session() as s:
        _, is_new = _pull(
            s, "8ad0newer", updated=newer, payload={"id": "8ad0newer", "amount": Decimal("5.00")}
        )
    row = ledger.get_record(CONN, "invoice", "8ad0newer")
    assert (is_new, row.state, row.attempts, row.zuora_updated, row.payload["amount"]) == (
        False,
        "failed",
        1,
        newer,
        Decimal("5.00"),
    )


def test_upsert_pulled_older_version_is_ignored(ledger):
    with ledger.session() as s:
        _pull(s, "8ad0old", updated=T0)
    with ledger.session() as s:
        _pull(s, "8ad0old", updated=T0 - timedelta(minutes=1), payload={"stale": True})
    row = ledger.get_record(CONN, "invoice", "8ad0old")
    assert (row.zuora_updated, row.payload) == (T0, {"id": "8ad0old", "amount": Decimal("100.10")})


@pytest.mark.parametrize("state", ["posted", "marked"])
def test_upsert_pulled_after_marking_bumped_updated_does_not_repost(ledger, state):
    # Marking transferredToAccounting bumps Zuora's updatedDate, so the next pull sees it again.
    with ledger.session() as s:
        rec, _ = _pull(s, f"8ad0{state}")
        for step in SETUP[state]:
            step(s, rec)
    with ledger.session() as s:
        _, is_new = _pull(s, f"8ad0{state}", updated=T0 + timedelta(minutes=5))
    row = ledger.get_record(CONN, "invoice", f"8ad0{state}")
    assert (is_new, row.state, row.erp_ref, row.zuora_updated) == (
        False,
        state,
        "AR-1",
        T0 + timedelta(minutes=5),
    )


def test_upsert_pulled_same_id_other_object_type_is_another_record(ledger):
    with ledger.session() as s:
        _, first = _pull(s, "8ad0same")
        _, second = _pull(s, "8ad0same", object_type="payment")
    assert (first, second) == (True, True)


def test_upsert_pulled_from_two_sessions_creates_one_row(ledger):
    with ledger.session() as a, ledger.session() as b:
        _, a_new = _pull(a, "8ad0race")
        a.commit()
        _, b_new = _pull(b, "8ad0race")
    assert (a_new, b_new) == (True, False)
    with ledger.session() as s:
        rows = s.exec(select(SyncRecord).where(SyncRecord.zuora_id == "8ad0race")).all()
        created = s.exec(select(AuditEvent).where(AuditEvent.subject == "invoice:8ad0race")).all()
    assert (len(rows), [e.message for e in created]) == (1, ["new -> pending (pull)"])


def test_upsert_pulled_fills_close_run_fields_only_when_unset(ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    with ledger.session() as s:
        _pull(s, "8ad0je", object_type="journal_entry", source="close", zuora_updated=None)
        _, is_new = _pull(
            s, "8ad0je", object_type="journal_entry", source="close", zuora_updated=None,
            period_name="December 2024", close_run_id=run.id,
        )  # fmt: skip
    row = ledger.get_record(CONN, "journal_entry", "8ad0je")
    assert (is_new, row.period_name, row.close_run_id) == (False, "December 2024", run.id)
    assert [r.zuora_id for r in ledger.records_for_close_run(run.id)] == ["8ad0je"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("object_type", "creditmemo", "unknown object type 'creditmemo'"),
        ("source", "cron", "unknown record source"),
    ],
)
def test_upsert_pulled_refuses_unknown_vocabulary(ledger, field, value, message):
    with pytest.raises(ValueError, match=message), ledger.session() as s:
        _pull(s, **{field: value})


HOT = {
    "begin_posting": lambda s, r: states.begin_posting(s, r, erp_payload={"Type": "Invoice"}, now=NOW),
    "complete_posting": lambda s, r: states.complete_posting(s, r, erp_ref="AR-9", released=True, now=NOW),
    "mark_transferred": lambda s, r: states.mark_transferred(s, r, now=NOW),
}
HOT_FROM = {"begin_posting": "pending", "complete_posting": "posting", "mark_transferred": "posted"}


@pytest.mark.parametrize("action", sorted(HOT))
def test_a_hot_transition_by_id_writes_what_it_writes_for_a_record(ledger, action):
    by_id, by_record = _record_in(ledger, HOT_FROM[action]), _record_in(ledger, HOT_FROM[action])
    with ledger.session() as s:
        returned = HOT[action](s, by_id)
    with ledger.session() as s:
        HOT[action](s, s.get(SyncRecord, by_record))

    a, b = _snapshot(ledger, by_id), _snapshot(ledger, by_record)
    ignore = {"id", "zuora_id", "zuora_number", "payload", "created_at"}
    if action != "complete_posting":
        ignore.add("posted_at")  # set by the set-up, a moment apart
    assert {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}
    assert returned.model_dump() == a
    subject_a, subject_b = (ledger.get_record_by_id(i).subject for i in (by_id, by_record))
    lines_a, lines_b = ([e.message for e in ledger.timeline(x)] for x in (subject_a, subject_b))
    assert lines_a == lines_b
    assert any(line.startswith(f"{HOT_FROM[action]} -> {returned.state}") for line in lines_a)


def test_mark_transferred_many_marks_posted_rows_in_one_update(ledger):
    ids = [_record_in(ledger, "posted") for _ in range(3)]
    subjects = {i: ledger.get_record_by_id(i).subject for i in ids}
    now = datetime.now(UTC)  # after the set-up's audit lines, so the timeline ends with ours
    with ledger.session() as s:
        states.mark_transferred_many(s, CONN, subjects, now=now)

    for i in ids:
        rec = ledger.get_record_by_id(i)
        assert (rec.state, rec.marked_at, rec.next_attempt_at, rec.version) == ("marked", now, None, 4)
        assert ledger.timeline(rec.subject)[-1].message == "posted -> marked"


def test_mark_transferred_many_refuses_the_batch_when_a_row_is_not_posted(ledger):
    ids = [_record_in(ledger, "posted"), _record_in(ledger, "marked")]
    subjects = {i: ledger.get_record_by_id(i).subject for i in ids}
    before = [_snapshot(ledger, i) for i in ids]
    with pytest.raises(TransitionConflict), ledger.session() as s:
        states.mark_transferred_many(s, CONN, subjects, now=NOW)

    assert [_snapshot(ledger, i) for i in ids] == before
