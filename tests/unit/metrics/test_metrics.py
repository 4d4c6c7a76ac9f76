"""ledgerbridge's metrics: API counters kept in Redis by the audit hook, ledger series read at scrape
time, and ``GET /metrics`` in the Prometheus text format."""

from __future__ import annotations

import threading
import warnings
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import ConnectionError as RedisConnectionError

from shared import metrics, ports
from shared.audit_writer import AuditWriter
from shared.exchange import Exchange
from shared.ledger import states
from shared.ledger.migrate import upgrade
from shared.ledger.models import AuditEvent
from shared.ledger.repo import Ledger
from shared.settings import load_settings
from worker.web import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ZUORA = "https://rest.test.zuora.com"
ACUMATICA = "https://erp.example.com/AcumaticaERP"


def exchange(connection: str, api: str, url: str, status: int | None, method: str = "GET") -> Exchange:
    return Exchange(api=api, connection=connection, method=method, url=url, status=status, duration_ms=1.0)


@pytest.mark.parametrize(
    ("status", "klass"),
    [(200, "2xx"), (204, "2xx"), (302, "3xx"), (404, "4xx"), (429, "4xx"), (503, "5xx"), (None, "error")],
)
def test_status_class_of_each_answer(status, klass):
    assert metrics.status_class(status) == klass


@pytest.mark.parametrize(
    ("api", "url", "token"),
    [
        ("zuora", f"{ZUORA}/oauth/token", True),
        ("zuora", f"{ZUORA}/object-query/invoices?pageSize=99", False),
        ("acumatica", f"{ACUMATICA}/entity/auth/login", True),
        ("acumatica", f"{ACUMATICA}/identity/connect/token", True),
        ("acumatica", f"{ACUMATICA}/entity/auth/logout", False),
        ("acumatica", f"{ACUMATICA}/entity/Default/24.200.001/Invoice", False),
        ("file", "/oauth/token", False),
    ],
)
def test_token_requests_are_the_sign_in_endpoints(api, url, token):
    assert metrics.is_token_request(api, url) is token


def test_exchanges_are_counted_per_connection_api_and_status_class(fake_redis):
    for ex in (
        exchange("acme", "zuora", f"{ZUORA}/oauth/token", 200, "POST"),
        exchange("acme", "zuora", f"{ZUORA}/object-query/invoices", 200),
        exchange("acme", "zuora", f"{ZUORA}/object-query/invoices", 429),
        exchange("acme", "zuora", f"{ZUORA}/object-query/invoices", 429),
        exchange("acme", "acumatica", f"{ACUMATICA}/entity/auth/login", 204, "POST"),
        exchange("acme", "acumatica", f"{ACUMATICA}/entity/Default/24.200.001/Invoice", None, "PUT"),
        exchange("other", "zuora", f"{ZUORA}/oauth/token", 200, "POST"),
    ):
        metrics.count_exchanges(fake_redis, [ex])

    acme = metrics.read_api_counts(fake_redis, "acme")
    other = metrics.read_api_counts(fake_redis, "other")

    assert acme.calls == {
        ("zuora", "2xx"): 2,
        ("zuora", "4xx"): 2,
        ("acumatica", "2xx"): 1,
        ("acumatica", "error"): 1,
    }
    assert acme.rate_limited == {"zuora": 2}
    assert acme.tokens == {"zuora": 1, "acumatica": 1}
    assert (other.calls, other.rate_limited, other.tokens) == ({("zuora", "2xx"): 1}, {}, {"zuora": 1})
    assert metrics.counters_key("acme") == "ledgerbridge:acme:metrics:api"


class _DownRedis:
    def pipeline(self, transaction: bool = False):
        raise RedisConnectionError("Redis is down")


def test_a_redis_outage_never_fails_the_api_call(ledger, caplog):
    writer = AuditWriter(ledger, _DownRedis)

    writer(exchange("acme", "zuora", f"{ZUORA}/oauth/token", 200))
    writer.close()

    with ledger.session() as session:
        rows = session.exec(AuditEvent.__table__.select()).all()  # type: ignore[attr-defined]
    assert len(rows) == 1  # the audit row is written all the same
    assert "could not count 1 API call(s) in Redis: Redis is down" in caplog.text


