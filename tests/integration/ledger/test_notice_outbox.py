"""The notice outbox in the ledger: recorded with a close run's status change, claimed by one
deliverer at a time, delivered once, retried when it failed; on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.ledger.models import CloseRun
from shared.ledger.notices import NewNotice, UndeliveredNotices
from shared.ledger.repo import Ledger

CONN = "acme"
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def new_notice(run: CloseRun, key: str = "k") -> NewNotice:
    return NewNotice(
        connection=run.connection,
        subject=f"close:{run.id}",
        event="close.completed",
        dedupe_key=f"close:{run.id}:{key}",
        payload={"text": f"close run {run.id} is done", "fields": {"debit": Decimal("100.10")}},
    )


def test_a_status_change_and_its_notice_commit_together(ledger: Ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024", step="reconcile")

    updated = ledger.update_close_run(run.id or 0, status="done", notice=new_notice)

    (row,) = ledger.notices_of(f"close:{run.id}")
    assert updated.status == "done"
    assert (row.connection, row.event, row.attempts, row.delivered_at, row.last_error) == (
        CONN,
        "close.completed",
        0,
        None,
        None,
    )
    assert row.payload == {"text": f"close run {run.id} is done", "fields": {"debit": Decimal("100.10")}}
    assert row.next_attempt_at == row.created_at == updated.updated_at


def test_a_notice_that_cannot_be_built_leaves_the_status_unchanged(ledger: Ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024", step="reconcile")

    def broken(changed: CloseRun) -> NewNotice:
        raise RuntimeError("no notice")

    with pytest.raises(RuntimeError):
        ledger.update_close_run(run.id or 0, status="done", notice=broken)

    assert ledger.get_close_run(run.id or 0).status == "running"
    assert ledger.notices_of(f"close:{run.id}") == []


def test_the_same_change_recorded_twice_is_one_notice(ledger: Ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024", step="reconcile")

    ledger.update_close_run(run.id or 0, status="needs_attention", notice=new_notice)
    ledger.update_close_run(run.id or 0, status="needs_attention", notice=new_notice)

    assert len(ledger.notices_of(f"close:{run.id}")) == 1


def test_a_claimed_notice_is_not_claimed_again_until_its_lease_ends(ledger: Ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    ledger.update_close_run(run.id or 0, status="done", notice=new_notice)
    (notice_id,) = ledger.notices_due(now=datetime.now(UTC))
    now = datetime.now(UTC)

    first = ledger.claim_notice(notice_id, lease=60, now=now)
    again = ledger.claim_notice(notice_id, lease=60, now=now + timedelta(seconds=59))
    after_lease = ledger.claim_notice(notice_id, lease=60, now=now + timedelta(seconds=61))

    assert first is not None and first.attempts == 1
    assert again is None
    assert after_lease is not None and after_lease.attempts == 2
    assert ledger.notices_due(now=now + timedelta(seconds=61)) == []


def test_concurrent_claims_give_the_notice_to_one_deliverer(ledger: Ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    ledger.update_close_run(run.id or 0, status="done", notice=new_notice)
    (notice_id,) = ledger.notices_due()

    with ThreadPoolExecutor(max_workers=4) as pool:
        claims = list(pool.map(lambda _: ledger.claim_notice(notice_id, lease=60), range(8)))

    assert len([c for c in claims if c is not None]) == 1


def test_a_failure_is_recorded_only_while_the_claim_is_the_deliverers(ledger: Ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    ledger.update_close_run(run.id or 0, status="done", notice=new_notice)
    (notice_id,) = ledger.notices_due()
    now = datetime.now(UTC)
    ledger.claim_notice(notice_id, lease=1, now=now)
    ledger.claim_notice(notice_id, lease=60, now=now + timedelta(seconds=2))  # attempt 2 took it over

    stale = ledger.notice_failed(notice_id, attempt=1, error="HTTP 500: late", retry_at=now)
    current = ledger.notice_failed(
        notice_id, attempt=2, error="HTTP 500: down", retry_at=now + timedelta(seconds=20)
    )

    (row,) = ledger.notices_of(f"close:{run.id}")
    assert (stale, current) == (False, True)
    assert (row.attempts, row.last_error, row.next_attempt_at) == (
        2,
        "HTTP 500: down",
        now + timedelta(seconds=20),
    )
    assert ledger.next_notice_due() == now + timedelta(seconds=20)


def test_a_delivered_notice_is_never_due_again(ledger: Ledger):
    run, _ = ledger.open_close_run(CONN, "December 2024")
    ledger.update_close_run(run.id or 0, status="done", notice=new_notice)
    (notice_id,) = ledger.notices_due()
    ledger.claim_notice(notice_id, lease=60)

    assert ledger.notice_delivered(notice_id) is True
    assert ledger.notice_delivered(notice_id) is False
    assert ledger.notices_due(now=datetime.now(UTC) + timedelta(days=1)) == []
    assert ledger.claim_notice(notice_id, lease=60, now=datetime.now(UTC) + timedelta(days=1)) is None
    assert ledger.next_notice_due() is None


def test_undelivered_notices_count_the_oldest_and_the_last_error_per_connection(ledger: Ledger):
    first, _ = ledger.open_close_run(CONN, "November 2024")
    second, _ = ledger.open_close_run(CONN, "December 2024")
    other, _ = ledger.open_close_run("other", "December 2024")
    for run in (first, second, other):
        ledger.update_close_run(run.id or 0, status="done", notice=new_notice)
    oldest = ledger.notices_of(f"close:{first.id}")[0]
    (second_id,) = [n.id for n in ledger.notices_of(f"close:{second.id}")]
    claimed = ledger.claim_notice(second_id or 0, lease=60)
    assert claimed is not None
    ledger.notice_failed(second_id or 0, attempt=1, error="HTTP 503: busy", retry_at=datetime.now(UTC))

    assert ledger.undelivered_notices(CONN) == UndeliveredNotices(
        count=2, oldest=oldest.created_at, last_error="HTTP 503: busy"
    )
    assert ledger.undelivered_notices().count == 3
    assert ledger.undelivered_notices("nobody") == UndeliveredNotices(count=0, oldest=None, last_error=None)
