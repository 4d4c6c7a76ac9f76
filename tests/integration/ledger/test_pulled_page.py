"""``states.upsert_pulled_page``: a pulled page in a few set-based statements, with the outcome
:func:`states.upsert_pulled` gives row by row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import select

from shared.ledger import states
from shared.ledger.models import AuditEvent, SyncRecord

CONN = "page"
T0 = datetime(2024, 12, 31, 23, 0, tzinfo=UTC)
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def pulled(zuora_id: str, updated: datetime | None = T0, amount: str = "100.10") -> states.Pulled:
    return states.Pulled(
        zuora_id=zuora_id,
        zuora_number=f"INV-{zuora_id}",
        zuora_updated=updated,
        payload={"id": zuora_id, "amount": Decimal(amount)},
        account_id="acc1",
    )


def upsert_page(ledger, rows, object_type="invoice"):
    with ledger.session() as s:
        return states.upsert_pulled_page(
            s, connection=CONN, object_type=object_type, rows=rows, source="pull", now=NOW
        )


def upsert_one(ledger, row, object_type="invoice"):
    with ledger.session() as s:
        rec, is_new = states.upsert_pulled(
            s, connection=CONN, object_type=object_type, zuora_id=row.zuora_id, zuora_number=row.zuora_number,
            zuora_updated=row.zuora_updated, payload=row.payload, account_id=row.account_id, source="pull",
            now=NOW,
        )  # fmt: skip
        return rec.id, is_new


def snapshot(ledger, zuora_id, object_type="invoice"):
    row = ledger.get_record(CONN, object_type, zuora_id)
    with ledger.reading() as s:
        audit = s.exec(select(AuditEvent.message).where(AuditEvent.subject == row.subject)).all()
    return row.model_dump(exclude={"id", "zuora_id", "zuora_number", "payload"}), row.payload, list(audit)


def test_a_page_of_new_records_is_what_row_by_row_gives(ledger):
    page = [pulled(f"8ad0p{i}") for i in range(7)]
    done = upsert_page(ledger, page)
    for i in range(7):
        upsert_one(ledger, pulled(f"8ad0p{i}"), object_type="payment")

    assert [is_new for _id, is_new in done] == [True] * 7
    assert [i for i, _ in done] == [ledger.get_record(CONN, "invoice", r.zuora_id).id for r in page]
    for r in page:
        ours, theirs = snapshot(ledger, r.zuora_id), snapshot(ledger, r.zuora_id, "payment")
        assert ours[0] == {**theirs[0], "object_type": "invoice"}
        assert (
            ours[1:]
            == theirs[1:]
            == ({"id": r.zuora_id, "amount": Decimal("100.10")}, ["new -> pending (pull)"])
        )
        assert isinstance(ours[1]["amount"], Decimal)


def test_known_records_in_a_page_keep_their_state_and_take_only_newer_payloads(ledger):
    first = upsert_page(
        ledger, [pulled("8ad0same"), pulled("8ad0newer"), pulled("8ad0older"), pulled("8ad0post")]
    )
    post_id = first[3][0]
    with ledger.session() as s:
        states.begin_posting(s, post_id)
        states.complete_posting(s, post_id, erp_ref="AR-1")
    later = T0 + timedelta(hours=1)
    page = [
        pulled("8ad0same", amount="1"),  # a duplicate: equal updated
        pulled("8ad0newer", later, amount="5.00"),
        pulled("8ad0older", T0 - timedelta(minutes=1), amount="2"),
        pulled("8ad0post", later, amount="7"),  # marking bumped it: refreshed, not re-posted
        pulled("8ad0fresh"),
    ]

    done = upsert_page(ledger, page)

    assert [is_new for _i, is_new in done] == [False, False, False, False, True]
    assert [i for i, _ in done][:4] == [i for i, _ in first]
    rows = {r.zuora_id: ledger.get_record(CONN, "invoice", r.zuora_id) for r in page}
    assert {k: (r.state, r.version, r.payload["amount"], r.zuora_updated) for k, r in rows.items()} == {
        "8ad0same": ("pending", 1, Decimal("100.10"), T0),
        "8ad0newer": ("pending", 2, Decimal("5.00"), later),
        "8ad0older": ("pending", 1, Decimal("100.10"), T0),
        "8ad0post": ("posted", 4, Decimal("7"), later),
        "8ad0fresh": ("pending", 1, Decimal("100.10"), T0),
    }
    assert rows["8ad0post"].erp_ref == "AR-1"


def test_a_page_naming_a_record_twice_keeps_the_later_fetch(ledger):
    later = T0 + timedelta(minutes=1)
    done = upsert_page(ledger, [pulled("8ad0twice"), pulled("8ad0twice", later, amount="3")])

    assert [is_new for _i, is_new in done] == [True, False]
    assert done[0][0] == done[1][0]
    row = ledger.get_record(CONN, "invoice", "8ad0twice")
    assert (row.payload["amount"], row.zuora_updated) == (Decimal("3"), later)


def test_a_row_another_worker_inserted_meanwhile_is_known_not_new(ledger, monkeypatch):
    theirs, _ = upsert_one(ledger, pulled("8ad0race"))
    real = states._known_rows
    calls = []

    def first_read_misses_it(session, connection, object_type, zuora_ids):
        calls.append(list(zuora_ids))
        return {} if len(calls) == 1 else real(session, connection, object_type, zuora_ids)

    monkeypatch.setattr(states, "_known_rows", first_read_misses_it)

    done = upsert_page(ledger, [pulled("8ad0race"), pulled("8ad0mine")])

    assert done[0] == (theirs, False)
    assert done[1][1] is True
    assert calls[1] == ["8ad0race"]
    with ledger.reading() as s:
        rows = s.exec(select(SyncRecord).where(SyncRecord.zuora_id == "8ad0race")).all()
        created = s.exec(select(AuditEvent.message).where(AuditEvent.subject == "invoice:8ad0race")).all()
    assert (len(rows), list(created)) == (1, ["new -> pending (pull)"])


def test_a_page_of_new_records_is_three_statements(ledger):
    statements: list[str] = []

    @sa.event.listens_for(ledger.engine, "before_cursor_execute")
    def count(_conn, _cursor, statement, _params, _context, _many):
        statements.append(statement.split()[0])

    upsert_page(ledger, [pulled(f"8ad0n{i}") for i in range(120)])
    sa.event.remove(ledger.engine, "before_cursor_execute", count)

    assert [s for s in statements if s not in ("BEGIN",)] == ["SELECT", "INSERT", "INSERT"]