def test_the_ports_audit_hook_writes_the_audit_row_and_counts_the_call(ports_on_sqlite, fake_redis):
    hook = ports._audit_hook()
    hook(exchange("acme", "zuora", f"{ZUORA}/oauth/token", 200, "POST"))
    ports.flush_audit()
    with ports.ledger().session() as session:
        rows = session.exec(AuditEvent.__table__.select()).all()  # type: ignore[attr-defined]

    assert len(rows) == 1
    assert metrics.read_api_counts(fake_redis, "acme").tokens == {"zuora": 1}


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(dict(s.labels), s.value) for s in family.samples if not s.name.endswith("_created")]
        for family in text_string_to_metric_families(text)
    }


def _seed(ledger: Ledger, connection: str) -> None:
    with ledger.session() as session:
        for zid, state in (("i1", "parked"), ("i2", "pending"), ("i3", "pending")):
            row, _ = states.upsert_pulled(
                session,
                connection=connection,
                object_type="invoice",
                zuora_id=zid,
                zuora_number=f"INV{zid}",
                zuora_updated=None,
                payload={"id": zid},
                account_id="a1",
                source="pull",
            )
            if state == "parked":
                states.park(session, row.id or 0, "unmapped")
    ledger.advance_mark(connection, "invoices", datetime(2024, 12, 31, 12, 0, tzinfo=UTC))
    ledger.add_missed(connection, "invoices", by_mark=2, by_push=5)
    ledger.add_missed(connection, "payments", by_push=1)
    ledger.open_close_run(connection, "December 2024", step="post")


def test_metrics_endpoint_serves_the_ledger_and_api_series(ledger, fake_redis):
    _seed(ledger, "acme")
    _seed(ledger, "globex")
    metrics.count_exchanges(fake_redis, [exchange("acme", "zuora", f"{ZUORA}/oauth/token", 200, "POST")])
    metrics.count_exchanges(fake_redis, [exchange("acme", "zuora", f"{ZUORA}/object-query/invoices", 429)])
    settings = load_settings(connection="acme", database_url=str(ledger.engine.url), metrics_token=TOKEN)
    client = TestClient(create_app(settings=settings, ledger=ledger, redis=fake_redis))

    response = client.get("/metrics", headers=SCRAPER)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = _families(response.text)
    records = families["ledgerbridge_records"]
    assert ({"connection": "acme", "object_type": "invoice", "state": "pending"}, 2.0) in records
    assert ({"connection": "acme", "object_type": "invoice", "state": "parked"}, 1.0) in records
    assert ({"connection": "globex", "object_type": "payment", "state": "marked"}, 0.0) in records
    assert len(records) == 2 * 7 * 6  # every object type and state of both connections
    assert families["ledgerbridge_missed_by_mark"] == [
        ({"connection": "acme", "stream": "invoices"}, 2.0),
        ({"connection": "acme", "stream": "payments"}, 0.0),
        ({"connection": "globex", "stream": "invoices"}, 2.0),
        ({"connection": "globex", "stream": "payments"}, 0.0),
    ]
    assert ({"connection": "acme", "stream": "invoices"}, 5.0) in families["ledgerbridge_missed_by_push"]
    assert families["ledgerbridge_stream_mark_timestamp_seconds"][0] == (
        {"connection": "acme", "stream": "invoices"},
        datetime(2024, 12, 31, 12, 0, tzinfo=UTC).timestamp(),
    )
    assert families["ledgerbridge_close_run_open"][0] == (
        {
            "connection": "acme",
            "period": "December 2024",
            "step": "post",
            "status": "running",
            "kind": "close",
        },
        1.0,
    )
    assert families["ledgerbridge_api_calls"] == [
        ({"connection": "acme", "api": "zuora", "status_class": "2xx"}, 1.0),
        ({"connection": "acme", "api": "zuora", "status_class": "4xx"}, 1.0),
    ]
    assert families["ledgerbridge_api_rate_limited"] == [({"connection": "acme", "api": "zuora"}, 1.0)]
    assert families["ledgerbridge_token_requests"] == [({"connection": "acme", "api": "zuora"}, 1.0)]
    assert "ledgerbridge_api_calls_total{" in response.text
    assert "ledgerbridge_missed_by_mark_total{" in response.text


