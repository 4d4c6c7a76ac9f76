"""The Ledger repository: marks, close runs, records, audit, callouts and connections."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from shared.connections import AcumaticaTarget, Connection, FileTarget, ZuoraTarget
from shared.exchange import Exchange, audit_subject
from shared.item_level.queries import due_rows
from shared.ledger import states
from shared.ledger.errors import ConnectionExists, RecordNotFound, SecretKeyError, UnknownConnection
from shared.ledger.models import AuditEvent, CalloutNotification
from shared.ledger.repo import Ledger
from shared.ledger.secrets import SecretBox, generate_key

CONN = "acme"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


# -- stream marks -----------------------------------------------------------------------------


def test_get_mark_of_unknown_stream_is_none(ledger):
    assert ledger.get_mark(CONN, "invoices") is None
    assert ledger.get_stream(CONN, "invoices") is None


def test_advance_mark_moves_forward(ledger):
    assert ledger.advance_mark(CONN, "invoices", T0) == T0
    assert ledger.advance_mark(CONN, "invoices", T0 + timedelta(seconds=1)) == T0 + timedelta(seconds=1)
    assert ledger.get_mark(CONN, "invoices") == T0 + timedelta(seconds=1)


def test_advance_mark_never_moves_backwards(ledger):
    ledger.advance_mark(CONN, "invoices", T0)

    stored = ledger.advance_mark(CONN, "invoices", T0 - timedelta(microseconds=1))

    assert stored == T0
    assert ledger.get_mark(CONN, "invoices") == T0


def test_advance_mark_keeps_microseconds_and_converts_to_utc(ledger):
    pst = timezone(timedelta(hours=-8))

    stored = ledger.advance_mark(CONN, "payments", datetime(2024, 12, 31, 20, 0, 0, 123456, tzinfo=pst))

    assert stored == datetime(2025, 1, 1, 4, 0, 0, 123456, tzinfo=UTC)
    assert stored.tzinfo is UTC


def test_marks_are_per_connection_and_stream(ledger):
    ledger.advance_mark(CONN, "invoices", T0)
    ledger.advance_mark("other", "invoices", T0 + timedelta(days=1))
    assert ledger.get_mark(CONN, "payments") is None
    assert ledger.get_mark(CONN, "invoices") == T0


def test_stream_run_bookkeeping(ledger):
    ledger.advance_mark(CONN, "invoices", T0)
    started = ledger.start_stream_run(CONN, "invoices", now=T0 + timedelta(minutes=1))
    assert (started.mark, started.last_status, started.run_finished_at) == (T0, "running", None)

    ledger.finish_stream_run(CONN, "invoices", status="ok", pulled=120, now=T0 + timedelta(minutes=2))
    ledger.start_stream_run(CONN, "invoices", now=T0 + timedelta(minutes=3))
    done = ledger.finish_stream_run(
        CONN, "invoices", status="failed", error="429", pulled=5, now=T0 + timedelta(minutes=4)
    )
    ledger.add_missed(CONN, "invoices", by_mark=2)
    ledger.add_missed(CONN, "invoices", by_push=1)

    row = ledger.get_stream(CONN, "invoices")
    assert (done.pulled_total, done.last_status, done.last_error) == (125, "failed", "429")
    assert (row.run_started_at, row.run_finished_at) == (T0 + timedelta(minutes=3), T0 + timedelta(minutes=4))
    assert (row.missed_by_mark, row.missed_by_push, row.pulled_total, row.mark) == (2, 1, 125, T0)
    assert [s.stream for s in ledger.list_streams(CONN)] == ["invoices"]


def test_the_ledgers_reads_answer_inside_an_open_unit_of_work_of_the_same_thread(ledger):
    # On SQLite a unit of work holds the write lock from its BEGIN IMMEDIATE: a read that also
    # queued for it would wait for the very transaction that called it, then fail "database is locked".
    ledger.advance_mark(CONN, "invoices", T0)
    with ledger.session() as session:
        session.add(AuditEvent(kind="note", subject="invoice:1", message="not yet committed"))
        session.flush()
        seen = (
            [s.stream for s in ledger.list_streams(CONN)],
            ledger.get_mark(CONN, "invoices"),
            ledger.find_records(CONN, "INV-1"),
            ledger.counts_by_state(CONN),
            ledger.latest_close_runs(CONN),
            [e.message for e in ledger.timeline("invoice:1")],
        )
        with ledger.reading() as reading:
            notes = reading.exec(sa.select(AuditEvent.message).where(AuditEvent.subject == "invoice:1")).all()
    assert seen == (["invoices"], T0, [], {}, [], [])  # what was committed when each read began
    assert list(notes) == []
    assert [e.message for e in ledger.timeline("invoice:1")] == ["not yet committed"]


# -- close runs -------------------------------------------------------------------------------


def test_open_close_run_creates_then_returns_the_open_run(ledger):
    run, created = ledger.open_close_run(CONN, "December 2024", allow_closed=True)
    again, created_again = ledger.open_close_run(CONN, "December 2024")

    assert (created, created_again) == (True, False)
    assert again.id == run.id
    assert (again.status, again.step, again.allow_closed, again.dry_run, again.details) == (
        "running",
        "start",
        True,
        False,
        {},
    )


def test_only_one_open_close_run_per_period_even_when_inserted_directly(ledger):
    ledger.open_close_run(CONN, "December 2024")
    # The partial unique index backs the repository check against concurrent starts.
    with pytest.raises(sa.exc.IntegrityError), ledger.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO close_run (connection, period_name, step, status, allow_closed, dry_run,"
                " details, created_at, updated_at) VALUES (:c, 'December 2024', 'start',"
                " 'needs_attention', false, false, '{}', :t, :t)"
            ),
            {"c": CONN, "t": T0.replace(tzinfo=None)},
        )


def test_concurrent_open_close_run_creates_exactly_one(ledger):
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: ledger.open_close_run(CONN, "January 2025"), range(6)))

    assert len({run.id for run, _ in results}) == 1
    assert [created for _, created in results].count(True) == 1


def test_needs_attention_run_is_still_open(ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    ledger.update_close_run(run.id, status="needs_attention", error="entry JE-3 does not balance")

    again, created = ledger.open_close_run(CONN, "December 2024")

    assert (again.id, created, again.status) == (run.id, False, "needs_attention")


def test_finished_run_lets_a_new_run_open(ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    done = ledger.update_close_run(run.id, status="done", step="report")

    second, created = ledger.open_close_run(CONN, "December 2024")

    assert done.finished_at is not None
    assert (created, second.id != run.id) == (True, True)
    assert [r.id for r in ledger.latest_close_runs(CONN)] == [second.id, run.id]


def test_dry_run_and_real_run_are_separate(ledger):
    real, _ = ledger.open_close_run(CONN, "December 2024")
    dry, created = ledger.open_close_run(CONN, "December 2024", dry_run=True)
    assert (created, dry.id != real.id, dry.dry_run) == (True, True, True)


def test_other_period_or_connection_gets_its_own_run(ledger):
    a, _ = ledger.open_close_run(CONN, "December 2024")
    b, b_new = ledger.open_close_run(CONN, "November 2024")
    c, c_new = ledger.open_close_run("other", "December 2024")
    assert (b_new, c_new, len({a.id, b.id, c.id})) == (True, True, 3)


def test_update_close_run_merges_details_and_keeps_amounts_exact(ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    ledger.update_close_run(
        run.id, step="trial_balance", period_id="8a8a01", details_update={"tb": {"ok": True}}
    )
    updated = ledger.update_close_run(
        run.id,
        step="post_entries",
        journal_run_number="JR-00000012",
        details_update={"totals": {"debit": Decimal("1234.56"), "credit": Decimal("1234.56")}},
    )
    fetched = ledger.get_close_run(run.id)
    assert (updated.step, fetched.step, fetched.period_id, fetched.journal_run_number) == (
        "post_entries",
        "post_entries",
        "8a8a01",
        "JR-00000012",
    )
    assert fetched.details == {
        "tb": {"ok": True},
        "totals": {"debit": Decimal("1234.56"), "credit": Decimal("1234.56")},
    }


def test_update_close_run_error_unset_keeps_and_none_clears(ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    ledger.update_close_run(run.id, status="needs_attention", error="unbalanced")
    kept = ledger.update_close_run(run.id, status="running")
    cleared = ledger.update_close_run(run.id, error=None)
    assert (kept.error, kept.finished_at, cleared.error) == ("unbalanced", None, None)


def test_update_close_run_refuses_unknown_status_and_missing_run(ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    with pytest.raises(ValueError, match="unknown close status 'finished'"):
        ledger.update_close_run(run.id, status="finished")
    with pytest.raises(RecordNotFound, match="no close run with id 424242"):
        ledger.update_close_run(424242, step="x")
    with pytest.raises(RecordNotFound):
        ledger.get_close_run(424242)


# -- records ----------------------------------------------------------------------------------


def _add(
    ledger: Ledger, zuora_id: str, object_type: str = "invoice", number: str | None = None, now=None
) -> int:
    with ledger.session() as s:
        rec, _ = states.upsert_pulled(
            s,
            connection=CONN,
            object_type=object_type,
            zuora_id=zuora_id,
            zuora_number=number or f"N-{zuora_id}",
            zuora_updated=T0,
            payload={"id": zuora_id},
            account_id=None,
            source="pull",
            now=now,
        )
        assert rec.id is not None
        return rec.id


def test_find_records_by_zuora_id_number_or_erp_ref(ledger):
    a = _add(ledger, "8ad0a", number="INV-1")
    b = _add(ledger, "8ad0b", object_type="payment", number="P-1")
    with ledger.session() as s:
        states.begin_posting(s, b)
        states.complete_posting(s, b, erp_ref="PMT-77")

    assert [r.id for r in ledger.find_records(CONN, "8ad0a")] == [a]
    assert [r.id for r in ledger.find_records(CONN, "INV-1")] == [a]
    assert [r.id for r in ledger.find_records(CONN, "PMT-77")] == [b]
    assert ledger.find_records("other", "INV-1") == []


def test_due_rows_returns_overdue_rows_in_given_states_oldest_first(ledger):
    old = _add(ledger, "8ad0old", now=T0)
    newer = _add(ledger, "8ad0newer", now=T0 + timedelta(minutes=1))
    _add(ledger, "8ad0future", now=T0 + timedelta(hours=1))
    parked = _add(ledger, "8ad0parked", now=T0)
    other_type = _add(ledger, "8ad0pay", object_type="payment", now=T0)
    with ledger.session() as s:
        states.park(s, parked, "unmapped")

    now = T0 + timedelta(minutes=10)
    due = due_rows(ledger, CONN, ["pending", "posting", "failed"], ["invoice"], now=now, limit=500)
    assert [r.id for r in due] == [old, newer]
    assert (due[0].subject, due[0].state, due[0].erp_ref) == ("invoice:8ad0old", "pending", None)
    assert [r.id for r in due_rows(ledger, CONN, ["pending"], ["invoice"], now=now, limit=1)] == [old]
    assert [r.id for r in due_rows(ledger, CONN, ["pending"], ["payment"], now=now, limit=500)] == [
        other_type
    ]
    assert due_rows(ledger, CONN, ["posted"], ["invoice"], now=now, limit=500) == []


def test_counts_by_state(ledger):
    _add(ledger, "a")
    _add(ledger, "b")
    c = _add(ledger, "c", object_type="payment")
    with ledger.session() as s:
        states.fail(s, c, "x")
    assert ledger.counts_by_state(CONN) == {("invoice", "pending"): 2, ("payment", "failed"): 1}


# -- audit ------------------------------------------------------------------------------------


def _exchange(**overrides) -> Exchange:
    values: dict[str, Any] = {
        "api": "acumatica",
        "connection": CONN,
        "method": "PUT",
        "url": "https://erp.example/entity/Default/24.200.001/Invoice",
        "status": 200,
        "duration_ms": 81.5,
        "request_headers": {"Authorization": "***", "Content-Type": "application/json"},
        "request_body": '{"ReferenceNbr":{"value":"INV-1"}}',
        "response_headers": {"Content-Type": "application/json"},
        "response_body": '{"id":"abc"}',
        "request_id": "req-1",
        "attempt": 2,
        "subject": "invoice:8ad0a",
    }
    values.update(overrides)
    return Exchange(**values)


def test_record_exchange_stores_the_exchange_on_its_subject(ledger):
    ledger.record_exchange(_exchange())

    [event] = ledger.timeline("invoice:8ad0a")
    assert event.model_dump(exclude={"id", "at"}) == {
        "connection": CONN,
        "kind": "http",
        "subject": "invoice:8ad0a",
        "api": "acumatica",
        "method": "PUT",
        "url": "https://erp.example/entity/Default/24.200.001/Invoice",
        "status": 200,
        "duration_ms": 81.5,
        "request_id": "req-1",
        "attempt": 2,
        "request_headers": {"Authorization": "***", "Content-Type": "application/json"},
        "request_body": '{"ReferenceNbr":{"value":"INV-1"}}',
        "response_headers": {"Content-Type": "application/json"},
        "response_body": '{"id":"abc"}',
        "message": None,
        "actor": None,  # an API exchange is the process's, not a person's
    }


def test_record_exchange_without_subject_uses_the_current_audit_subject(ledger):
    with audit_subject("close:12"):
        ledger.record_exchange(_exchange(subject=None, status=None, error="ReadTimeout"))
    [event] = ledger.timeline("close:12")
    assert (event.status, event.message) == (None, "ReadTimeout")


def test_record_exchange_swallows_database_errors(ledger, caplog):
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE audit_event"))

    with caplog.at_level(logging.ERROR, logger="shared.ledger.repo"):
        ledger.record_exchange(_exchange())  # must not raise into the API client

    assert [r.getMessage() for r in caplog.records] == ["could not write 1 audit event(s)"]


def test_note_appears_in_the_timeline(ledger):
    ledger.note("invoice:8ad0a", "replayed by alice: customer created", CONN)
    [event] = ledger.timeline("invoice:8ad0a")
    assert (event.kind, event.message, event.connection) == (
        "note",
        "replayed by alice: customer created",
        CONN,
    )


def test_prune_audit_deletes_only_older_events(ledger):
    with ledger.session() as s:
        for i in range(5):
            s.add(AuditEvent(at=T0 + timedelta(days=i), kind="note", subject="x", message=str(i)))

    deleted = ledger.prune_audit(T0 + timedelta(days=3), batch_size=2)

    assert deleted == 3
    assert [e.message for e in ledger.timeline("x")] == ["3", "4"]
    assert ledger.prune_audit(T0 + timedelta(days=3)) == 0


# -- callouts ---------------------------------------------------------------------------------


def test_record_callout_deduplicates_by_notification_id(ledger):
    first, new = ledger.record_callout(CONN, "n-1", "InvoicePosted", object_type="invoice", object_id="8ad0a")
    again, new_again = ledger.record_callout(
        CONN, "n-1", "InvoicePosted", object_type="invoice", object_id="8ad0a"
    )
    _other, other_new = ledger.record_callout("other", "n-1", "InvoicePosted")
    assert (new, new_again, other_new, again.id == first.id) == (True, False, True, True)

    ledger.set_callout_state(first.id, "enqueued")
    again, _ = ledger.record_callout(CONN, "n-1", "InvoicePosted")
    assert (again.state, again.object_id) == ("enqueued", "8ad0a")
    with pytest.raises(ValueError, match="unknown callout state"):
        ledger.set_callout_state(first.id, "lost")


def test_callout_states_are_set_together_or_not_at_all(ledger):
    a, _ = ledger.record_callout(CONN, "n-a", "1110", object_type="invoice", object_id="8ad0a")
    b, _ = ledger.record_callout(CONN, "n-b", "1110", object_type="invoice", object_id="8ad0b")
    c, _ = ledger.record_callout(CONN, "n-c", "2120", object_type="payment", object_id="8ad0c")

    ledger.set_callout_states({a.id: ("done", None), b.id: ("done", None), c.id: ("failed", "not found")})
    with ledger.session() as s:
        rows = [s.get(CalloutNotification, i) for i in (a.id, b.id, c.id)]
    assert [(r.state, r.error) for r in rows] == [("done", None), ("done", None), ("failed", "not found")]

    with pytest.raises(RecordNotFound, match=str(c.id + 100)):
        ledger.set_callout_states({a.id: ("enqueued", None), c.id + 100: ("enqueued", None)})
    with ledger.session() as s:
        assert s.get(CalloutNotification, a.id).state == "done"  # rolled back with the missing id


# -- connections ------------------------------------------------------------------------------


def _connection(name: str = "acme") -> Connection:
    return Connection(
        name=name,
        zuora=ZuoraTarget(
            base_url="https://rest.test.zuora.com",
            client_id="zc-id",
            client_secret="zuora-SECRET-value",
            entity_id="ent-1",
            requests_per_minute=1000,
            max_concurrent=7,
            timeout_seconds=12.5,
        ),
        erp_kind="acumatica",
        acumatica=AcumaticaTarget(
            url="https://erp.example",
            endpoint="Default/24.200.001",
            username="svc",
            password="acu-PASSWORD-value",
            tenant="Company",
            branch="HQ",
            client_id="acu-client",
            client_secret="acu-CLIENT-SECRET",
            refresh_token=None,
            requests_per_minute=60,
            max_concurrent=1,
            max_sessions=3,
        ),
    )


def test_connection_round_trips_with_secrets(ledger):
    box = SecretBox([generate_key()])
    conn = _connection()
    ledger.add_connection(conn, box)

    assert ledger.get_connection("acme", box) == conn
    assert [r.name for r in ledger.list_connections()] == ["acme"]


def test_file_connection_round_trips(ledger):
    box = SecretBox([generate_key()])
    conn = replace(
        _connection("files"), erp_kind="file", acumatica=None, file=FileTarget(export_dir=Path("/x/gl"))
    )
    ledger.add_connection(conn, box)
    assert ledger.get_connection("files", box) == conn


def test_connection_secrets_are_encrypted_at_rest(ledger):
    ledger.add_connection(_connection(), SecretBox([generate_key()]))

    with ledger.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT * FROM connection")).mappings().one()
    everything = " ".join(str(v) for v in raw.values())

    for secret in ("zuora-SECRET-value", "acu-PASSWORD-value", "acu-CLIENT-SECRET"):
        assert secret not in everything
    assert "acu-client" in everything  # non-secret settings stay readable


def test_get_connection_with_wrong_key_says_wrong_key(ledger):
    ledger.add_connection(_connection(), SecretBox([generate_key()]))
    with pytest.raises(SecretKeyError, match="cannot decrypt: wrong LEDGERBRIDGE_SECRET_KEY"):
        ledger.get_connection("acme", SecretBox([generate_key()]))


def test_rotate_secrets_reencrypts_every_connection_with_the_new_key(ledger):
    old, new = generate_key(), generate_key()
    ledger.add_connection(_connection("a"), SecretBox([old]))
    ledger.add_connection(_connection("b"), SecretBox([old]))

    assert ledger.rotate_secrets(SecretBox([new, old])) == 2

    assert ledger.get_connection("a", SecretBox([new])).zuora.client_secret == "zuora-SECRET-value"
    with pytest.raises(SecretKeyError):
        ledger.get_connection("b", SecretBox([old]))


def test_rotate_secrets_without_the_old_key_changes_nothing(ledger):
    old = generate_key()
    ledger.add_connection(_connection("a"), SecretBox([old]))
    with pytest.raises(SecretKeyError):
        ledger.rotate_secrets(SecretBox([generate_key()]))
    assert ledger.get_connection("a", SecretBox([old])).name == "a"


def test_add_connection_twice_raises_unless_replace(ledger):
    box = SecretBox([generate_key()])
    ledger.add_connection(_connection(), box)
    with pytest.raises(ConnectionExists, match="a connection named 'acme' already exists"):
        ledger.add_connection(_connection(), box)

    changed = replace(_connection(), zuora=replace(_connection().zuora, client_secret="rotated"))
    ledger.add_connection(changed, box, replace=True)
    assert ledger.get_connection("acme", box).zuora.client_secret == "rotated"


def test_get_unknown_connection_lists_known_names(ledger):
    box = SecretBox([generate_key()])
    ledger.add_connection(_connection("a"), box)
    with pytest.raises(UnknownConnection, match=r"no connection named 'zz' in the ledger \(known: a\)"):
        ledger.get_connection("zz", box)


def test_remove_connection(ledger):
    box = SecretBox([generate_key()])
    ledger.add_connection(_connection(), box)
    assert (ledger.remove_connection("acme"), ledger.remove_connection("acme")) == (True, False)
    assert ledger.list_connections() == []
