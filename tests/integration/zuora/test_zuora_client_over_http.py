"""The Zuora client against the Zuora sandbox over loopback HTTP, with the real Redis."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import httpx
import pytest

from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes
from shared.connections import ZuoraTarget
from shared.zuora import ZuoraClient
from shared.zuora.object_query import ObjectQuery, condition
from shared.zuora.records import parse_datetime

pytestmark = pytest.mark.redis


def _client(url: str, connection: str, redis) -> ZuoraClient:
    target = ZuoraTarget(base_url=url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    return ZuoraClient(target, connection=connection, redis=redis)


def _requests(url: str) -> dict:
    return httpx.get(f"{url}/_sandbox/requests").json()


def _count(counts: dict, key: str) -> int:
    return int(counts["counts"].get(key, 0))


def _status_total(counts: dict, status: str) -> int:
    return sum(int(by_status.get(status, 0)) for by_status in counts["statuses"].values())


def test_two_worker_processes_share_one_token_for_200_calls(zuora_sandbox, worker_fleet):
    server = zuora_sandbox(
        seed=3,
        sizes=Sizes(
            accounts=5, invoices=10, payments=5, refunds=1, credit_memos=1, debit_memos=1, tie_count=2
        ),
    )
    fleet = worker_fleet(zuora_url=server.url)
    fleet.start(2)
    results = [fleet.send("ledgerbridge.upkeep.probe_zuora") for _ in range(200)]

    periods = {r.get(timeout=120)["period"] for r in results}

    counts = _requests(server.url)
    assert _count(counts, "POST /oauth/token") == 1
    assert _count(counts, "GET /v1/accounting-periods") == 200
    assert len(periods) == 1 and None not in periods


def test_rate_limit_burst_is_absorbed_without_an_error(zuora_sandbox, real_redis, connection_name):
    server = zuora_sandbox(seed=1, sizes=Sizes(accounts=5, invoices=10, tie_count=2))
    httpx.post(
        f"{server.url}/_sandbox/faults",
        json={
            "rules": [
                {
                    "kind": "rate_limit",
                    "endpoint": "GET /v1/accounting-periods",
                    "next": 6,
                    "reset_seconds": 1,
                }
            ]
        },
    )
    client = _client(server.url, connection_name, real_redis)
    failures: list[BaseException] = []

    def caller() -> None:
        try:
            for _ in range(5):
                assert next(iter(client.periods.list(page_size=1))).name
        except BaseException as exc:  # collected and asserted on below
            failures.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    client.close()

    counts = _requests(server.url)
    assert failures == []
    assert _status_total(counts, "429") == 6
    assert _count(counts, "GET /v1/accounting-periods") == 36


def test_expired_token_is_refreshed_transparently(zuora_sandbox, real_redis, connection_name):
    server = zuora_sandbox(seed=1, sizes=Sizes(accounts=5, invoices=10, tie_count=2))
    client = _client(server.url, connection_name, real_redis)
    first = next(iter(client.periods.list(page_size=1)))

    httpx.post(f"{server.url}/_sandbox/tokens/expire")
    again = next(iter(client.periods.list(page_size=1)))
    client.close()

    counts = _requests(server.url)
    assert again.id == first.id
    assert _count(counts, "POST /oauth/token") == 2
    assert _status_total(counts, "401") == 1


def test_paging_1000_invoices_returns_each_once_with_150_sharing_one_updated_date(
    zuora_sandbox, real_redis, connection_name
):
    server = zuora_sandbox(
        seed=7,
        sizes=Sizes(
            accounts=50, invoices=1000, payments=10, refunds=1, credit_memos=1, debit_memos=1, tie_count=150
        ),
    )
    client = _client(server.url, connection_name, real_redis)
    query = ObjectQuery(
        "invoices",
        filters=(condition("updateddate", "GE", datetime(2000, 1, 1, tzinfo=UTC)),),
        sort="updateddate.ASC",
        fields=("id", "invoicenumber", "updateddate"),
        page_size=99,
    )

    pages = list(client.objects.pages(query))
    client.close()

    ids = [row["id"] for page in pages for row in page.data]
    stamps = [parse_datetime(row["updatedDate"]) for page in pages for row in page.data]
    tie_stamp = max(set(stamps), key=stamps.count)
    tie_pages = {
        i
        for i, page in enumerate(pages)
        for row in page.data
        if parse_datetime(row["updatedDate"]) == tie_stamp
    }
    assert len(ids) == 1000
    assert len(set(ids)) == 1000
    assert stamps.count(tie_stamp) == 150
    assert len(tie_pages) >= 2, "the tie must straddle a page boundary for this test to mean anything"
    assert stamps == sorted(stamps)
    assert len(pages) == 11