def test_metrics_of_an_empty_ledger_list_the_default_connection(ledger, fake_redis):
    settings = load_settings(connection="fresh", database_url=str(ledger.engine.url), metrics_token=TOKEN)
    client = TestClient(create_app(settings=settings, ledger=ledger, redis=fake_redis))

    families = _families(client.get("/metrics", headers=SCRAPER).text)

    assert {labels["connection"] for labels, _ in families["ledgerbridge_records"]} == {"fresh"}
    assert sum(value for _, value in families["ledgerbridge_records"]) == 0
    assert families["ledgerbridge_api_calls"] == []


def test_metrics_without_redis_still_serve_the_ledger_series(ledger):
    _seed(ledger, "acme")
    settings = load_settings(connection="acme", database_url=str(ledger.engine.url), metrics_token=TOKEN)
    client = TestClient(create_app(settings=settings, ledger=ledger, redis=_UnreadableRedis()))

    response = client.get("/metrics", headers=SCRAPER)

    assert response.status_code == 200
    families = _families(response.text)
    assert families["ledgerbridge_api_calls"] == []
    assert ({"connection": "acme", "object_type": "invoice", "state": "pending"}, 2.0) in families[
        "ledgerbridge_records"
    ]


class _UnreadableRedis:
    def hgetall(self, key: str):
        raise RedisConnectionError("Redis is down")


def test_open_close_runs_are_the_running_and_stopped_ones(ledger):
    ledger.open_close_run("acme", "November 2024", step="journal_run")
    stopped, _ = ledger.open_close_run("acme", "December 2024", step="check")
    ledger.update_close_run(stopped.id or 0, status="needs_attention", error="2 entries parked")
    done, _ = ledger.open_close_run("acme", "October 2024")
    ledger.update_close_run(done.id or 0, status="done")

    runs = metrics.open_close_runs(ledger, "acme")

    assert [(r.period_name, r.step, r.status) for r in runs] == [
        ("November 2024", "journal_run", "running"),
        ("December 2024", "check", "needs_attention"),
    ]
    assert metrics.open_close_runs(ledger, "globex") == []


def test_closing_the_ports_writes_the_queue_without_deadlocking(tmp_path, fake_redis, monkeypatch):
    # The writer's last write asks the ports for Redis, whose lock close_all must not hold then.
    # (Not the ports_on_sqlite fixture: its teardown would wait for the lock a deadlock holds.)
    url = f"sqlite:///{tmp_path / 'ports.db'}"
    upgrade(url)
    monkeypatch.setenv("LEDGERBRIDGE_DATABASE_URL", url)
    ports.reset_for_tests()
    ports._registry.redis = fake_redis
    hook = ports._audit_hook()
    hook(exchange("acme", "zuora", f"{ZUORA}/v1/accounts", 200))

    closing = threading.Thread(target=ports.close_all, daemon=True)
    closing.start()
    closing.join(timeout=60)

    assert not closing.is_alive(), "close_all deadlocked with the audit writer"
    ledger = Ledger.from_url(url)
    with ledger.session() as session:
        rows = session.exec(AuditEvent.__table__.select()).all()  # type: ignore[attr-defined]
    ledger.dispose()
    assert len(rows) == 1
    assert metrics.read_api_counts(fake_redis, "acme").calls == {("zuora", "2xx"): 1}


TOKEN = "scrape-me"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}


def test_metrics_need_the_configured_bearer_token(ledger, fake_redis):
    _seed(ledger, "acme")
    settings = load_settings(connection="acme", database_url=str(ledger.engine.url), metrics_token=TOKEN)
    client = TestClient(create_app(settings=settings, ledger=ledger, redis=fake_redis))

    anonymous = client.get("/metrics")
    wrong = client.get("/metrics", headers={"Authorization": "Bearer guess"})

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert "acme" not in anonymous.text + wrong.text  # nothing of the connections leaks


def test_metrics_are_off_without_a_token(ledger, fake_redis):
    _seed(ledger, "acme")
    settings = load_settings(connection="acme", database_url=str(ledger.engine.url))
    client = TestClient(create_app(settings=settings, ledger=ledger, redis=fake_redis))

    response = client.get("/metrics", headers=SCRAPER)

    assert response.status_code == 404
    assert "acme" not in response.text
