"""The process's audit hook: exchanges queued by the API clients, written in batches."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from shared.audit_writer import AuditWriter
from shared.exchange import Exchange, audit_subject
from shared.ledger.models import AuditEvent
from shared.ledger.repo import Ledger
from shared.metrics import read_api_counts

URL = "https://rest.test.zuora.com/v1/invoices"


def exchange(n: int, subject: str | None = None) -> Exchange:
    return Exchange(
        api="zuora",
        connection="acme",
        method="GET",
        url=f"{URL}/{n}",
        status=200,
        duration_ms=1.0,
        subject=subject,
    )


def audit_rows(ledger: Ledger) -> list[AuditEvent]:
    with ledger.session() as session:
        return list(session.exec(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars())  # type: ignore[call-overload]


def commits(ledger: Ledger) -> list[int]:
    seen: list[int] = []
    sa.event.listen(ledger.engine, "commit", lambda _conn: seen.append(1))
    return seen


def test_queued_exchanges_are_written_in_one_transaction_with_one_counter_pipeline(ledger, fake_redis):
    writer = AuditWriter(ledger, lambda: fake_redis, interval=3600)
    committed = commits(ledger)

    for n in range(50):
        writer(exchange(n))
    assert audit_rows(ledger) == [] and writer.pending() == 50
    committed.clear()
    writer.flush()

    assert len(committed) == 1
    assert [r.url for r in audit_rows(ledger)] == [f"{URL}/{n}" for n in range(50)]
    assert read_api_counts(fake_redis, "acme").calls == {("zuora", "2xx"): 50}
    writer.close()


def test_the_subject_and_time_are_the_callers_not_the_writers(ledger, fake_redis):
    writer = AuditWriter(ledger, lambda: fake_redis, interval=3600)
    with audit_subject("invoice:8ad0aa"):
        writer(exchange(1))
    writer(exchange(2, subject="payment:8ad0bb"))
    writer(exchange(3))
    writer.close()

    rows = audit_rows(ledger)
    assert [r.subject for r in rows] == ["invoice:8ad0aa", "payment:8ad0bb", None]
    assert rows[0].at <= rows[1].at <= rows[2].at


def test_a_full_queue_is_written_by_the_caller(ledger, fake_redis):
    writer = AuditWriter(ledger, lambda: fake_redis, interval=3600, max_rows=10)
    for n in range(25):
        writer(exchange(n))
    assert len(audit_rows(ledger)) == 20 and writer.pending() == 5
    writer.close()
    assert len(audit_rows(ledger)) == 25


def test_the_background_thread_writes_without_being_asked(ledger, fake_redis):
    writer = AuditWriter(ledger, lambda: fake_redis, interval=0.01)
    written = threading.Event()
    sa.event.listen(ledger.engine, "commit", lambda _conn: written.set())
    writer(exchange(1))
    assert written.wait(timeout=10), "the writer thread never committed"
    writer.close()
    assert len(audit_rows(ledger)) == 1


def test_after_close_each_exchange_is_written_at_once(ledger, fake_redis):
    writer = AuditWriter(ledger, lambda: fake_redis, interval=3600)
    writer.close()
    writer(exchange(1))
    assert writer.pending() == 0
    assert len(audit_rows(ledger)) == 1


def test_concurrent_callers_lose_nothing(ledger, fake_redis):
    writer = AuditWriter(ledger, lambda: fake_redis, interval=0.005, max_rows=7)

    def call(base: int) -> None:
        for n in range(100):
            writer(exchange(base + n))

    threads = [threading.Thread(target=call, args=(1000 * t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    writer.close()

    assert len({r.url for r in audit_rows(ledger)}) == 800
    assert read_api_counts(fake_redis, "acme").calls == {("zuora", "2xx"): 800}
